"""Strict configuration, short errors, the run lock and provenance records, one by one."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jmds_pipeline.config import ConfigError, build_run_config
from jmds_pipeline.errors import RunError, install_short_errors
from jmds_pipeline.provenance import (
    ProvenanceError,
    file_digest,
    make_record,
    relevant_parameters,
    sidecar,
    verify_input,
    write_record,
)
from jmds_pipeline.runlock import RunLock, RunLockError
from tests.reliability.helpers import REPO

BASE = {"dataset": "digits", "training": {"epochs": 2}}


def _lines(parameters: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build_run_config(parameters)
    head, *lines = str(caught.value).splitlines()
    assert head == "invalid parameters:"
    return [line.strip() for line in lines]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"trainng": {"epochs": 3}}, ["trainng: unknown key; did you mean 'training'?"]),
        ({"datset": "digits"}, ["datset: unknown key; did you mean 'dataset'?"]),
        ({"jmds": {"evidence": {"strucure": "kfac"}}},
         ["jmds.evidence.strucure: unknown key; did you mean 'structure'?"]),
        ({"recipes": {"digits": {"modle": "mlp"}}},
         ["recipes.digits.modle: unknown key; did you mean 'model'?"]),
        ({"zzz": 1}, ["zzz: unknown key"]),
        ({"training": {"epochs": True}},
         ["training.epochs = True: a boolean is not a number; accepted: an integer"]),
        ({"seed": False}, ["seed = False: a boolean is not a number; accepted: an integer"]),
        ({"training": {"epochs": 2, "lr": "inf"}},
         ["training.lr = 'inf': Input should be a finite number"]),
        ({"training": {"epochs": 2, "lr": float("nan")}},
         ["training.lr = nan: Input should be a finite number"]),
        ({"training": {"epochs": 2, "lr": 0.0}},
         ["training.lr = 0.0: Input should be greater than 0"]),
    ],
)
def test_each_bad_key_gets_one_line(extra: dict, expected: list[str]):
    assert _lines({**BASE, **extra}) == expected


def test_every_bad_key_is_reported_together():
    lines = _lines({**BASE, "trainng": {}, "training": {"epochs": True, "lr": -1}})
    assert lines[0] == "trainng: unknown key; did you mean 'training'?"
    assert sorted(lines[1:]) == [
        "training.epochs = True: a boolean is not a number; accepted: an integer",
        "training.lr = -1: Input should be greater than 0",
    ]


def test_an_unknown_dataset_is_not_blamed_on_the_model():
    lines = _lines({"dataset": "digitz"})
    assert len(lines) == 1 and lines[0].startswith("dataset = 'digitz': not a known dataset")


def test_bools_stay_valid_where_a_bool_is_meant():
    config = build_run_config({**BASE, "training": {"epochs": 2, "progress": False},
                               "jmds": {"rewind": False}})
    assert config.training.progress is False and config.jmds.rewind is False


def test_the_shipped_parameters_are_accepted():
    # the project's loader: it supplies the default dataset from globals.yml
    from jmds_pipeline.conf_loader import NamingConfigLoader

    loader = NamingConfigLoader(str(REPO / "conf"), base_env="base", default_run_env="base")
    build_run_config(loader["parameters"])


def test_run_errors_print_one_message_without_traceback(monkeypatch, capsys):
    monkeypatch.delenv("JMDS_VERBOSE", raising=False)
    monkeypatch.setattr(sys, "argv", ["kedro", "run"])
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *args: seen.append(args))
    install_short_errors()
    error = RunError("training.lr = -1: Input should be greater than 0")
    sys.excepthook(RunError, error, None)
    assert seen == []  # not passed on to the traceback printer
    assert capsys.readouterr().err.splitlines()[0] == f"Error: {error}"
    sys.excepthook(KeyError, KeyError("x"), None)  # anything else: the usual traceback
    assert len(seen) == 1
    monkeypatch.setenv("JMDS_VERBOSE", "1")
    sys.excepthook(RunError, error, None)
    assert len(seen) == 2


def test_a_config_error_on_the_command_line_is_short(tmp_path: Path):
    """The real CLI: a bad key gives a few lines, not ~200 lines of traceback."""
    project = tmp_path / "project"
    shutil.copytree(REPO / "conf", project / "conf")
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    (project / "src").mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
           "JMDS_VERBOSE": "0", "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--params", "dataset=digits,trainng.epochs=3"],
        cwd=project, env=env, capture_output=True, text=True, timeout=900,  # a loaded CI machine
    )
    assert done.returncode == 1
    assert "trainng: unknown key; did you mean 'training'?" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 4
    assert not (project / "data").exists()


def test_yaml_garbage_is_reported_with_its_file(tmp_path: Path):
    from jmds_pipeline.conf_loader import NamingConfigLoader

    shutil.copytree(REPO / "conf", tmp_path / "conf")
    (tmp_path / "conf/local").mkdir(exist_ok=True)
    bad = tmp_path / "conf/local/parameters_bad.yml"
    bad.write_bytes(b"\x00\x01\xff\xfe garbage: [\n")
    loader = NamingConfigLoader(str(tmp_path / "conf"), base_env="base",
                                default_run_env="local")
    with pytest.raises(ConfigError, match=re.escape(f"{bad}: not a readable YAML")):
        loader["parameters"]
    bad.write_text("a: [unclosed\n  b: 1\n")
    with pytest.raises(Exception, match=r"parameters_bad\.yml"):
        NamingConfigLoader(str(tmp_path / "conf"), base_env="base",
                           default_run_env="local")["parameters"]


def test_rounds_set_in_conf_local_shape_the_pipeline(tmp_path: Path, monkeypatch):
    from jmds_pipeline.pipeline_registry import configured_rounds

    shutil.copytree(REPO / "conf", tmp_path / "conf")
    monkeypatch.delenv("KEDRO_ENV", raising=False)
    monkeypatch.setattr(sys, "argv", ["kedro", "run"])
    (tmp_path / "conf/local").mkdir(exist_ok=True)
    (tmp_path / "conf/local/parameters.yml").write_text("jmds:\n  rounds: 5\n")
    assert configured_rounds(tmp_path / "conf") == 5
    (tmp_path / "conf/cluster").mkdir()
    (tmp_path / "conf/cluster/parameters.yml").write_text("jmds:\n  rounds: 4\n")
    monkeypatch.setattr(sys, "argv", ["kedro", "run", "--env", "cluster"])
    assert configured_rounds(tmp_path / "conf") == 4


HOLDER = """
import sys, time
from pathlib import Path
from jmds_pipeline.runlock import RunLock
RunLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_the_lock_names_a_live_holder_and_outlives_a_dead_one(tmp_path: Path):
    path = tmp_path / "locks" / "digits.lock"
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    holder = subprocess.Popen([sys.executable, str(script), str(path)],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockError, match=rf"pid {holder.pid} \(holder\.py "):
            RunLock(path).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = RunLock(path)
    lock.acquire()  # the dead holder's lock is taken over
    assert json.loads(path.read_text())["pid"] == os.getpid()
    with pytest.raises(RunLockError):  # and it excludes others, in this process too
        RunLock(path).acquire()
    lock.release()
    RunLock(path).acquire()


