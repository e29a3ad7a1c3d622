"""A few methods of the comparison run for real on a tiny split (48 blob rows, a 6-8-3
MLP, 2 epochs of 3 batches): exact sparsities, exact kept counts and the training samples
each method draws, counted by hand from the schedule.

Hand counts: the dense run draws 2 epochs × 48 rows = 96 samples (48 until its rewind
point after epoch 1). IMP's 2 rounds train once between them (round 2, 1 epoch on all 48
rows). A data budget of 0.25 keeps 36 of 48 rows, so a full-length retrain on them draws
72 samples; a model budget of 0.5 zeroes 24 of fc1's 48 weights (the only prunable one).
"""

from __future__ import annotations

import pytest
import torch

from jmds_pipeline.comparison import methods as M
from jmds_pipeline.comparison.methods import Budget, Context
from tests.comparison.tiny_methods import META, tiny_config
from tests.conftest import make_blobs

BUDGET = Budget(0.5, 0.25)


@pytest.fixture(scope="module")
def run() -> tuple[Context, M.DenseRun]:
    torch.set_num_threads(1)
    config = tiny_config(
        model_options={"hidden_sizes": [8]},
        training={"epochs": 2, "batch_size": 16, "progress": False},
        rewind_epoch=1,
        jmds={"rounds": 2, "round_epochs": 1, "evidence": {"subsample_size": 32}},
    )
    context = Context(config, META, make_blobs(48, seed=0), make_blobs(24, seed=1),
                      make_blobs(24, seed=2))
    return context, M.dense_run(context, 0)


def test_the_dense_run_counts_its_samples_and_forgetting(run) -> None:
    _, dense = run
    assert (dense.samples_seen, dense.rewind_samples) == (96, 48)
    assert 0 < dense.rewind_seconds < dense.seconds
    assert dense.forgetting.shape == (48,) and dense.forgetting.dtype == torch.int64
    assert int(dense.forgetting.min()) >= 0 and int(dense.forgetting.max()) <= 2
    assert not torch.equal(dense.state["net.fc1.weight"], dense.rewind_state["net.fc1.weight"])


@pytest.mark.parametrize(("method", "model", "data", "samples"), [
    ("imp", 0.5, 0.0, 96 + 48 + 96),
    ("forgetting", 0.0, 0.25, 96 + 72),
    ("phased", 0.5, 0.25, 96 + 48 + 96 + 72),  # IMP, its forgetting retrain, the final one
    ("tp_phased", 0.5, 0.25, 96 + 48 + 96 + 72),  # the same with whole channels
])
def test_methods_reach_their_budgets_and_count_every_sample(run, method, model, data,
                                                            samples) -> None:
    context, dense = run
    row = M.METHODS[method][0](context, dense, M.effective_budget(method, BUDGET))
    assert row["method"] == method and row["seed"] == 0
    assert row["model_sparsity"] == model and row["data_sparsity"] == data
    assert (row["target_model_sparsity"], row["target_data_sparsity"]) == (model, data)
    assert row["total_samples_vs_dense"] == samples / 96
    assert row["total_vs_dense"] > 1.0  # the dense run and a retrain at least
    assert 0.0 <= row["val_accuracy"] <= 1.0 and row["log_evidence"] < 0


def test_jmds_reaches_the_joint_budget_and_reports_its_rounds(run) -> None:
    context, dense = run
    row = M.run_jmds(context, dense, BUDGET)
    assert row["model_sparsity"] == 0.5 and row["data_sparsity"] == 0.25
    assert {"round1_log_evidence", "round2_log_evidence", "round1_val_accuracy",
            "round2_val_accuracy", "round1_stationarity"} <= row.keys()
    # round 2 trains one epoch on the rows round 1 kept (between 36 and 48 of them)
    assert (96 + 36 + 72) / 96 < row["total_samples_vs_dense"] < (96 + 48 + 72) / 96
