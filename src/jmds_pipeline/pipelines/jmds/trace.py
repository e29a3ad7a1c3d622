"""Gather the rounds into one trace: evidence, sparsity and accuracy per round."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from jmds_pipeline.pipelines.jmds.nodes import KEPT
from jmds_pipeline.training.metrics import model_sparsity


def round_trace(*rounds: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``rounds`` is, per round, (evidence, masks scored, kept scored, training log); round
    1 scores the dense model, so its training log is the dense run's.

    Row r describes the model scored in round r: its sparsities, log evidence, prior
    precision and validation accuracy, and the time its training and scoring took.
    """
    if len(rounds) % 4:
        raise ValueError("round_trace expects four inputs per round")
    rows = []
    for index in range(len(rounds) // 4):
        evidence, masks, kept, trained = rounds[4 * index: 4 * index + 4]
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
                "evidence_seconds": float(evidence["seconds"]),
            }
        )
    frame = pd.DataFrame(rows)
    return frame, {"rounds": rows}
