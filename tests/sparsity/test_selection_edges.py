"""Edge cases of the selection rules that mutation testing showed no test pinned down:
boundaries (c_i = λ2, one kept row), the other modes of ``next_masks``, shifted score
ranges in CCS strata, error messages that name the bad key, and the round trace."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from jmds_pipeline.config import JMDSConfig, RunConfig, TrainingConfig
from jmds_pipeline.sparsity.masks import init_masks, layer_summary
from jmds_pipeline.sparsity.rounds import RoundScores, kept_weights, next_masks, run_rounds
from jmds_pipeline.sparsity.sample_selection import select_by_threshold, select_samples
from jmds_pipeline.sparsity.schedules import round_targets
from jmds_pipeline.sparsity.weight_selection import (
    magnitude_scores,
    prune_by_threshold,
    prune_to_target,
    random_scores,
)
from jmds_pipeline.training.evaluate import evaluate
from jmds_pipeline.training.loop import cpu_state
from tests.conftest import make_blobs, seeded_blob_mlp


def test_kept_weights_with_a_single_kept_row_carry_the_whole_data_set() -> None:
    kept = torch.tensor([False, True, False, False])
    assert kept_weights(kept, rescale=True).tolist() == [0.0, 4.0, 0.0, 0.0]
    assert kept_weights(torch.zeros(3, dtype=torch.bool), rescale=True).tolist() == [0.0] * 3


def _two_layer_scores() -> tuple[dict, dict]:
    generator = torch.Generator().manual_seed(5)
    scores = {"a": torch.randn(4, 5, generator=generator),
              "b": torch.randn(10, generator=generator)}
    return scores, {name: torch.ones_like(s, dtype=torch.bool) for name, s in scores.items()}


def test_next_masks_in_penalty_mode_removes_exactly_the_qualifying_weights() -> None:
    scores, masks = _two_layer_scores()
    config = JMDSConfig(mode="penalty", lambda_model=0.3, max_model_sparsity=0.9)
    new = next_masks(scores, masks, config, round_index=1)
    for name in scores:  # Δ_j + λ1 > 0 ⇔ removed, in every layer
        assert torch.equal(~new[name], scores[name] + 0.3 > 0)
    capped = next_masks(scores, masks, JMDSConfig(mode="penalty", lambda_model=5.0,
                                                  max_model_sparsity=0.2), round_index=1)
    assert sum(int((~m).sum()) for m in capped.values()) == 6  # ⌊0.2·30 + ½⌋


def test_next_masks_follows_the_schedule_and_the_scope() -> None:
    scores, masks = _two_layer_scores()
    cubic = JMDSConfig(rounds=3, target_model_sparsity=0.8, schedule="cubic")
    first = 0.8 * (1 - (1 - 1 / 3) ** 3)  # Zhu & Gupta, round 1 of 3
    new = next_masks(scores, masks, cubic, round_index=1)
    assert sum(int((~m).sum()) for m in new.values()) == int(first * 30 + 0.5)
    layerwise = JMDSConfig(rounds=1, target_model_sparsity=0.5, weight_scope="layerwise")
    new = next_masks(scores, masks, layerwise, round_index=1)
    assert [int((~new[n]).sum()) for n in ("a", "b")] == [10, 5]
    assert next_masks(scores, masks, JMDSConfig(prune_model=False), 1) is masks


def test_threshold_boundary_single_row_and_messages(caplog) -> None:
    # c_i = λ2 exactly: −c_i + λ2 = 0 is not a gain, the row stays.
    assert select_by_threshold(torch.tensor([-0.5, -2.0]), torch.ones(2, dtype=torch.bool),
                               -0.5).tolist() == [True, False]
    with pytest.raises(ValueError, match="drops all 1 kept"):
        select_by_threshold(torch.tensor([-1.0, -2.0]), torch.tensor([True, False]), 0.0)
    with pytest.raises(ValueError, match=r"^lam = inf must be finite"):
        select_by_threshold(torch.zeros(2), torch.ones(2, dtype=torch.bool), float("inf"))
    with pytest.raises(ValueError, match=r"^contributions must be 1-D \(N,\), got \(2, 2\)"):
        select_by_threshold(torch.zeros(2, 2), torch.ones(2, dtype=torch.bool), 0.0)
    with pytest.raises(ValueError, match=r"^max_sparsity = 1\.0"):
        select_by_threshold(torch.zeros(2), torch.ones(2, dtype=torch.bool), 0.0, 1.0)
    with caplog.at_level(logging.WARNING):  # the cap equals what λ2 wants: no warning
        new = select_by_threshold(torch.tensor([-3.0, -2.0, 1.0, 2.0]),
                                  torch.ones(4, dtype=torch.bool), 0.0, max_sparsity=0.5)
    assert new.tolist() == [False, False, True, True] and "capped" not in caplog.text
    # Ties in the gain: the lower row index goes first.
    tied = select_by_threshold(-torch.ones(6), torch.ones(6, dtype=torch.bool), 0.0, 0.5)
    assert tied.tolist() == [False] * 3 + [True] * 3
    # Rows dropped earlier count towards the cap (it is a fraction of all N rows).
    kept = torch.tensor([False, False, True, True])
    assert select_by_threshold(-torch.ones(4), kept, 0.0, 0.25).tolist() == [False, False,
                                                                              True, True]


@pytest.mark.parametrize("offset", [0.0, 10.0, -7.5])
def test_ccs_strata_do_not_depend_on_where_the_score_range_starts(offset: float) -> None:
    scores = torch.cat([torch.full((2,), 0.0), torch.full((5,), 0.5), torch.full((20,), 1.0)])
    new = select_samples(scores + offset, torch.zeros(27, dtype=torch.int64),
                         torch.ones(27, dtype=torch.bool), 15 / 27, mode="stratified", strata=3)
    assert [int(new[:2].sum()), int(new[2:7].sum()), int(new[7:].sum())] == [2, 5, 5]


def test_ccs_with_constant_scores_or_one_stratum_is_a_uniform_draw() -> None:
    kept = torch.ones(40, dtype=torch.bool)
    labels = torch.zeros(40, dtype=torch.int64)
    for scores, strata in ((torch.full((40,), 3.0), 5), (torch.arange(40.0), 1)):
        new = select_samples(scores, labels, kept, 0.75, mode="stratified", strata=strata,
                             generator=torch.Generator().manual_seed(4))
        expected = torch.zeros(40, dtype=torch.bool)
        expected[torch.randperm(40, generator=torch.Generator().manual_seed(4))[:10]] = True
        assert torch.equal(new, expected)
    # The default is the paper's 50 strata.
    scores = torch.rand(300, generator=torch.Generator().manual_seed(2))
    labels = torch.zeros(300, dtype=torch.int64)
    kept = torch.ones(300, dtype=torch.bool)
    assert torch.equal(select_samples(scores, labels, kept, 0.8, mode="stratified"),
                       select_samples(scores, labels, kept, 0.8, mode="stratified", strata=50))
    assert not torch.equal(
        select_samples(scores, labels, kept, 0.8, mode="stratified"),
        select_samples(scores, labels, kept, 0.8, mode="stratified", strata=51))


def test_ccs_fills_the_budget_when_a_large_stratum_runs_out_late() -> None:
    # Strata of 1, 1 and 2 rows, budget 3 of 4: ⌊3/3⌋ = 1, 1, then ⌊1/1⌋ = 1 of the 2.
    scores = torch.tensor([0.0, 0.5, 1.0, 1.0])
    new = select_samples(scores, torch.zeros(4, dtype=torch.int64),
                         torch.ones(4, dtype=torch.bool), 0.25, mode="stratified", strata=3)
    assert int(new.sum()) == 3 and bool(new[0]) and bool(new[1])
    # Strata of 1 and 9 rows, budget 8: ⌊8/2⌋ = 4 from the 1-row stratum gives 1, then the
    # 9-row stratum gives ⌊7/1⌋ = 7: exactly 8.
    scores = torch.tensor([0.0] + [1.0] * 9)
    new = select_samples(scores, torch.zeros(10, dtype=torch.int64),
                         torch.ones(10, dtype=torch.bool), 0.2, mode="stratified", strata=2)
    assert int(new.sum()) == 8 and bool(new[0])


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"target_sparsity": 1.0}, r"^target_sparsity = 1\.0"),
        ({"hard_cutoff": 1.0}, r"^hard_cutoff = 1\.0"),
        ({"strata": True}, r"^strata = True"),
        ({"strata": 0}, r"^strata = 0"),
        ({"labels": torch.zeros(5, dtype=torch.int64)}, r"^labels has shape \(5,\); expected "
                                                          r"\(8,\) or \(8, T\)"),
        ({"kept": torch.ones(5, dtype=torch.bool)}, r"^kept has shape \(5,\); expected \(8,\)"),
    ],
)
def test_select_samples_errors_name_the_bad_value(kwargs: dict, pattern: str) -> None:
    arguments = {"scores": torch.zeros(8), "labels": torch.zeros(8, dtype=torch.int64),
                 "kept": torch.ones(8, dtype=torch.bool), "target_sparsity": 0.5,
                 "mode": "stratified", **kwargs}
    with pytest.raises(ValueError, match=pattern):
        select_samples(**arguments)
    assert int(select_samples(torch.zeros(8), torch.zeros(8, dtype=torch.int64),
                              torch.ones(8, dtype=torch.bool), 0.5, mode="stratified",
                              strata=1).sum()) == 4


def test_weight_selection_errors_name_the_bad_value() -> None:
    scores, masks = _two_layer_scores()
    with pytest.raises(ValueError, match=r"^exclude names \['c'\] that have no mask"):
        prune_to_target(scores, masks, 0.5, exclude=["c"])
    with pytest.raises(ValueError, match=r"^scores\['a'\] has shape \(20,\) but its mask has "
                                         r"\(4, 5\)"):
        prune_to_target({**scores, "a": scores["a"].reshape(-1)}, masks, 0.5)
    with pytest.raises(ValueError, match=r"^target_sparsity = 1\.5"):
        prune_to_target(scores, masks, 1.5)
    with pytest.raises(ValueError, match=r"^lam = nan must be finite"):
        prune_by_threshold(scores, masks, float("nan"))
    with pytest.raises(ValueError, match=r"^max_sparsity = -0\.1"):
        prune_by_threshold(scores, masks, 0.0, max_sparsity=-0.1)
    bad = {**scores, "b": scores["b"].clone()}
    bad["b"][3] = float("nan")
    with pytest.raises(ValueError, match=r"^scores of active weights contain NaN in 'b'"):
        prune_by_threshold(bad, masks, 0.0)
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"^masks name parameters the model does not have: "
                                         r"\['nope'\]"):
        magnitude_scores(model, {"nope": torch.ones(2, dtype=torch.bool)})


def test_threshold_counts_qualifying_weights_over_every_layer() -> None:
    scores = {"a": torch.tensor([1.0, -1.0, 2.0]), "b": torch.tensor([3.0, -2.0])}
    masks = {name: torch.ones_like(s, dtype=torch.bool) for name, s in scores.items()}
    new = prune_by_threshold(scores, masks, 0.0)
    assert new["a"].tolist() == [False, True, False] and new["b"].tolist() == [False, True]
    assert all(m.dtype == torch.bool for m in prune_to_target(
        scores, {n: m.to(torch.uint8) for n, m in masks.items()}, 0.4).values())


def test_random_scores_default_generator_is_seed_zero() -> None:
    _, masks = _two_layer_scores()
    default = random_scores(masks)
    seeded = random_scores(masks, torch.Generator().manual_seed(0))
    other = random_scores(masks, torch.Generator().manual_seed(7))
    assert all(torch.equal(default[n], seeded[n]) for n in masks)
    assert not torch.equal(default["a"], other["a"])
    magnitudes = magnitude_scores(nn.Linear(3, 2), {"weight": torch.tensor(
        [[True, False, True], [True, True, True]])})
    assert magnitudes["weight"][0, 1] == float("inf")


def test_masks_errors_and_empty_layer_summary() -> None:
    model = nn.Linear(3, 2)
    summary = layer_summary({"empty": torch.ones(0, dtype=torch.bool),
                             "w": torch.tensor([True, False])})
    assert summary.columns.tolist() == ["layer", "numel", "active", "density"]
    assert summary["density"].tolist() == [1.0, 0.5]
    with pytest.raises(ValueError, match=r"^masks name parameters the model does not have: "
                                         r"\['nope'\]"):
        from jmds_pipeline.sparsity.masks import apply_masks

        apply_masks(model, {"nope": torch.ones(2, dtype=torch.bool)})
    assert init_masks(model, ["weight"])["weight"].dtype == torch.bool


def test_schedule_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"^final_sparsity = 1\.0"):
        round_targets(1.0, 2)


def test_round_trace_reports_what_each_round_scored() -> None:
    train, val = make_blobs(n=45), make_blobs(n=30, seed=1)
    config = RunConfig(dataset="digits", model="mlp",
                       training=TrainingConfig(epochs=1, batch_size=16, progress=False))
    jmds = JMDSConfig(rounds=2, round_epochs=1, target_model_sparsity=0.5,
                      target_data_sparsity=0.2)

    def build(state):
        return seeded_blob_mlp(state, hidden=8)

    trained = build(None)
    with torch.no_grad():
        trained[0].weight.mul_(3.0)  # not the state build(None) makes
    scored: list[float] = []

    def scorer(model, masks, kept, *, weights: bool, samples: bool) -> RoundScores:
        if not weights:  # phase C's second call, for the samples alone
            return RoundScores(sample_scores=torch.arange(45, dtype=torch.float64))
        scored.append(evaluate(model, val, task="classification")["accuracy"])
        if len(scored) == 1:
            assert torch.equal(model[0].weight, trained[0].weight)
        return RoundScores(weight_scores=magnitude_scores(model, masks),
                           sample_scores=torch.arange(45, dtype=torch.float64)
                           if samples else None,
                           log_evidence=-10.0 * len(scored))

    outcome = run_rounds(build, cpu_state(trained), cpu_state(build(None)), train, val, config,
                         jmds, {"0.weight": torch.ones(8, 6, dtype=torch.bool)}, scorer,
                         task="classification")
    assert [row["val_accuracy"] for row in outcome.trace] == scored
    assert [row["log_evidence"] for row in outcome.trace] == [-10.0, -20.0]
    assert all(0 <= row["score_seconds"] <= outcome.seconds for row in outcome.trace)
    assert outcome.kept.dtype == torch.bool