def _recorded(path: Path, node: str, params: dict, inputs: dict | None = None) -> None:
    write_record(path, make_record(node, relevant_parameters(params, node), inputs or {}, path))


def test_a_record_catches_edits_other_parameters_and_stale_sources(tmp_path: Path):
    params = {"dataset": "digits", "seed": 0, "jmds.target_model_sparsity": 0.8,
              "training.progress": True, "jmds.final_epochs": None}
    source = tmp_path / "round_1.masks"
    source.write_bytes(b"round 1")
    _recorded(source, "round_1.update_mask", params)
    target = tmp_path / "round_2.masks"
    target.write_bytes(b"round 2")
    _recorded(target, "round_2.update_mask", params, {"round_1.masks": file_digest(source)})
    paths = {"round_1.masks": source, "round_2.masks": target}

    def check(current: dict) -> bool:
        return verify_input("round_2.masks", target, current, paths.get)

    assert check(params)
    # Parameters that cannot change a result, or that round nodes do not read, are ignored.
    assert check({**params, "training.progress": False, "jmds.final_epochs": 7})
    with pytest.raises(ProvenanceError, match=r"jmds\.target_model_sparsity = 0\.8 there, "
                                              r"0\.9 now\); rerun from it: kedro run "
                                              r"--from-nodes=round_2\.update_mask"):
        check({**params, "jmds.target_model_sparsity": 0.9})
    source.write_bytes(b"round 1, rewritten by another run")
    _recorded(source, "round_1.update_mask", params)
    with pytest.raises(ProvenanceError, match=r"stale: it was made from an earlier round_1\."):
        check(params)
    target.write_bytes(b"round")  # truncated
    with pytest.raises(ProvenanceError, match=r"changed after node round_2\.update_mask wrote it"):
        check(params)
    sidecar(target).write_text("{")
    with pytest.raises(ProvenanceError, match="unreadable"):
        check(params)
    sidecar(target).unlink()
    assert not check(params)  # no record: the caller loads the file instead


def test_digests_are_of_the_bytes(tmp_path: Path):
    path = tmp_path / "t"
    path.write_bytes(b"abc")
    assert file_digest(path) == "sha256:" + hashlib.sha256(b"abc").hexdigest()
