"""``run_rounds``' outcome on hand-counted rounds: the samples phase A draws, the trace's
objective J = log Z − λ1‖m‖₀ − λ2‖s‖₀ and α, the averaged sample scores, phase C without
rescoring, channel granularity, the seed and the time it reports."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from jmds_pipeline.config import JMDSConfig, RunConfig, TrainingConfig
from jmds_pipeline.sparsity.channels import (
    channel_groups,
    channel_mask_names,
    spread_group_scores,
)
from jmds_pipeline.sparsity.rounds import RoundScores, next_masks, run_rounds
from jmds_pipeline.sparsity.weight_selection import magnitude_scores
from jmds_pipeline.training.loop import cpu_state, train_model
from tests.conftest import make_blobs, seeded_blob_mlp

N = 60


def _config(seed: int = 0) -> RunConfig:
    return RunConfig(dataset="digits", model="mlp", seed=seed,
                     training=TrainingConfig(epochs=2, batch_size=16, progress=False))


def _masks() -> dict[str, torch.Tensor]:
    return {"0.weight": torch.ones(16, 6, dtype=torch.bool)}


def test_samples_seen_trace_objective_and_alpha_by_hand() -> None:
    """Phase A of round r draws the rows kept after round r−1 once per epoch
    (round_epochs = 2), counted from the scorer's view; ρ_data = 0.75 leaves 15 rows."""
    train, val = make_blobs(n=N), make_blobs(n=30, seed=1)
    jmds = JMDSConfig(rounds=3, round_epochs=2, target_model_sparsity=0.5,
                      target_data_sparsity=0.75, sample_selection="topk",
                      lambda_model=0.5, lambda_data=0.25)
    seen: list[tuple[int, int, torch.dtype]] = []
    evidence = iter([-10.0, -20.0, -30.0])

    def scorer(model: nn.Module, masks, kept, *, weights: bool, samples: bool) -> RoundScores:
        assert isinstance(weights, bool) and isinstance(samples, bool)
        if weights:
            seen.append((sum(int(m.sum()) for m in masks.values()), int(kept.sum()),
                         kept.dtype))
            return RoundScores(weight_scores=magnitude_scores(model, masks),
                               log_evidence=next(evidence), prior_precision=float(len(seen)),
                               extra={"note": len(seen)})
        return RoundScores(sample_scores=torch.arange(N, dtype=torch.float64))

    model = seeded_blob_mlp(None)
    started = time.perf_counter()
    outcome = run_rounds(seeded_blob_mlp, cpu_state(model), cpu_state(model), train, val,
                         _config(), jmds, _masks(), scorer, task="classification")
    elapsed = time.perf_counter() - started
    assert 0.0 <= outcome.seconds <= elapsed
    assert [dtype for _, _, dtype in seen] == [torch.bool] * 3
    kept_counts = [k for _, k, _ in seen]
    assert kept_counts[0] == N and kept_counts[1] < N and kept_counts[2] < kept_counts[1]
    assert outcome.samples_seen == 2 * kept_counts[1] + 2 * kept_counts[2]
    # J of round r: the masks and kept rows that round scored
    expected = [e - 0.5 * active - 0.25 * kept
                for e, (active, kept, _) in zip([-10.0, -20.0, -30.0], seen, strict=True)]
    assert [row["objective"] for row in outcome.trace] == expected
    assert [row["prior_precision"] for row in outcome.trace] == [1.0, 2.0, 3.0]
    assert [row["note"] for row in outcome.trace] == [1, 2, 3]
    assert outcome.prior_precision == 3.0
    assert outcome.kept.dtype == torch.bool and int(outcome.kept.sum()) == 15


def test_kept_stays_an_all_true_bool_vector_without_data_pruning() -> None:
    """No sample scores: J counts all N rows as kept (λ2 = 0.25 each)."""
    train, val = make_blobs(n=N), make_blobs(n=30, seed=1)
    jmds = JMDSConfig(rounds=2, round_epochs=1, target_model_sparsity=0.5, prune_data=False,
                      lambda_data=0.25)
    active: list[int] = []

    def scorer(model, masks, kept, *, weights, samples) -> RoundScores:
        active.append(sum(int(m.sum()) for m in masks.values()))
        return RoundScores(weight_scores=magnitude_scores(model, masks), log_evidence=-5.0)

    model = seeded_blob_mlp(None)
    outcome = run_rounds(seeded_blob_mlp, cpu_state(model), cpu_state(model), train, val,
                         _config(), jmds, _masks(), scorer, task="classification")
    assert outcome.kept.dtype == torch.bool and bool(outcome.kept.all())
    assert outcome.samples_seen == N  # round 2 trains one epoch on all 60 rows
    assert [row["objective"] for row in outcome.trace] == [-5.0 - 0.25 * N] * 2
    assert active == [96, 68]  # round 1: ⌊(1 − √0.5)·96 + ½⌋ = 28 weights go


