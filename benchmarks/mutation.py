"""Mutation testing (mutmut) of the pipeline's logic, one package at a time.

For every package named on the command line (default: all of ``MODULES``) this

1. copies ``src/``, ``tests/``, ``conf/`` and ``pyproject.toml`` into ``.mutation/<package>/``
   (git-ignored; the working tree is never mutated);
2. narrows ``[tool.mutmut]`` in that copy to the package's files and the fast tests that
   exercise it (``MODULES`` below; the Kedro/DVC end-to-end tests are excluded by the
   ``-m "not slow"`` in ``pytest_add_cli_args``);
3. runs ``nice -n 19 mutmut run --max-children 2`` there (stop it with Ctrl-C: the
   counts so far are still read);
4. reads mutmut's per-file ``.meta`` results and merges them into
   ``benchmarks/results/mutation.json``: per package, mutants generated, killed,
   survived, not covered, timeouts, and the equivalent ones with the reason each is
   equivalent (``benchmarks/mutation_equivalent/<package>.json``, written by hand after reading
   each survivor's diff with ``mutmut show <name>`` in ``.mutation/<package>/``).

    nice -n 19 python benchmarks/mutation.py sparsity comparison baselines
    python benchmarks/mutation.py --report-only sparsity   # re-read an earlier run
    nice -n 19 python benchmarks/mutation.py --rerun-survivors sparsity  # after new tests

The kill rate is killed / (generated − equivalent); "no tests" mutants (code no fast test
runs) count as not killed. It is a benchmark, not part of CI: a package takes minutes to
an hour on a loaded 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"
RESULTS = ROOT / "benchmarks" / "results" / "mutation.json"
# one file per package, so sessions classifying different packages never edit the same file
EQUIVALENT_DIR = ROOT / "benchmarks" / "mutation_equivalent"

# package → the fast tests that exercise it (paths relative to the repository root)
MODULES: dict[str, list[str]] = {
    "sparsity": ["tests/sparsity", "tests/pipelines/test_jmds_nodes.py"],
    "comparison": ["tests/comparison"],
    "baselines": ["tests/baselines", "tests/lm"],
    "training": ["tests/training", "tests/lm", "tests/gpu_path"],
    "pipelines": ["tests/pipelines"],
    "data": ["tests/data"],
    "evidence": ["tests/evidence", "tests/lm", "tests/gpu_path"],
}

# mutmut's exit-code meaning (mutmut.stats.status_by_exit_code), folded into our columns
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no_tests", 33: "no_tests",
          34: "skipped", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout",
          255: "timeout", 37: "killed", -11: "segfault", -9: "segfault", None: "not_checked"}


def _prepare(package: str, tests: list[str]) -> Path:
    work = WORK / package
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for name in ("src", "tests", "conf"):  # some tests read conf/base
        shutil.copytree(ROOT / name, work / name, ignore=ignore)
    lines = (ROOT / "pyproject.toml").read_text(encoding="utf-8").splitlines()
    out, in_section, skipping = [], False, False
    for line in lines:
        if skipping:  # inside a multi-line array being replaced
            skipping = "]" not in line
            continue
        if line.startswith("["):
            in_section = line.strip() == "[tool.mutmut]"
            out.append(line)
            if in_section:
                out.append(f'only_mutate = ["src/jmds_pipeline/{package}/*"]')
                out.append(f"pytest_add_cli_args_test_selection = {json.dumps(tests)}")
            continue
        if in_section and re.match(r"\s*(only_mutate|pytest_add_cli_args_test_selection)\b",
                                   line):
            skipping = "]" not in line
            continue
        out.append(line)
    (work / "pyproject.toml").write_text("\n".join(out) + "\n", encoding="utf-8")
    return work


def _run(work: Path, max_children: int, timeout: float | None,
         names: list[str] | None = None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(KEDRO_DISABLE_TELEMETRY="1", DVC_NO_ANALYTICS="1")
    mutmut = [sys.executable, "-c", "from mutmut.__main__ import cli; cli()"]
    started = time.perf_counter()
    with open(work / "mutmut.log", "w", encoding="utf-8") as log:
        try:
            subprocess.run(["nice", "-n", "19", *mutmut, "run", "--max-children",
                            str(max_children), *(names or [])], cwd=work, env=env, stdout=log,
                           stderr=subprocess.STDOUT, timeout=timeout, check=False)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            print(f"  stopped early; reading the mutants checked so far in {work}")
    return time.perf_counter() - started


def _rerun_survivors(package: str, work: Path, max_children: int,
                     timeout: float | None) -> float:
    """Copy the current tests into an earlier run's folder and re-check only the mutants
    that survived it (mutmut re-collects which tests cover what)."""
    shutil.rmtree(work / "tests", ignore_errors=True)
    shutil.copytree(ROOT / "tests", work / "tests",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis"))
    names = _read(package, work)["surviving_mutants"]
    print(f"  re-checking {len(names)} survivors", flush=True)
    return _run(work, max_children, timeout, names)


def _read(package: str, work: Path) -> dict:
    path = EQUIVALENT_DIR / f"{package}.json"
    equivalent = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    counts: Counter[str] = Counter()
    per_file: dict[str, dict[str, int]] = {}
    survivors: list[str] = []
    equivalents: list[dict[str, str]] = []
    base = work / "mutants" / "src" / "jmds_pipeline" / package
    for meta in sorted(base.rglob("*.py.meta")):
        data = json.loads(meta.read_text(encoding="utf-8"))
        file_counts: Counter[str] = Counter()
        for name, code in data.get("exit_code_by_key", {}).items():
            status = STATUS.get(code, "suspicious")
            if status in ("survived", "no_tests") and name in equivalent:
                status = "equivalent"
                equivalents.append({"mutant": name, "reason": equivalent[name]})
            elif status in ("survived", "no_tests"):
                survivors.append(name)
            file_counts[status] += 1
        relative = str(meta.relative_to(work / "mutants")).removesuffix(".meta")
        per_file[relative] = dict(sorted(file_counts.items()))
        counts.update(file_counts)
    generated = sum(counts.values())
    killed = counts["killed"] + counts["timeout"]
    scored = generated - counts["equivalent"] - counts["not_checked"] - counts["skipped"]
    return {
        "generated": generated,
        "killed": counts["killed"],
        "timeout": counts["timeout"],
        "survived": counts["survived"],
        "no_tests": counts["no_tests"],
        "equivalent": counts["equivalent"],
        "not_checked": counts["not_checked"],
        "kill_rate": round(killed / scored, 4) if scored else None,
        # the same with every mutant never checked (a run stopped early) counted as alive
        "kill_rate_unchecked_alive": (round(killed / (generated - counts["equivalent"]), 4)
                                      if generated > counts["equivalent"] else None),
        "tests": MODULES[package],
        "files": per_file,
        "equivalent_mutants": equivalents,
        "surviving_mutants": survivors,
    }


def _load_results() -> dict:
    results = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    results.setdefault("tool", "mutmut")
    results.setdefault("packages", {})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="*", default=list(MODULES))
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=None, help="seconds per package")
    parser.add_argument("--report-only", action="store_true",
                        help="re-read .mutation/<package> without running mutmut")
    parser.add_argument("--rerun-survivors", action="store_true",
                        help="with the current tests, re-check an earlier run's survivors")
    args = parser.parse_args(argv)
    unknown = [p for p in args.packages if p not in MODULES]
    if unknown:
        parser.error(f"packages {unknown} are unknown; accepted: {list(MODULES)}")
    entries: dict[str, dict] = {}
    for package in args.packages:
        work = WORK / package
        seconds = None
        if args.rerun_survivors:
            seconds = _rerun_survivors(package, work, args.max_children, args.timeout)
        elif not args.report_only:
            print(f"{package}: mutating with {MODULES[package]}", flush=True)
            work = _prepare(package, MODULES[package])
            seconds = _run(work, args.max_children, args.timeout)
        entry = _read(package, work)
        previous = _load_results()["packages"].get(package, {})
        if seconds is not None and not args.rerun_survivors:
            entry["wall_seconds"] = round(seconds, 1)
        else:
            entry["wall_seconds"] = previous.get("wall_seconds")
            entry["rerun_wall_seconds"] = (round(seconds, 1) if seconds is not None
                                           else previous.get("rerun_wall_seconds"))
        entries[package] = entry
        print(f"{package}: {entry['generated']} mutants, {entry['killed']} killed, "
              f"{entry['timeout']} timeouts, {entry['survived']} survived, "
              f"{entry['no_tests']} not covered, {entry['equivalent']} equivalent; "
              f"kill rate {entry['kill_rate']}", flush=True)
    import mutmut

    # Re-read just before writing: runs of other packages may have finished meanwhile.
    results = _load_results()
    results["packages"].update(entries)
    results["tool"] = f"mutmut {mutmut.__version__}"
    partial = RESULTS.with_suffix(".json.partial")
    partial.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    partial.replace(RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
