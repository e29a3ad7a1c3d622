"""dvc.yaml against the code and the catalog, without running anything (fast).

- deps: every module of the package that a stage's Kedro pipeline imports (transitively,
  module-level imports read from the source with ``ast``) lies under one of the stage's
  ``deps``, so editing it makes DVC rerun the stage;
- outs: every catalog entry the pipeline writes (its outputs, with the dataset's folder
  filled in) lies under one of the stage's ``outs`` or ``metrics``, so DVC tracks it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from jmds_pipeline.pipelines.data_loading import pipeline as data_loading
from jmds_pipeline.pipelines.evaluation import pipeline as evaluation
from jmds_pipeline.pipelines.jmds import pipeline as jmds
from jmds_pipeline.pipelines.pretraining import pipeline as pretraining

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "jmds_pipeline"
ROUNDS = 2
PIPELINES = {
    "data_loading": (data_loading.create_pipeline(), "pipelines.data_loading"),
    "pretraining": (pretraining.create_pipeline(), "pipelines.pretraining"),
    "jmds": (jmds.create_pipeline(ROUNDS), "pipelines.jmds"),
    "evaluation": (evaluation.create_pipeline(ROUNDS), "pipelines.evaluation"),
}


def _module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _top_level(tree: ast.Module) -> list[ast.stmt]:
    """Module-level statements, looking inside if/try blocks but not into functions: the
    imports that run when the module is imported. Imports deferred into a function (the
    configuration's name checks import the model and method registries) are left out:
    they run on some paths only, and would make every stage depend on every package."""
    out: list[ast.stmt] = []
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If | ast.Try):
            todo += [*node.body, *node.orelse, *getattr(node, "finalbody", []),
                     *[s for h in getattr(node, "handlers", []) for s in h.body]]
    return out


def _imports(path: Path) -> set[str]:
    """Package modules that importing ``path`` imports (module-level imports)."""
    found = set()
    for node in _top_level(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = node.module
            if node.level:  # relative: resolve against the importing module's package
                parent = path.parent.relative_to(SRC).parts[: len(path.parent.relative_to(
                    SRC).parts) - node.level + 1]
                module = ".".join([*parent, node.module])
            names = [f"{module}.{alias.name}" for alias in node.names]
            found |= {m for m in [module, *names] if m.startswith(PACKAGE)}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith(PACKAGE)}
    return found


def _closure(package: str) -> set[Path]:
    """Files of every package module reachable from ``package``'s modules."""
    start = SRC.joinpath(*f"{PACKAGE}.{package}".split("."))
    todo = list(start.rglob("*.py"))
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imports(path):
            parts = module.split(".")
            for cut in range(len(parts), 1, -1):  # parents' __init__ run on import too
                found = _module_file(".".join(parts[:cut]))
                if found is not None:
                    todo.append(found)
    return seen


def _stages() -> dict[str, dict]:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    return {name: stage["do"] for name, stage in spec["stages"].items()}


def _paths(entries: list, item: str) -> list[Path]:
    out = []
    for entry in entries:
        name = next(iter(entry)) if isinstance(entry, dict) else entry
        out.append(ROOT / name.replace("${item}", item))
    return out


def _covered(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


@pytest.mark.parametrize("stage", sorted(PIPELINES))
def test_every_imported_module_is_a_dependency_of_its_stage(stage: str) -> None:
    deps = _paths(_stages()[stage]["deps"], "digits")
    # The top-level __init__ files run on any import and hold no stage's logic.
    generic = {SRC / PACKAGE / "__init__.py", SRC / PACKAGE / "pipelines" / "__init__.py"}
    missing = sorted(str(path.relative_to(ROOT)) for path in _closure(PIPELINES[stage][1])
                     if path not in generic and not _covered(path, deps))
    assert missing == [], f"{stage}: modules its pipeline imports but dvc.yaml omits"


def _catalog_path(name: str, catalog: dict, item: str) -> str | None:
    """The file a dataset name is saved to (patterns like ``round_{r}.state`` resolved)."""
    for key, entry in catalog.items():
        if key.startswith("_") or not isinstance(entry, dict) or "filepath" not in entry:
            continue
        fields = re.findall(r"{(\w+)}", key)
        pattern = re.escape(key)
        for field in fields:
            pattern = pattern.replace(re.escape("{" + field + "}"), f"(?P<{field}>[^.]+)")
        match = re.fullmatch(pattern, name)
        if match:
            path = entry["filepath"].replace("${_dataset}", item)
            for field, value in match.groupdict().items():
                path = path.replace("{" + field + "}", value)
            return path
    return None


@pytest.mark.parametrize("stage", sorted(PIPELINES))
def test_every_output_the_pipeline_saves_is_tracked_by_its_stage(stage: str) -> None:
    catalog = yaml.safe_load((ROOT / "conf/base/catalog.yml").read_text(encoding="utf-8"))
    spec = _stages()[stage]
    tracked = _paths(spec.get("outs", []) + spec.get("metrics", []), "digits")
    pipeline = PIPELINES[stage][0]
    saved = {name: _catalog_path(name, catalog, "digits") for name in pipeline.all_outputs()}
    persisted = {name: path for name, path in saved.items() if path is not None}
    assert persisted, f"{stage} persists nothing?"
    untracked = sorted(name for name, path in persisted.items()
                       if not _covered(ROOT / path, tracked))
    assert untracked == [], f"{stage}: catalog outputs outside its outs"
    # And no out is left without a writer in this pipeline (a stale path in dvc.yaml).
    for out in tracked:
        if "/dvclive/" in str(out):  # written by DVCLive inside the nodes (tracking.py)
            continue
        assert any(_covered(ROOT / path, [out]) for path in persisted.values()), out
