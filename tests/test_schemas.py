"""The tables' schemas accept what the pipelines write and reject broken tables."""

from __future__ import annotations

import pandas as pd
import pandera.errors
import pytest

from jmds_pipeline.schemas import MaskSummarySchema, RoundTraceSchema, SampleTableSchema

REJECTED = (pandera.errors.SchemaError, pandera.errors.SchemaErrors)


def _samples() -> pd.DataFrame:
    return pd.DataFrame({"id": [10, 11, 12], "label": [0, 2, -1], "kept": [True, False, True],
                         "contribution": [-1.0, -2.5, float("nan")],
                         "loss": [0.5, 2.0, float("nan")], "leverage": [0.5, 0.5, float("nan")]})


def _masks() -> pd.DataFrame:
    return pd.DataFrame({"layer": ["a", "b"], "numel": [10, 4], "active": [3, 4],
                         "density": [0.3, 1.0]})


def _trace() -> pd.DataFrame:
    return pd.DataFrame({"round": [1, 2], "log_evidence": [-10.0, -9.0],
                         "objective": [-10.0, -9.0], "stationarity": [0.01, float("nan")],
                         "prior_precision": [1.0, 2.0], "model_sparsity": [0.0, 0.5],
                         "data_sparsity": [0.0, 0.3], "val_accuracy": [0.9, 0.8],
                         "train_seconds": [1.0, 2.0], "train_samples": [0.0, 50.0],
                         "evidence_seconds": [0.1, 0.2]})


@pytest.mark.parametrize(("schema", "make"), [(SampleTableSchema, _samples),
                                              (MaskSummarySchema, _masks),
                                              (RoundTraceSchema, _trace)])
def test_a_good_table_passes(schema, make) -> None:
    assert len(schema.validate(make())) == len(make())


@pytest.mark.parametrize(
    ("schema", "make", "column", "row", "value"),
    [
        (SampleTableSchema, _samples, "id", 1, 10),  # duplicate sample id
        (SampleTableSchema, _samples, "label", 0, -2),  # only -1 marks "no label"
        (SampleTableSchema, _samples, "loss", 0, -0.1),  # an NLL is never negative
        (SampleTableSchema, _samples, "leverage", 1, -1.0),
        (MaskSummarySchema, _masks, "layer", 1, "a"),  # one row per layer
        (MaskSummarySchema, _masks, "active", 1, 5),  # more active than it has weights
        (MaskSummarySchema, _masks, "numel", 0, 0),
        (MaskSummarySchema, _masks, "density", 0, 1.5),
        (RoundTraceSchema, _trace, "round", 0, 0),
        (RoundTraceSchema, _trace, "prior_precision", 1, 0.0),
        (RoundTraceSchema, _trace, "val_accuracy", 1, 1.2),
        (RoundTraceSchema, _trace, "data_sparsity", 0, -0.1),
        (RoundTraceSchema, _trace, "stationarity", 0, -0.5),
    ],
)
def test_a_broken_table_is_rejected_naming_the_column(schema, make, column, row, value) -> None:
    frame = make()
    frame.loc[row, column] = value
    with pytest.raises(REJECTED, match=column):
        schema.validate(frame)


@pytest.mark.parametrize(("schema", "make"), [(SampleTableSchema, _samples),
                                              (MaskSummarySchema, _masks),
                                              (RoundTraceSchema, _trace)])
def test_missing_or_extra_columns_are_rejected(schema, make) -> None:
    frame = make()
    with pytest.raises(REJECTED):
        schema.validate(frame.drop(columns=frame.columns[1]))
    with pytest.raises(REJECTED, match="surprise"):
        schema.validate(frame.assign(surprise=1))
