import json, sys, time
from common import make_context
from jmds_pipeline.comparison.methods import METHODS, Budget, dense_run
ctx = make_context(1, overrides={"training": {"epochs": 3, "augment": "shift"}, "jmds": {"round_epochs": 2}})
d = dense_run(ctx, 0)
for m in sys.argv[1:]:
    t = time.perf_counter()
    row = METHODS[m][0](ctx, d, Budget(0.8, 0.5))
    print(m, round(time.perf_counter()-t,1), {k: (round(v,4) if isinstance(v,float) else v) for k,v in row.items() if "round" in k or "acc" in k or "sparsity" in k})
