"""JMDS variants and baselines on MNIST-1D generated with a non-reported generation seed,
scored on the VALIDATION split (test accuracy is recorded but never used to choose).

    python benchmarks/research/variants.py GEN OUT.jsonl METHOD [METHOD ...]

Each row is appended to OUT.jsonl as soon as it is measured (the run is resumable: rows
already present for (gen, method, budget, seed) are skipped).
"""

from __future__ import annotations

import json
import os
import sys
import time

from common import done_keys, make_context

from jmds_pipeline.comparison.methods import METHODS, Budget, dense_run, effective_budget

gen, out, methods = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
seed = int(os.environ.get("RUN_SEED", "0"))
budgets = [Budget(0.8, 0.5), Budget(0.9, 0.7)]
done = done_keys(out, ("gen", "method", "target_model_sparsity", "target_data_sparsity",
                       "seed"))
context = make_context(gen)
dense = None
for method in methods:
    for budget in budgets:
        used = effective_budget(method, budget)
        key = (gen, method, used.model_sparsity, used.data_sparsity, seed)
        if key in done:
            continue
        done.add(key)
        if dense is None:
            dense = dense_run(context, seed)
        started = time.perf_counter()
        row = METHODS[method][0](context, dense, used)
        row.update(gen=gen, wall=time.perf_counter() - started)
        with open(out, "a") as handle:
            handle.write(json.dumps(row, default=float) + "\n")
        print(method, used, f"val {row['val_accuracy']:.4f}", flush=True)
