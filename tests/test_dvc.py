"""DVC reproduces the Kedro pipelines stage by stage, and only what a change touches.

In a temporary copy of the project (its own git + DVC repository, no remote, no network),
with a tiny configuration (digits only, 1-2 epochs, diagonal evidence on a small subsample)
written into the copy's conf/base, so that DVC's params tracking sees it:

1. ``dvc repro`` runs data_loading → pretraining → jmds → evaluation for digits, and not
   the GPU stages of gpu/dvc.yaml;
2. a second ``dvc repro`` runs nothing (``dvc status`` is clean);
3. changing one JMDS parameter (jmds.target_data_sparsity) marks, and reruns, only the
   stages that read it (jmds, evaluation), not data_loading or pretraining.

The stages' `kedro run` puts the copy's src/ first on sys.path, so the copied code is what
runs and what DVC hashes; the package's dependencies come from the test's interpreter.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DATASET = "digits"
STAGES = ("data_loading", "pretraining", "jmds", "evaluation")
TIMEOUT = 600  # per command; the whole test takes ~2-3 minutes on 2 cores


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    # `kedro` (the stages' command) and `dvc` from the interpreter running the tests.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(
        KEDRO_DISABLE_TELEMETRY="1",
        DVC_NO_ANALYTICS="1",
        DO_NOT_TRACK="1",
        GIT_TERMINAL_PROMPT="0",
        PYTHONDONTWRITEBYTECODE="1",
        # Keep the user's and the machine's DVC configuration and site cache out of it.
        DVC_GLOBAL_CONFIG_DIR=str(tmp_path / "dvc-global"),
        DVC_SYSTEM_CONFIG_DIR=str(tmp_path / "dvc-system"),
        DVC_SITE_CACHE_DIR=str(tmp_path / "dvc-site-cache"),
    )
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str], *, stdout_only: bool = False) -> str:
    if args[0] == "dvc":  # the dvc of this interpreter, even where its scripts are off PATH
        args = [sys.executable, "-m", "dvc", *args[1:]]
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{output[-6000:]}")
    return result.stdout if stdout_only else output


def _ran(output: str) -> set[str]:
    """Stages that `dvc repro` actually ran ("Running stage 'jmds@digits':")."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def _unchanged(output: str) -> set[str]:
    return set(re.findall(r"Stage '([^']+)' didn't change", output))


def _status(project: Path, env: dict[str, str]) -> dict:
    """`dvc status` of the default pipeline file as JSON ({} when everything is current)."""
    return json.loads(_run(["dvc", "status", "--json", "dvc.yaml"], project, env, stdout_only=True))


