"""Dense pretraining: the reference model, and the weights that rewinding returns to."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from jmds_pipeline.data.types import DatasetMeta, Split
from jmds_pipeline.runtime import run_config_of, seeded_model
from jmds_pipeline.tracking import epoch_tracker
from jmds_pipeline.training.evaluate import evaluate
from jmds_pipeline.training.loop import cpu_state, train_model


def history_frame(history: list[dict[str, float]], phase: str) -> pd.DataFrame:
    frame = pd.DataFrame(history)
    frame.insert(0, "phase", phase)
    return frame.astype({"epoch": int})


def pretrain_dense(
    train: Split, val: Split, dataset_meta: dict[str, Any], parameters: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], pd.DataFrame, dict[str, Any]]:
    config = run_config_of(parameters)
    meta = DatasetMeta.from_dict(dataset_meta)
    device = config.resolved_device()
    model = seeded_model(config, meta)
    with epoch_tracker(config, "dense") as on_epoch:
        outcome = train_model(
            model, train, config.training, device=device, seed=config.seed,
            rewind_epoch=config.rewind_epoch, description="dense", on_epoch=on_epoch,
        )
    val_metrics = evaluate(
        model, val, task=meta.task, batch_size=config.training.eval_batch_size, device=device
    )
    summary = {
        "seconds": outcome.seconds,
        "samples_seen": outcome.samples_seen,
        # what jmds.score_from: rewind needs of this run
        "rewind_seconds": outcome.rewind_seconds,
        "rewind_samples": outcome.rewind_samples,
        "epochs": len(outcome.history),
        "val": val_metrics,
    }
    assert outcome.rewind_state is not None  # rewind_epoch is validated ≤ epochs
    return cpu_state(model), outcome.rewind_state, history_frame(outcome.history, "dense"), summary
