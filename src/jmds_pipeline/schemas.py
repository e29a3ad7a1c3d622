"""pandera schemas of every table the pipelines write (used by the catalog's ``validator:``)."""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series


class _Strict(pa.DataFrameModel):
    class Config:
        strict = True
        coerce = True


class TrainingHistorySchema(_Strict):
    """One row per epoch of one training run."""

    phase: Series[str]
    epoch: Series[int] = pa.Field(ge=1)
    train_loss: Series[float] = pa.Field(ge=0)
    train_accuracy: Series[float] = pa.Field(ge=0, le=1)
    lr: Series[float] = pa.Field(ge=0)
    seconds: Series[float] = pa.Field(ge=0)


class SampleTableSchema(_Strict):
    """One row per training sample after a round: its score and whether it is kept."""

    id: Series[int] = pa.Field(unique=True)
    label: Series[int] = pa.Field(ge=-1)  # -1 for sequences (no single label)
    kept: Series[bool]
    contribution: Series[float] = pa.Field(nullable=True)  # c_i = -loss - leverage
    loss: Series[float] = pa.Field(nullable=True, ge=0)
    leverage: Series[float] = pa.Field(nullable=True, ge=0)
    # the score phase C ranked by (c_i, or its mean over rounds); absent before selection
    score: Series[float] | None = pa.Field(nullable=True)


class MaskSummarySchema(_Strict):
    """One row per prunable layer: how many of its weights are still active."""

    layer: Series[str] = pa.Field(unique=True)
    numel: Series[int] = pa.Field(ge=1)
    active: Series[int] = pa.Field(ge=0)
    density: Series[float] = pa.Field(ge=0, le=1)

    @pa.dataframe_check
    @classmethod
    def active_within_numel(cls, frame):  # type: ignore[no-untyped-def]
        return frame["active"] <= frame["numel"]


class RoundTraceSchema(_Strict):
    """One row per JMDS round: evidence, sparsities and accuracy after the round."""

    round: Series[int] = pa.Field(ge=1)
    log_evidence: Series[float]
    objective: Series[float]  # log Z − λ1‖m‖₀ − λ2‖s‖₀ (= log Z when λ = 0)
    # ‖∇ log joint‖ / max(‖∇ log lik‖, ‖αθ‖) at the scored θ: 0 at a mode
    stationarity: Series[float] = pa.Field(ge=0, nullable=True)
    prior_precision: Series[float] = pa.Field(gt=0)
    model_sparsity: Series[float] = pa.Field(ge=0, le=1)
    data_sparsity: Series[float] = pa.Field(ge=0, le=1)
    val_accuracy: Series[float] = pa.Field(ge=0, le=1)
    train_seconds: Series[float] = pa.Field(ge=0)
    train_samples: Series[float] = pa.Field(ge=0)
    evidence_seconds: Series[float] = pa.Field(ge=0)


class ComparisonSchema(_Strict):
    """One row per method × budget × seed of the compare pipeline."""

    method: Series[str]
    seed: Series[int]
    target_model_sparsity: Series[float] = pa.Field(ge=0, lt=1)
    target_data_sparsity: Series[float] = pa.Field(ge=0, lt=1)
    model_sparsity: Series[float] = pa.Field(ge=0, le=1)
    data_sparsity: Series[float] = pa.Field(ge=0, le=1)
    test_accuracy: Series[float] = pa.Field(ge=0, le=1)
    test_loss: Series[float] = pa.Field(ge=0)
    train_seconds: Series[float] = pa.Field(ge=0)
    time_vs_dense: Series[float] = pa.Field(ge=0)
    total_vs_dense: Series[float] = pa.Field(ge=0)
    total_samples_vs_dense: Series[float] = pa.Field(gt=0)
    inference_flops_vs_dense: Series[float] = pa.Field(ge=0, le=1)
    training_flops: Series[float] = pa.Field(ge=0)
    log_evidence: Series[float] = pa.Field(nullable=True)
    test_perplexity: Series[float] | None = pa.Field(nullable=True, ge=1)
    # the validation split: what defaults are chosen on (benchmarks/PROTOCOL.md)
    val_accuracy: Series[float] = pa.Field(ge=0, le=1)
    # JMDS rows: the evidence, validation accuracy and stationarity of each round's model
    round_log_evidence: Series[float] | None = pa.Field(
        alias=r"^round\d+_log_evidence$", regex=True, nullable=True)
    round_val_accuracy: Series[float] | None = pa.Field(
        alias=r"^round\d+_val_accuracy$", regex=True, nullable=True, ge=0, le=1)
    round_stationarity: Series[float] | None = pa.Field(
        alias=r"^round\d+_stationarity$", regex=True, nullable=True, ge=0)
