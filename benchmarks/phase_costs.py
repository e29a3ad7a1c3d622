"""Wall time and FLOPs of every phase of a whole run, for dense, IMP, phased and JMDS.

    nice -n 10 python benchmarks/cost.py --phases   # the ``phases`` entry of cost.json

One dense run (MNIST-1D, the default recipe, seed 0) is shared by the methods, as in the
comparison. Each method then runs through ``comparison.methods`` unchanged while two
recorders watch it:

- every ``train_model`` call (the dense run, IMP's and JMDS's rounds, phased's forgetting
  retrain, the final retrains): its seconds, training samples drawn and FLOPs. FLOPs are
  3 × forward FLOPs per sample × samples drawn (``training.flops``), counted two ways:
  ``executed`` with the dense kernels the CPU runs (a mask saves nothing), and
  ``ideal`` with each layer's FLOPs times its mask's density (what sparse kernels could
  save);
- every evidence call of JMDS (phase B's log Z and weight scores, phase C's sample
  contributions): its seconds, then its FLOPs counted by ``FlopCounterMode`` in a second,
  identical call (the counter's dispatch overhead would distort the first call's time).
  The counter sees matrix products and convolutions, forward and backward; element-wise
  work and the eigendecompositions are not counted.

The method's pretraining is the part of the dense run it needs: all of it for IMP and
phased (they prune the trained model), up to the rewind point for JMDS when it scores
there (``jmds.score_from: rewind``). The dense row is the dense run itself. Ratios are to
the dense run's training; samples and FLOPs do not depend on machine load, seconds do.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from jmds_pipeline.comparison import methods
from jmds_pipeline.sparsity import rounds
from jmds_pipeline.training.flops import masked_inference_flops


def run_jmds_default_exact_leverage(context: methods.Context, dense: methods.DenseRun,
                                    budget: methods.Budget) -> dict[str, Any]:
    """The configured default with the exact leverage (the recipe's default is lowrank)."""
    evidence = context.config.jmds.evidence.model_copy(update={"leverage": "exact"})
    return methods._jmds(context, dense, budget, "jmds_default_exact_leverage",
                         methods._jmds_config(context, budget, evidence=evidence))


PHASE_METHODS: dict[str, Callable] = {
    "imp": methods.run_imp,
    "phased": methods.run_phased,
    "jmds_default": methods.run_jmds_default,
    "jmds_default_exact_leverage": run_jmds_default_exact_leverage,
}


class PhaseRecorder:
    """Wraps ``train_model`` and JMDS's evidence calls; ``phase`` labels what runs now."""

    def __init__(self, example: torch.Tensor) -> None:
        self.example = example  # one input row, for forward FLOPs per sample
        self.phase = "dense"
        self.records: list[dict[str, Any]] = []

    def train(self, real: Callable) -> Callable:
        def wrapped(model, train, config, **kwargs):
            outcome = real(model, train, config, **kwargs)
            masks = kwargs.get("masks") or {}
            ideal, dense = masked_inference_flops(model, masks, self.example)
            self.records.append({
                "phase": self.phase, "kind": "training", "seconds": outcome.seconds,
                "samples": outcome.samples_seen,
                "flops_executed": 3 * dense * outcome.samples_seen,
                "flops_ideal": 3 * ideal * outcome.samples_seen,
                "rewind_seconds": outcome.rewind_seconds,
                "rewind_samples": outcome.rewind_samples,
            })
            return outcome
        return wrapped

    def evidence(self, real: Callable) -> Callable:
        def wrapped(*args, **kwargs):
            started = time.perf_counter()
            result = real(*args, **kwargs)
            seconds = time.perf_counter() - started
            with FlopCounterMode(display=False) as counter:
                real(*args, **kwargs)
            flops = counter.get_total_flops()
            self.records.append({"phase": "evidence", "kind": real.__name__,
                                 "seconds": seconds, "samples": 0,
                                 "flops_executed": flops, "flops_ideal": flops})
            return result
        return wrapped


@contextlib.contextmanager
def recording(recorder: PhaseRecorder) -> Iterator[None]:
    patches = [(methods, "train_model"), (rounds, "train_model"),
               (methods, "score_samples"), (methods, "score_weights")]
    saved = [getattr(module, name) for module, name in patches]
    try:
        for (module, name), real in zip(patches, saved, strict=True):
            wrap = recorder.train if name == "train_model" else recorder.evidence
            setattr(module, name, wrap(real))
        yield
    finally:
        for (module, name), real in zip(patches, saved, strict=True):
            setattr(module, name, real)


def _totals(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in records:
        entry = out.setdefault(r["phase"], {"seconds": 0.0, "samples": 0,
                                            "flops_executed": 0, "flops_ideal": 0})
        for key in entry:
            entry[key] += r[key]
    return out


def evidence_flops_by_op(context: methods.Context, seed: int = 0) -> dict[str, Any]:
    """FLOPs of one evidence call on the untrained default model and all N rows, by
    operator: without the sample pass (curvature, α, log Z), with it (phase C), and one
    forward over the N rows for scale. ``mm`` in the sample pass is mostly the eigenbasis
    projection of every sample's inputs (R·d_in² multiply-adds per conv layer)."""
    from jmds_pipeline.evidence import estimate_evidence

    model = context.build(seed)
    x, y = context.train["x"], context.train["y"]
    config = context.evidence_config(seed)
    out: dict[str, Any] = {"rows": len(x), "fisher": config.fisher,
                           "leverage": config.leverage}
    for label, samples in (("no_sample_pass", False), ("sample_pass", True)):
        with FlopCounterMode(display=False) as counter:
            estimate_evidence(model, x, y, config=config, score_samples=samples,
                              score_weights=False)
        out[label] = {"total": counter.get_total_flops(), "by_op": {
            str(op).split(".")[-1]: n for op, n in counter.get_flop_counts()["Global"].items()}}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    out["forward_all_rows"] = counter.get_total_flops()
    out["sample_pass_in_training_epochs"] = (out["sample_pass"]["total"]
                                             / (3 * out["forward_all_rows"]))
    return out


def measure_phases(context: methods.Context, seed: int = 0) -> dict[str, Any]:
    """The ``phases`` entry: per method, per phase seconds/samples/FLOPs and ratios."""
    jmds = context.config.jmds
    budget = methods.Budget(jmds.target_model_sparsity, jmds.target_data_sparsity)
    recorder = PhaseRecorder(context.train["x"][:1])
    with recording(recorder):
        recorder.phase = "dense"
        dense = methods.dense_run(context, seed)
    dense_record = recorder.records[0]
    rows: dict[str, Any] = {"dense": {"phases": {"training": {
        k: dense_record[k] for k in ("seconds", "samples", "flops_executed", "flops_ideal")}}}}
    early = jmds.score_from == "rewind"
    for name, run in PHASE_METHODS.items():
        recorder.records = []
        recorder.phase = "rounds"
        original_retrain = methods._retrain_and_measure

        def retrain(*args: Any, _orig: Callable = original_retrain, _name: str = name,
                    **kwargs: Any):
            # (context, dense, masks, kept, extra_seconds, method, budget, ...)
            label = args[5] if len(args) > 5 else kwargs["method"]
            # phased's first retrain (IMP's, counting forgetting events) scores the data
            recorder.phase = "retrain" if label == _name else f"scoring_retrain_{label}"
            try:
                return _orig(*args, **kwargs)
            finally:
                recorder.phase = "rounds"

        methods._retrain_and_measure = retrain
        try:
            with recording(recorder):
                row = run(context, dense, budget)
        finally:
            methods._retrain_and_measure = original_retrain
        phases = _totals(recorder.records)
        fraction = (dense.rewind_samples / dense.samples_seen
                    if name.startswith("jmds") and early else 1.0)
        seconds = (dense.rewind_seconds if name.startswith("jmds") and early
                   else dense.seconds)
        phases = {"pretraining": {
            "seconds": seconds, "samples": round(dense_record["samples"] * fraction),
            "flops_executed": round(dense_record["flops_executed"] * fraction),
            "flops_ideal": round(dense_record["flops_ideal"] * fraction)}, **phases}
        rows[name] = {"phases": phases, "test_accuracy": row["test_accuracy"],
                      "val_accuracy": row["val_accuracy"],
                      # the row's own count, a check on the phases' (its seconds ratio is
                      # not comparable here: it includes the FLOP-counting second calls)
                      "total_samples_vs_dense_reported": row["total_samples_vs_dense"],
                      "evidence_calls": [r for r in recorder.records
                                         if r["phase"] == "evidence"]}
    for row in rows.values():
        total = {k: sum(p[k] for p in row["phases"].values())
                 for k in ("seconds", "samples", "flops_executed", "flops_ideal")}
        row["total"] = total
        row["vs_dense"] = {k: total[k] / dense_record[k]
                           for k in ("seconds", "samples", "flops_executed", "flops_ideal")}
        row["phase_share_of_seconds"] = {p: v["seconds"] / total["seconds"]
                                         for p, v in row["phases"].items()}
    return {"seed": seed, "budget": [budget.model_sparsity, budget.data_sparsity],
            "score_from": jmds.score_from, "methods": rows,
            "evidence_flops_by_op": evidence_flops_by_op(context, seed)}