def _selection_run(**update) -> torch.Tensor:
    """Two rounds, ρ_data = 0.75 geometric: 30 rows kept after round 1, 15 after round 2.
    Round 1 scores row i as i (keeps 30..59); round 2 as 10 for even rows, 0 for odd."""
    train, val = make_blobs(n=N), make_blobs(n=30, seed=1)
    jmds = JMDSConfig(rounds=2, round_epochs=1, target_model_sparsity=0.5,
                      target_data_sparsity=0.75, sample_selection="topk", **update)
    calls: list[tuple[bool, torch.Tensor]] = []
    rows = torch.arange(N, dtype=torch.float64)

    def scorer(model, masks, kept, *, weights, samples) -> RoundScores:
        calls.append((weights, kept.clone()))
        scores = None
        if samples:
            first = sum(1 for w, _ in calls if w) == 1
            scores = rows.clone() if first else (rows % 2 == 0).double() * 10
        return RoundScores(weight_scores=magnitude_scores(model, masks) if weights else None,
                           sample_scores=scores)

    model = seeded_blob_mlp(None)
    outcome = run_rounds(seeded_blob_mlp, cpu_state(model), cpu_state(model), train, val,
                         _config(), jmds, _masks(), scorer, task="classification")
    return outcome.kept


def test_contribution_mean_keeps_the_best_mean_over_the_rounds() -> None:
    """Of rows 30..59, the mean (i + 10·[i even]) / 2 ranks the evens 40..58 (values
    40..68 before halving) and the odds 51..59 (51..59) above the rest; round 2's scores
    alone keep the 15 even rows 30..58."""
    kept = _selection_run(sample_score="contribution_mean")
    expected = sorted([*range(40, 60, 2), *range(51, 60, 2)])
    assert kept.nonzero().squeeze(1).tolist() == expected
    latest = _selection_run()
    assert latest.nonzero().squeeze(1).tolist() == list(range(30, 60, 2))


def test_without_rescoring_phase_c_uses_the_samples_scored_with_the_weights() -> None:
    train, val = make_blobs(n=N), make_blobs(n=30, seed=1)
    jmds = JMDSConfig(rounds=1, target_model_sparsity=0.5, target_data_sparsity=0.5,
                      sample_selection="topk", rescore_samples=False)
    calls = []

    def scorer(model, masks, kept, *, weights, samples) -> RoundScores:
        calls.append((weights, samples))
        return RoundScores(weight_scores=magnitude_scores(model, masks),
                           sample_scores=torch.arange(N, dtype=torch.float64))

    model = seeded_blob_mlp(None)
    outcome = run_rounds(seeded_blob_mlp, cpu_state(model), cpu_state(model), train, val,
                         _config(), jmds, _masks(), scorer, task="classification")
    assert calls == [(True, True)]
    assert outcome.kept.nonzero().squeeze(1).tolist() == list(range(30, 60))


def test_rescoring_passes_the_current_kept_rows_to_phase_c() -> None:
    train, val = make_blobs(n=N), make_blobs(n=30, seed=1)
    jmds = JMDSConfig(rounds=2, round_epochs=1, target_model_sparsity=0.5,
                      target_data_sparsity=0.75, sample_selection="topk")
    kept_seen: list[tuple[bool, torch.Tensor]] = []

    def scorer(model, masks, kept, *, weights, samples) -> RoundScores:
        assert isinstance(kept, torch.Tensor)
        kept_seen.append((weights, kept.clone()))
        return RoundScores(weight_scores=magnitude_scores(model, masks) if weights else None,
                           sample_scores=torch.arange(N, dtype=torch.float64)
                           if samples else None)

    model = seeded_blob_mlp(None)
    run_rounds(seeded_blob_mlp, cpu_state(model), cpu_state(model), train, val, _config(),
               jmds, _masks(), scorer, task="classification")
    assert [w for w, _ in kept_seen] == [True, False, True, False]
    assert torch.equal(kept_seen[1][1], kept_seen[0][1])  # round 1: all rows
    assert torch.equal(kept_seen[3][1], kept_seen[2][1])  # round 2: the 30 kept
    assert int(kept_seen[2][1].sum()) == 30


def test_channel_granularity_removes_whole_units() -> None:
    """One round to ρ = 0.5 of 16 units × 7 entries (6 weights and the bias): exactly 8
    units go, the 8 with the highest Δ_g (the unit index here)."""
    train, val = make_blobs(n=N), make_blobs(n=30, seed=1)
    model = seeded_blob_mlp(None)
    groups = channel_groups(model, ["0.weight"], torch.zeros(2, 6))
    params = dict(model.named_parameters())
    masks = {n: torch.ones_like(params[n], dtype=torch.bool)
             for n in channel_mask_names(groups, ["0.weight"])}
    jmds = JMDSConfig(rounds=1, target_model_sparsity=0.5, prune_data=False,
                      granularity="channel")

    def scorer(model, masks, kept, *, weights, samples) -> RoundScores:
        unit = torch.arange(len(groups), dtype=torch.float64)
        return RoundScores(weight_scores=spread_group_scores(groups, unit, masks))

    outcome = run_rounds(seeded_blob_mlp, cpu_state(model), cpu_state(model), train, val,
                         _config(), jmds, masks, scorer, task="classification",
                         groups=groups)
    alive = [True] * 8 + [False] * 8
    assert outcome.masks["0.weight"].all(1).tolist() == alive
    assert not bool(outcome.masks["0.weight"][8:].any())
    assert outcome.masks["0.bias"].tolist() == alive