def _edit_yaml(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _make_project(project: Path, env: dict[str, str]) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.egg-info")
    for name in ("conf", "src"):
        shutil.copytree(ROOT / name, project / name, ignore=ignore)
    for name in ("pyproject.toml", "dvc.yaml", ".dvcignore", ".gitignore", ".telemetry"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, project / name)
    if (ROOT / "gpu" / "dvc.yaml").exists():
        (project / "gpu").mkdir()
        shutil.copy2(ROOT / "gpu" / "dvc.yaml", project / "gpu" / "dvc.yaml")
    shutil.rmtree(project / "conf" / "local", ignore_errors=True)
    (project / "conf" / "local").mkdir()  # the copy runs on conf/base only
    # tracked as in the repository: a queued experiment runs from a git checkout, and Kedro
    # needs the (empty) conf/local folder to exist
    (project / "conf" / "local" / ".gitkeep").touch()

    # Tiny run: one dataset, short training, small evidence subsample; rounds as built.
    def tiny_run(params: dict) -> None:
        params["training"] = {"epochs": 2, "progress": False}
        params["rewind_epoch"] = 1

    def tiny_jmds(params: dict) -> None:
        params["jmds"].update(round_epochs=1, final_epochs=1)
        # diag curvature: the DVC behaviour under test does not depend on the structure.
        params["jmds"]["evidence"].update(structure="diag", subsample_size=128)

    _edit_yaml(project / "conf" / "base" / "parameters.yml", tiny_run)
    _edit_yaml(project / "conf" / "base" / "parameters_jmds.yml", tiny_jmds)

    def digits_only(spec: dict) -> None:
        spec["vars"] = [{"datasets": [DATASET]}]
        for definition in spec.get("plots", []):
            for props in definition.values():
                props["y"] = {f: y for f, y in props["y"].items() if f"/{DATASET}/" in f}

    _edit_yaml(project / "dvc.yaml", digits_only)

    _run(["git", "init", "-q"], project, env)
    _run(["dvc", "init", "-q"], project, env)
    for key, value in (
        ("core.analytics", "false"),
        ("core.check_update", "false"),
        ("core.autostage", "false"),
    ):
        _run(["dvc", "config", "--local", key, value], project, env)


def new_project(tmp_path: Path, *, commit: bool = False) -> tuple[Path, dict[str, str]]:
    """A temporary git + DVC copy of the project and its environment (skips without dvc or
    the kedro command); with ``commit``, its files are committed as an experiments' baseline."""
    pytest.importorskip("dvc")
    env = _env(tmp_path)
    if shutil.which("kedro", path=env["PATH"]) is None:
        pytest.skip("the kedro command is needed")
    project = tmp_path / "project"
    project.mkdir()
    _make_project(project, env)
    if commit:
        git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
        _run(["git", "add", "-A"], project, env)
        _run([*git, "commit", "-q", "-m", "baseline"], project, env)
    return project, env


def test_dvc_repro_reruns_only_what_changed(tmp_path: Path) -> None:
    project, env = new_project(tmp_path)
    expected = {f"{stage}@{DATASET}" for stage in STAGES}

    # 1. Everything of the default pipeline file runs, in order; GPU stages do not.
    first = _run(["dvc", "repro"], project, env)
    assert _ran(first) == expected, first[-4000:]
    assert (project / "dvc.lock").is_file()
    lock = yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8"))
    assert set(lock["stages"]) == expected
    metrics = json.loads(
        (project / "data" / "08_reporting" / DATASET / "metrics.json").read_text("utf-8")
    )
    assert metrics["dataset"] == DATASET
    shown = json.loads(_run(["dvc", "metrics", "show", "--json"], project, env, stdout_only=True))
    assert "test_accuracy" in json.dumps(shown)
    trace = json.loads(
        (project / "data" / "08_reporting" / DATASET / "round_trace.json").read_text("utf-8")
    )
    rounds = yaml.safe_load(
        (project / "conf" / "base" / "parameters_jmds.yml").read_text(encoding="utf-8")
    )["jmds"]["rounds"]
    assert [row["round"] for row in trace["rounds"]] == list(range(1, rounds + 1))

    # 2. Nothing changed: nothing runs.
    assert _status(project, env) == {}
    second = _run(["dvc", "repro"], project, env)
    assert _ran(second) == set(), second[-4000:]
    assert _unchanged(second) == expected

    # 3. One JMDS parameter: only the stages that read it.
    _edit_yaml(
        project / "conf" / "base" / "parameters_jmds.yml",
        lambda params: params["jmds"].update(target_data_sparsity=0.4),
    )
    stale = _status(project, env)
    assert set(stale) == {f"jmds@{DATASET}", f"evaluation@{DATASET}"}, stale
    third = _run(["dvc", "repro"], project, env)
    assert _ran(third) == {f"jmds@{DATASET}", f"evaluation@{DATASET}"}, third[-4000:]
    assert _unchanged(third) == {f"data_loading@{DATASET}", f"pretraining@{DATASET}"}
    assert _status(project, env) == {}
    metrics = json.loads(
        (project / "data" / "08_reporting" / DATASET / "metrics.json").read_text("utf-8")
    )
    assert metrics["data_sparsity"] == pytest.approx(0.4, abs=0.02)
