"""Dense MNIST-1D recipes, compared on the VALIDATION split of datasets generated with
generation seeds other than the reported one (42). Usage:
    python benchmarks/research/dense_recipe.py NAME '{"training": {...}, "model_options": {...}}'
"""

from __future__ import annotations

import json
import sys
import time

from common import make_context

from jmds_pipeline.comparison.methods import dense_run
from jmds_pipeline.training.evaluate import evaluate

name, overrides = sys.argv[1], json.loads(sys.argv[2])
gens = json.loads(sys.argv[3]) if len(sys.argv) > 3 else [1, 2]
for gen in gens:
    context = make_context(gen, overrides=overrides)
    started = time.perf_counter()
    run = dense_run(context, seed=0)
    model = context.build(0, run.state)
    val = evaluate(model, context.val, task="classification")["accuracy"]
    print(json.dumps({"recipe": name, "gen": gen, "val_accuracy": round(val, 4),
                      "seconds": round(time.perf_counter() - started, 1)}), flush=True)