def test_round_training_uses_the_run_seed() -> None:
    """Round 2's model is train_model run by hand with the run's seed (5, not the default)."""
    train, val = make_blobs(n=N), make_blobs(n=30, seed=1)
    jmds = JMDSConfig(rounds=2, round_epochs=1, target_model_sparsity=0.5, prune_data=False,
                      tie_prior=False)
    states = []

    def scorer(model, masks, kept, *, weights, samples) -> RoundScores:
        states.append((cpu_state(model), {k: v.clone() for k, v in masks.items()}))
        return RoundScores(weight_scores=magnitude_scores(model, masks))

    model = seeded_blob_mlp(None)
    start = cpu_state(model)
    run_rounds(seeded_blob_mlp, start, start, train, val, _config(seed=5), jmds, _masks(),
               scorer, task="classification")
    reference = seeded_blob_mlp(start)
    train_model(reference, train, _config().training, seed=5, masks=states[1][1], epochs=1)
    expected = cpu_state(reference)
    assert all(torch.equal(states[1][0][k], expected[k]) for k in expected)


def test_next_masks_channel_mode_needs_groups_and_layerwise_scope_is_passed_on() -> None:
    jmds = JMDSConfig(rounds=1, target_model_sparsity=0.5, granularity="channel")
    with pytest.raises(ValueError, match=r"^jmds\.granularity = 'channel' needs the model's "
                                         r"channel groups$"):
        next_masks({"w": torch.zeros(2, 2)}, {"w": torch.ones(2, 2, dtype=torch.bool)}, jmds, 1)
    # layer a is cheap everywhere: a global budget of 4 of 8 takes all of a, a layerwise
    # one 2 of each layer (the cheapest two)
    scores = {"a": torch.tensor([5.0, 6.0, 7.0, 8.0]), "b": torch.tensor([1.0, 2.0, 0.0, -1.0])}
    masks = {n: torch.ones(4, dtype=torch.bool) for n in scores}
    layerwise = JMDSConfig(rounds=1, target_model_sparsity=0.5, weight_scope="layerwise")
    new = next_masks(scores, masks, layerwise, 1)
    assert new["a"].tolist() == [True, True, False, False]
    assert new["b"].tolist() == [False, False, True, True]
    new = next_masks(scores, masks, JMDSConfig(rounds=1, target_model_sparsity=0.5), 1)
    assert not bool(new["a"].any()) and bool(new["b"].all())


def test_channel_rounds_follow_each_rounds_target() -> None:
    """Two geometric rounds to ρ = 0.75 of 16 units × 7 entries: round 1 reaches
    1 − 0.25^(1/2) = 0.5 (8 units, 56 entries), round 2 0.75 (12 units, 84 entries)."""
    train, val = make_blobs(n=N), make_blobs(n=30, seed=1)
    model = seeded_blob_mlp(None)
    groups = channel_groups(model, ["0.weight"], torch.zeros(2, 6))
    params = dict(model.named_parameters())
    masks = {n: torch.ones_like(params[n], dtype=torch.bool)
             for n in channel_mask_names(groups, ["0.weight"])}
    jmds = JMDSConfig(rounds=2, round_epochs=1, target_model_sparsity=0.75, prune_data=False,
                      granularity="channel")
    units_seen = []

    def scorer(model, masks, kept, *, weights, samples) -> RoundScores:
        units_seen.append(int(masks["0.bias"].sum()))
        unit = torch.arange(len(groups), dtype=torch.float64)
        return RoundScores(weight_scores=spread_group_scores(groups, unit, masks))

    outcome = run_rounds(seeded_blob_mlp, cpu_state(model), cpu_state(model), train, val,
                         _config(), jmds, masks, scorer, task="classification",
                         groups=groups)
    assert units_seen == [16, 8]
    assert outcome.masks["0.bias"].tolist() == [True] * 4 + [False] * 12
    # cubic: round 1 reaches 0.75·(1 − 0.5³) = 0.65625, ⌊73.5 + ½⌋ = 74 entries: 11 units
    units_seen.clear()
    cubic = jmds.model_copy(update={"schedule": "cubic"})
    outcome = run_rounds(seeded_blob_mlp, cpu_state(model), cpu_state(model), train, val,
                         _config(), cubic, masks, scorer, task="classification",
                         groups=groups)
    assert units_seen == [16, 5]
    assert outcome.masks["0.bias"].tolist() == [True] * 4 + [False] * 12
