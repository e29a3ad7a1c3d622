"""Plant each bug the test review found (issue 12), run the tests meant to catch it, report.

Every bug is a one-line text substitution applied to a *copy* of ``src/`` in a temporary
folder (the working tree is never touched), and the named tests run against that copy
(``PYTHONPATH`` points at it). A bug is caught when at least one of its tests fails.

    nice -n 10 python benchmarks/planted_bugs.py            # all bugs
    nice -n 10 python benchmarks/planted_bugs.py rewind     # the bugs whose name has "rewind"

Writes ``benchmarks/results/planted_bugs.json`` (a run of some bugs updates their rows);
exits 1 if any bug it ran survived. Not part of
CI (each bug runs its tests in a fresh interpreter, ~10-30 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "src/jmds_pipeline"


@dataclass(frozen=True)
class Bug:
    name: str
    file: str  # relative to src/jmds_pipeline
    old: str
    new: str
    tests: tuple[str, ...]


BUGS = (
    Bug("phase B scoring ignores the kept rows", "sparsity/jmds_scoring.py",
        "weights = kept_weights(kept, jmds.rescale_kept)",
        "weights = kept_weights(torch.ones_like(kept), jmds.rescale_kept)",
        ("tests/pipelines/test_jmds_nodes.py",)),
    Bug("phase C sample scoring ignores the kept rows", "sparsity/jmds_scoring.py",
        "sample_weights=kept_weights(kept, jmds.rescale_kept)",
        "sample_weights=kept_weights(torch.ones_like(kept), jmds.rescale_kept)",
        ("tests/pipelines/test_jmds_nodes.py",)),
    Bug("phase C scored under the old mask", "pipelines/jmds/nodes.py",
        "masks = masks_after if config.jmds.rescore_samples else masks_before",
        "masks = masks_before",
        ("tests/pipelines/test_jmds_nodes.py",)),
    Bug("sample ranking by loss instead of contribution", "pipelines/jmds/nodes.py",
        'score = torch.tensor(sample_scores["contribution"].to_numpy())',
        'score = torch.tensor(sample_scores["loss"].to_numpy())',
        ("tests/pipelines/test_jmds_nodes.py",)),
    Bug("train_round ignores rewind", "pipelines/jmds/nodes.py",
        "start = rewind_state if config.jmds.rewind or continues_from_rewind else previous_state",
        "start = previous_state",
        ("tests/pipelines/test_jmds_nodes.py",)),
    Bug("run_rounds ignores rewind", "sparsity/rounds.py",
        "model = build(rewind_state) if jmds.rewind else model",
        "model = model",
        ("tests/sparsity/test_rounds.py",)),
    Bug("paired interval mislabels budgets", "comparison/stats.py",
        '"target_model_sparsity": float(budget[0]),\n            "target_data_sparsity": '
        'float(budget[1]),',
        '"target_model_sparsity": float(budget[1]),\n            "target_data_sparsity": '
        'float(budget[0]),',
        ("tests/comparison",)),
    Bug("paired interval zero-width from one seed", "comparison/stats.py",
        "            half = math.nan", "            half = 0.0",
        ("tests/comparison",)),
    Bug("masked K-FAC log det drops the direct bound", "evidence/curvature/kfac.py",
        "return torch.minimum(direct, schur)", "return schur",
        ("tests/evidence",)),
    Bug("masked K-FAC log det drops the Schur bound", "evidence/curvature/kfac.py",
        "return torch.minimum(direct, schur)", "return direct",
        ("tests/evidence",)),
    Bug("no NaN check in select_samples", "sparsity/sample_selection.py",
        'raise ValueError("scores of kept samples contain NaN")', "pass",
        ("tests/sparsity",)),
    Bug("no NaN check in select_by_threshold", "sparsity/sample_selection.py",
        'raise ValueError("contributions of kept samples contain NaN")', "pass",
        ("tests/sparsity",)),
    Bug("select_samples ignores keep", "sparsity/sample_selection.py",
        'return values if keep == "high" else -values', "return values",
        ("tests/sparsity", "tests/pipelines/test_jmds_nodes.py")),
    Bug("perplexity averages over sequences, not counted tokens", "training/evaluate.py",
        "predictions = outputs.tokens.double().sum()",
        "predictions = torch.tensor(float(outputs.tokens.numel() * 6))",
        ("tests/lm/test_lm_track.py",)),
    Bug("next_kept ignores keep", "sparsity/rounds.py",
        "keep=config.keep, strata=", "strata=",
        ("tests/sparsity", "tests/pipelines/test_jmds_nodes.py")),
)


def run_bug(bug: Bug, scratch: Path) -> dict:
    src = scratch / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    path = src / "jmds_pipeline" / bug.file
    text = path.read_text(encoding="utf-8")
    if text.count(bug.old) != 1:
        return {"bug": bug.name, "status": "not planted",
                "reason": f"the text to replace occurs {text.count(bug.old)} times in {bug.file}"}
    path.write_text(text.replace(bug.old, bug.new), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(src), KEDRO_DISABLE_TELEMETRY="1",
               DVC_NO_ANALYTICS="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *bug.tests],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )
    failed = [line.split(" ")[1] for line in result.stdout.splitlines()
              if line.startswith("FAILED ")]
    return {"bug": bug.name, "file": f"{PACKAGE}/{bug.file}", "tests": list(bug.tests),
            "status": "caught" if result.returncode == 1 else
            ("survived" if result.returncode == 0 else f"pytest exit {result.returncode}"),
            "failing_test": failed[0] if failed else None}


def main(argv: list[str]) -> int:
    chosen = [b for b in BUGS if not argv or any(a.lower() in b.name.lower() for a in argv)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="planted-") as scratch:
        for bug in chosen:
            row = run_bug(bug, Path(scratch))
            print(f"{row['status']:>12}  {bug.name}  {row.get('failing_test') or ''}", flush=True)
            rows.append(row)
    out = ROOT / "benchmarks" / "results" / "planted_bugs.json"
    if argv and out.exists():  # a partial run updates its bugs' rows, keeping the others
        fresh = {row["bug"]: row for row in rows}
        old = [fresh.pop(r["bug"], r) for r in json.loads(out.read_text(encoding="utf-8"))]
        known = {b.name for b in BUGS}
        rows = [r for r in old if r["bug"] in known] + list(fresh.values())
    out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r["status"] == "caught" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
