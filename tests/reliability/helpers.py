"""Helpers of the reliability tests: a tiny `digits` project, in-process runs, digests."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

REPO = Path(__file__).resolve().parents[2]
JMDS = Path("data/07_model_output/digits/jmds")
RUN = {
    "dataset": "digits",
    "training": {"epochs": 2, "progress": False},
    "jmds": {"rounds": 2, "round_epochs": 1, "final_epochs": 1,
             "target_model_sparsity": 0.6, "target_data_sparsity": 0.4,
             "evidence": {"subsample_size": 64}},
}


def make_project(path: Path) -> Path:
    shutil.copytree(REPO / "conf", path / "conf")
    shutil.copy(REPO / "pyproject.toml", path / "pyproject.toml")
    (path / "src").mkdir()  # the package itself is installed (editable)
    jmds_file = path / "conf" / "base" / "parameters_jmds.yml"
    parameters = yaml.safe_load(jmds_file.read_text())
    parameters["jmds"]["rounds"] = 2
    jmds_file.write_text(yaml.safe_dump(parameters))
    return path


def run(project: Path, params: dict | None = None, **run_args: object) -> None:
    """One ``kedro run`` in-process, from the project's folder (catalog paths are relative)."""
    cwd = Path.cwd()
    os.chdir(project)
    try:
        bootstrap_project(project)
        with KedroSession.create(project_path=project,
                                 runtime_params=params or RUN) as session:
            session.run(**run_args)
    finally:
        os.chdir(cwd)


def with_params(**sections: dict) -> dict:
    """RUN with some sections updated key by key."""
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in RUN.items()}
    for key, value in sections.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def digests(folder: Path) -> dict[str, str]:
    """Relative path → sha256 of every file under ``folder`` (locks left out)."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*")) if path.is_file() and ".locks" not in path.parts
    }
