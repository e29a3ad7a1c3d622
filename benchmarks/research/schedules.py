"""Cost-aware JMDS schedules (issue 13) on MNIST-1D generated with a non-reported generation
seed, scored on the VALIDATION split; rows appended to OUT.jsonl as they are measured.

    python benchmarks/research/schedules.py GEN OUT.jsonl SCHEDULE [SCHEDULE ...]

A schedule is a name in ``SCHEDULES``: top-level overrides (the rewind epoch) plus JMDS
changes over the configured default, each spelt out so that a schedule means the same
whatever the default becomes (rows before the issue-13 default were run with rewind epoch
1 and 30-epoch rounds as the default: the names say so). Each (gen, schedule) gets its
own dense run, since the rewind epoch changes where the dense run's rewind point is taken.
"""

from __future__ import annotations

import json
import os
import sys
import time

from common import done_keys, make_context

from jmds_pipeline.comparison.methods import (
    METHODS,
    Budget,
    _jmds,
    _jmds_config,
    dense_run,
    effective_budget,
)

# name: (top-level overrides, jmds changes[, baseline method run under those overrides])
SCHEDULES: dict[str, tuple] = {
    # the previous default: rewind to epoch 1, round 1 scores the dense model, 30-epoch rounds
    "rewind1_dense_r30_f60": ({"rewind_epoch": 1},
                              {"score_from": "dense", "round_epochs": 30, "final_epochs": 60}),
    # late rewinding: rewind point at epoch 10, scored there; 10-epoch rounds; 30-epoch retrain
    "rewind10_r10_f30": ({"rewind_epoch": 10},
                         {"score_from": "rewind", "round_epochs": 10, "final_epochs": 30}),
    # exact leverage spelt out: the MNIST-1D recipe's default became lowrank after these runs
    "rewind10_r10_f50": ({"rewind_epoch": 10, "jmds": {"evidence": {"leverage": "exact"}}},
                         {"score_from": "rewind", "round_epochs": 10, "final_epochs": 50}),
    "rewind5_r10_f40": ({"rewind_epoch": 5},
                        {"score_from": "rewind", "round_epochs": 10, "final_epochs": 40}),
    "rewind10_r20_f50": ({"rewind_epoch": 10},
                         {"score_from": "rewind", "round_epochs": 20, "final_epochs": 50}),
    "rewind1_dense_r10_f60": ({"rewind_epoch": 1},
                              {"score_from": "dense", "round_epochs": 10, "final_epochs": 60}),
    "rewind10_r10_f50_kron": ({"rewind_epoch": 10, "jmds": {"evidence": {"leverage": "kron"}}},
                              {"score_from": "rewind", "round_epochs": 10, "final_epochs": 50}),
    # the default schedule with the opt-in low-rank leverage (rank 32; evidence/curvature/kfac)
    "rewind10_r10_f50_lowrank": ({"rewind_epoch": 10,
                                  "jmds": {"evidence": {"leverage": "lowrank",
                                                        "leverage_rank": 32}}},
                                 {"score_from": "rewind", "round_epochs": 10, "final_epochs": 50}),
    # cheaper than the default (issue 13: the default kedro run at ≤ 1.0× dense): 5-epoch
    # rounds (training samples 0.70 of the dense run's) or a 40-epoch retrain (0.74)
    "rewind10_r5_f50_lowrank": ({"rewind_epoch": 10,
                                 "jmds": {"evidence": {"leverage": "lowrank",
                                                       "leverage_rank": 32}}},
                                {"score_from": "rewind", "round_epochs": 5, "final_epochs": 50}),
    "rewind10_r10_f40_lowrank": ({"rewind_epoch": 10,
                                  "jmds": {"evidence": {"leverage": "lowrank",
                                                        "leverage_rank": 32}}},
                                 {"score_from": "rewind", "round_epochs": 10, "final_epochs": 40}),
    # the default with the exact Fisher (C = 10 backward vectors) instead of one MC draw
    "rewind10_r10_f50_lowrank_exact_fisher": ({"rewind_epoch": 10,
                                               "jmds": {"evidence": {"leverage": "lowrank",
                                                                     "leverage_rank": 32,
                                                                     "fisher": "exact"}}},
                                              {"score_from": "rewind", "round_epochs": 10,
                                               "final_epochs": 50}),
    "rewind10_dense_r10_f50": ({"rewind_epoch": 10}, {"score_from": "dense", "round_epochs": 10,
                                                      "final_epochs": 50}),
    "rewind10_r10_f60": ({"rewind_epoch": 10},
                         {"score_from": "rewind", "round_epochs": 10, "final_epochs": 60}),
    "rewind10_r10_f50_data_only": ({"rewind_epoch": 10},
                                   {"score_from": "rewind", "round_epochs": 10,
                                    "final_epochs": 50, "prune_model": False}),
    "phased_rewind10": ({"rewind_epoch": 10, "compare": {"imp_round_epochs": 30}}, {}, "phased"),
    # IMP's rounds follow jmds.round_epochs: the same round schedule as JMDS's
    "phased_rewind10_r10": ({"rewind_epoch": 10, "compare": {"imp_round_epochs": 10}}, {},
                            "phased"),
    "imp_rewind10": ({"rewind_epoch": 10, "compare": {"imp_round_epochs": 30}}, {}, "imp"),
    "random_data_rewind10": ({"rewind_epoch": 10}, {}, "random_data"),
    "forgetting_rewind10": ({"rewind_epoch": 10}, {}, "forgetting"),
}


def _key(budget: Budget) -> str:
    return f"{budget.model_sparsity}/{budget.data_sparsity}"


def main() -> None:
    gen, out, names = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    seed = int(os.environ.get("RUN_SEED", "0"))
    budgets = [Budget(0.8, 0.5), Budget(0.9, 0.7)]
    done = done_keys(out, ("gen", "schedule", "budget", "seed"))
    for name in names:
        top, changes, *baseline = SCHEDULES[name]
        todo = [b for b in budgets if (gen, name, _key(b), seed) not in done]
        if not todo:
            continue
        context = make_context(gen, overrides=top)
        dense = dense_run(context, seed)
        for budget in todo:
            started = time.perf_counter()
            if baseline:
                row = METHODS[baseline[0]][0](context, dense, effective_budget(baseline[0], budget))
            else:
                used = budget if changes.get("prune_model", True) else Budget(0.0,
                                                                              budget.data_sparsity)
                row = _jmds(context, dense, used, f"jmds_{name}",
                            _jmds_config(context, used, **changes))
            row.update(gen=gen, schedule=name, budget=_key(budget),
                       wall=time.perf_counter() - started, dense_seconds=dense.seconds,
                       rewind_seconds=dense.rewind_seconds)
            with open(out, "a") as handle:
                handle.write(json.dumps(row, default=float) + "\n")
            print(name, budget, f"val {row['val_accuracy']:.4f} total×dense "
                  f"{row['total_vs_dense']:.2f}", flush=True)


if __name__ == "__main__":
    main()
