"""Gather the rounds into one trace: evidence, sparsity and accuracy per round."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from jmds_pipeline.pipelines.jmds.nodes import KEPT
from jmds_pipeline.training.metrics import model_sparsity

PER_ROUND = 5


def round_trace(*rounds: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``rounds`` is, per round, (evidence, sample scoring, masks scored, kept scored,
    training log); round 1 trains nothing: its log is the pretraining its model took
    (the dense run, or the run up to the rewind point) and that model's validation metrics.

    Row r describes the model scored in round r: its sparsities, log evidence, prior
    precision and validation accuracy, and the time its training and scoring took
    (``evidence_seconds``: phase B's evidence and weight scores plus phase C's sample
    scores).
    """
    if len(rounds) % PER_ROUND:
        raise ValueError(f"round_trace expects {PER_ROUND} inputs per round")
    rows = []
    for index in range(len(rounds) // PER_ROUND):
        evidence, scoring, masks, kept, trained = rounds[PER_ROUND * index:
                                                         PER_ROUND * (index + 1)]
        alpha = evidence["prior_precision"]
        rows.append(
            {
                "round": index + 1,
                "log_evidence": float(evidence["log_evidence"]),
                "objective": float(evidence.get("objective", evidence["log_evidence"])),
                "stationarity": float(evidence.get("stationarity", {}).get("relative",
                                                                          float("nan"))),
                "prior_precision": float(
                    alpha if isinstance(alpha, float | int)
                    else torch.tensor(list(alpha.values())).double().mean()
                ),
                "model_sparsity": model_sparsity(masks),
                "data_sparsity": 1.0 - float(kept[KEPT].float().mean()),
                "val_accuracy": float(trained["val"]["accuracy"]),
                "train_seconds": float(trained["seconds"]),
                "train_samples": float(trained["samples_seen"]),
                "evidence_seconds": float(evidence["seconds"]) + float(scoring["seconds"]),
            }
        )
    frame = pd.DataFrame(rows)
    return frame, {"rounds": rows}
