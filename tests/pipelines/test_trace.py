"""``round_trace`` against hand-built rounds: each row's values are the inputs it was built
from (sparsities counted by hand, seconds summed by hand, the prior's mean worked out by
hand), and the frame passes the catalog's ``RoundTraceSchema``."""

from __future__ import annotations

import math

import pytest
import torch

from jmds_pipeline.pipelines.jmds.trace import round_trace
from jmds_pipeline.schemas import RoundTraceSchema

COLUMNS = ["round", "log_evidence", "objective", "stationarity", "prior_precision",
           "model_sparsity", "data_sparsity", "val_accuracy", "train_seconds",
           "train_samples", "evidence_seconds"]


def _masks(pruned: int, total: int = 20) -> dict[str, torch.Tensor]:
    """Two layers, ``pruned`` of their ``total`` weights removed (all in the first)."""
    first = torch.ones(total // 2, dtype=torch.bool)
    first[:pruned] = False
    return {"a": first, "b": torch.ones(total - total // 2, dtype=torch.bool)}


def _kept(dropped: int, n: int = 10) -> dict[str, torch.Tensor]:
    rows = torch.ones(n, dtype=torch.bool)
    rows[n - dropped:] = False
    return {"kept": rows, "id": torch.arange(n)}


def _round(evidence: dict, scoring_seconds: float, masks: dict, kept: dict,
           accuracy: float, seconds: float, samples: int) -> list:
    return [evidence, {"seconds": scoring_seconds}, masks, kept,
            {"val": {"accuracy": accuracy, "loss": 0.3}, "seconds": seconds,
             "samples_seen": samples}]


def test_three_rounds_give_one_row_each_with_the_inputs_values() -> None:
    rounds = (
        _round({"log_evidence": -120.5, "objective": -121.0, "prior_precision": 2.0,
                "seconds": 1.5, "stationarity": {"relative": 0.03, "absolute": 9.0}},
               0.25, _masks(0), _kept(0), 0.91, 7.0, 400)
        + _round({"log_evidence": -110.0, "objective": -118.0,
                  "prior_precision": {"a": 1.0, "b": 4.0}, "seconds": 2.0,
                  "stationarity": {"relative": 0.5}},
                 0.5, _masks(5), _kept(3), 0.875, 3.5, 210)
        + _round({"log_evidence": -99.0, "prior_precision": 3, "seconds": 0.75},
                 1.0, _masks(8), _kept(6), 0.5, 2.0, 120)
    )
    frame, payload = round_trace(*rounds)

    assert list(frame.columns) == COLUMNS
    assert frame["round"].tolist() == [1, 2, 3]
    assert frame["log_evidence"].tolist() == [-120.5, -110.0, -99.0]
    # the objective when given; log Z when the round has none
    assert frame["objective"].tolist() == [-121.0, -118.0, -99.0]
    # the relative stationarity, NaN when the evidence has none
    assert frame["stationarity"].tolist()[:2] == [0.03, 0.5]
    assert math.isnan(frame["stationarity"].iloc[2])
    # a scalar α as it is; per-layer α: (1 + 4) / 2
    assert frame["prior_precision"].tolist() == [2.0, 2.5, 3.0]
    # 0, 5 and 8 of 20 weights pruned; 0, 3 and 6 of 10 rows dropped
    assert frame["model_sparsity"].tolist() == pytest.approx([0.0, 0.25, 0.4])
    assert frame["data_sparsity"].tolist() == pytest.approx([0.0, 0.3, 0.6])
    assert frame["val_accuracy"].tolist() == [0.91, 0.875, 0.5]
    assert frame["train_seconds"].tolist() == [7.0, 3.5, 2.0]
    assert frame["train_samples"].tolist() == [400.0, 210.0, 120.0]
    # phase B's seconds plus phase C's
    assert frame["evidence_seconds"].tolist() == [1.75, 2.5, 1.75]
    # the JSON payload holds the same rows
    assert payload["rounds"][:2] == frame.iloc[:2].to_dict(orient="records")
    assert payload["rounds"][2]["round"] == 3 and math.isnan(payload["rounds"][2]["stationarity"])
    assert [row["prior_precision"] for row in payload["rounds"]] == [2.0, 2.5, 3.0]
    RoundTraceSchema.validate(frame)


def test_values_come_out_as_python_floats() -> None:
    # numpy / tensor scalars in the inputs become floats (the JSON payload must serialise)
    evidence = {"log_evidence": torch.tensor(-5.0), "objective": torch.tensor(-6.0),
                "prior_precision": 1.0, "seconds": torch.tensor(0.5),
                "stationarity": {"relative": torch.tensor(0.25)}}
    log = {"val": {"accuracy": torch.tensor(0.75)}, "seconds": torch.tensor(1.0),
           "samples_seen": torch.tensor(8)}
    _, payload = round_trace(evidence, {"seconds": torch.tensor(0.25)}, _masks(2), _kept(1),
                             log)
    row = payload["rounds"][0]
    for key in COLUMNS[1:]:
        assert type(row[key]) is float, key
    assert row == {"round": 1, "log_evidence": -5.0, "objective": -6.0, "stationarity": 0.25,
                   "prior_precision": 1.0, "model_sparsity": pytest.approx(0.1),
                   "data_sparsity": pytest.approx(0.1), "val_accuracy": 0.75,
                   "train_seconds": 1.0, "train_samples": 8.0, "evidence_seconds": 0.75}


@pytest.mark.parametrize("count", [1, 4, 6, 9])
def test_inputs_not_in_fives_are_refused(count: int) -> None:
    rounds = _round({"log_evidence": 0.0, "prior_precision": 1.0, "seconds": 0.0},
                    0.0, _masks(0), _kept(0), 1.0, 0.0, 0) * 2
    with pytest.raises(ValueError, match=r"^round_trace expects 5 inputs per round$"):
        round_trace(*rounds[:count])


def test_no_rounds_give_an_empty_trace() -> None:
    frame, payload = round_trace()
    assert len(frame) == 0
    assert payload == {"rounds": []}
