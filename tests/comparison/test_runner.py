"""comparison.runner: the tasks a method runs (one per budget it uses), the rows of
run_method in order, its log lines and its progress bar."""

from __future__ import annotations

import logging

import pytest

from jmds_pipeline.comparison import methods as M
from jmds_pipeline.comparison import runner as R
from jmds_pipeline.comparison.methods import Budget
from jmds_pipeline.config import ConfigError

BUDGETS = [Budget(0.5, 0.3), Budget(0.5, 0.7), Budget(0.9, 0.3)]


def test_unique_tasks_run_each_used_budget_once_in_order() -> None:
    tasks = R.unique_tasks(["dense", "imp", "forgetting", "jmds"], BUDGETS)
    assert tasks == [
        ("dense", Budget(0.0, 0.0)),
        ("imp", Budget(0.5, 0.0)), ("imp", Budget(0.9, 0.0)),
        ("forgetting", Budget(0.0, 0.3)), ("forgetting", Budget(0.0, 0.7)),
        ("jmds", Budget(0.5, 0.3)), ("jmds", Budget(0.5, 0.7)), ("jmds", Budget(0.9, 0.3)),
    ]
    assert R.unique_tasks([], BUDGETS) == [] and R.unique_tasks(["imp"], []) == []


def test_unique_tasks_names_the_unknown_method() -> None:
    with pytest.raises(ValueError, match=r"method = 'jmdss' is unknown; accepted: \[.*'jmds'"):
        R.unique_tasks(["jmds", "jmdss"], BUDGETS)


def test_check_methods_accepts_known_names_and_names_the_key() -> None:
    assert R.check_methods(["dense", "tp_phased"]) is None
    assert R.check_methods([]) is None
    with pytest.raises(ConfigError, match=r"^compare\.methods: unknown methods \['x'\]; "
                                          r"accepted: \['dense', "):
        R.check_methods(["x"])  # sorted: 'dense' comes first
    with pytest.raises(ConfigError, match=r"^compare\.paired: unknown methods \['y', 'z'\]"):
        R.check_methods(["y", "dense", "z"], "compare.paired")


class _Dense:
    def __init__(self, seed: int) -> None:
        self.seed = seed


def test_run_method_runs_every_budget_for_every_seed(monkeypatch, caplog, capsys) -> None:
    calls = []

    def runner(context, dense, budget):  # type: ignore[no-untyped-def]
        calls.append((context, dense.seed, budget))
        return {"method": "probe", "seed": dense.seed, "model": budget.model_sparsity,
                "test_accuracy": 0.25 + dense.seed / 8}

    monkeypatch.setitem(M.METHODS, "probe", (runner, "model"))
    context = object()
    with caplog.at_level(logging.INFO, logger="jmds_pipeline.comparison.runner"):
        frame = R.run_method(context, "probe", BUDGETS, [_Dense(1), _Dense(2)])
    assert calls == [(context, 1, Budget(0.5, 0.0)), (context, 2, Budget(0.5, 0.0)),
                     (context, 1, Budget(0.9, 0.0)), (context, 2, Budget(0.9, 0.0))]
    assert frame.to_dict("records") == [
        {"method": "probe", "seed": 1, "model": 0.5, "test_accuracy": 0.375},
        {"method": "probe", "seed": 2, "model": 0.5, "test_accuracy": 0.5},
        {"method": "probe", "seed": 1, "model": 0.9, "test_accuracy": 0.375},
        {"method": "probe", "seed": 2, "model": 0.9, "test_accuracy": 0.5},
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == ("probe Budget(model_sparsity=0.5, data_sparsity=0.0) seed 1: "
                           "test accuracy 0.3750")
    assert messages[3] == ("probe Budget(model_sparsity=0.9, data_sparsity=0.0) seed 2: "
                           "test accuracy 0.5000")
    assert len(messages) == 4
    assert all(r.levelno == logging.INFO for r in caplog.records)
    bar = capsys.readouterr().err
    assert "probe" in bar and "4/4" in bar  # 2 budgets × 2 seeds, all done


def test_run_method_without_progress_prints_no_bar(monkeypatch, capsys) -> None:
    monkeypatch.setitem(M.METHODS, "probe", (lambda c, d, b: {"test_accuracy": 1.0}, "none"))
    frame = R.run_method(object(), "probe", BUDGETS, [_Dense(0)], progress=False)
    assert len(frame) == 1  # dense-like: one budget
    assert capsys.readouterr().err == ""
