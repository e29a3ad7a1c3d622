"""DVCLive experiment tracking: per-epoch training curves and per-round JMDS series.

Everything a run logs goes under ``data/08_reporting/<dataset>/dvclive/<phase>/`` (the
catalog's per-dataset reporting folder), one DVCLive directory per phase, so that a node
rerun (``kedro run --from-nodes=...``) replaces its own phase and nothing else:

- ``dense/``: dense pretraining, one step per epoch (``train/loss``, ``train/accuracy``,
  ``lr``);
- ``jmds/round_<r>/`` (r ≥ 2) and ``jmds/final/``: the rounds' training and the final
  retrain, the same per-epoch series;
- ``rounds/``: one step per JMDS round (step = round number): ``log_evidence``,
  ``model_sparsity``, ``data_sparsity``, ``val_accuracy`` and, when the trace has them,
  ``prior_precision``, ``objective`` (penalty mode) and ``stationarity``; its
  ``metrics.json`` also holds every round's values under ``round_<r>``, so that
  ``dvc exp show`` lists them side by side across experiments.

``dvc.yaml`` declares the ``metrics.json`` files as metrics and the ``plots/metrics``
folders as plots. DVCLive here never creates experiments, writes no ``dvc.yaml``, makes no
report and posts nothing (DVC Studio is only contacted with a token configured, which this
project does not do): it only writes the files above. Tracking is on by default and
switched off with ``--params dvclive=false``; under ``torchrun`` only rank 0 writes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from jmds_pipeline.runtime import run_config_of

if TYPE_CHECKING:
    from dvclive import Live

    from jmds_pipeline.config import RunConfig

REPORTING_DIR = Path("data/08_reporting")  # the catalog's reporting layer, relative to the run
EpochCallback = Callable[[dict[str, float]], None]
"""Called once per epoch with the training loop's record (epoch, train_loss, ...)."""

# Per-epoch record key → DVCLive metric name.
EPOCH_METRICS = {"train_loss": "train/loss", "train_accuracy": "train/accuracy", "lr": "lr"}
ROUND_METRICS = ("log_evidence", "model_sparsity", "data_sparsity", "val_accuracy")
# Logged too when the trace has them (the penalised objective, the MAP's stationarity).
OPTIONAL_ROUND_METRICS = ("prior_precision", "objective", "stationarity")


def is_rank_zero() -> bool:
    """True except in the non-zero ranks of a distributed (torchrun) job."""
    return int(os.environ.get("RANK", "0")) == 0


def tracking_dir(config: RunConfig) -> Path | None:
    """``data/08_reporting/<dataset>/dvclive``, or None when tracking is off here."""
    if not config.dvclive or not is_rank_zero():
        return None
    return REPORTING_DIR / config.dataset / "dvclive"


def open_live(directory: Path) -> Live:
    """A DVCLive logger that writes only under ``directory`` (which it empties first)."""
    from dvclive import Live  # imported on use: tracking off never pays for it

    class FilesOnlyLive(Live):
        # DVCLive looks up the DVC / git repository to name and save experiments. We save
        # none and write no dvc.yaml (dvc.yaml declares our files), so skip the lookup: it
        # costs about a second, and in a git repository without commits it raises
        # SCMError("Empty git repo") (dvclive 3.49), which stopped `dvc repro` there.
        def _init_dvc(self) -> None:
            self._dvc_file = "dvc.yaml"  # never written: dvcyaml=False

    return FilesOnlyLive(str(directory), resume=False, report=None, save_dvc_exp=False,
                         dvcyaml=False, monitor_system=False)


def log_epoch(live: Live, record: dict[str, float]) -> None:
    """One training epoch as DVCLive step ``epoch`` (1-based, as in the history)."""
    live.step = int(record["epoch"])
    for key, name in EPOCH_METRICS.items():
        if key in record:
            live.log_metric(name, float(record[key]))
    live.next_step()


@contextmanager
def epoch_tracker(config: RunConfig, phase: str) -> Iterator[EpochCallback | None]:
    """The ``on_epoch`` callback for one training phase (None when tracking is off).

    ``phase`` is the folder under ``dvclive/``: ``dense``, ``jmds/round_2``, ``jmds/final``.
    """
    root = tracking_dir(config)
    if root is None:
        yield None
        return
    live = open_live(root / phase)
    try:
        yield lambda record: log_epoch(live, record)
    finally:
        live.end()


def log_rounds(trace: pd.DataFrame, directory: Path) -> None:
    """The JMDS round trace as DVCLive steps (step = round) plus a per-round summary."""
    missing = [c for c in ("round", *ROUND_METRICS) if c not in trace.columns]
    if missing:
        raise ValueError(f"the round trace lacks columns {missing}; it has {list(trace)}")
    names = [*ROUND_METRICS, *(c for c in OPTIONAL_ROUND_METRICS if c in trace.columns)]
    live = open_live(directory)
    per_round: dict[str, dict[str, Any]] = {}
    for row in trace.sort_values("round").itertuples(index=False):
        live.step = int(row.round)
        values = {name: float(getattr(row, name)) for name in names}
        for name, value in values.items():
            live.log_metric(name, value)
        per_round[f"round_{int(row.round)}"] = values
        live.next_step()
    live.summary.update(per_round)  # metrics.json: the last round's values and every round's
    live.end()


def track_rounds(round_trace: pd.DataFrame, parameters: dict[str, Any]) -> None:
    """Kedro node: the finished round trace into ``dvclive/rounds`` (when tracking is on)."""
    root = tracking_dir(run_config_of(parameters))
    if root is not None:
        log_rounds(round_trace, root / "rounds")
