import pytest
import torch
from torch import nn

from jmds_pipeline.config import JMDSConfig, RunConfig, TrainingConfig
from jmds_pipeline.sparsity.rounds import RoundScores, kept_weights, run_rounds
from jmds_pipeline.sparsity.schedules import round_targets
from jmds_pipeline.sparsity.weight_selection import magnitude_scores
from jmds_pipeline.training.loop import cpu_state, train_model
from tests.conftest import make_blobs, seeded_blob_mlp

_build = seeded_blob_mlp


def test_kept_weights_put_every_subset_on_the_full_data_scale():
    kept = torch.tensor([True, False, True, False, False, False])
    assert kept_weights(kept, rescale=True).tolist() == [3.0, 0, 3.0, 0, 0, 0]
    assert kept_weights(kept, rescale=False).tolist() == [1.0, 0, 1.0, 0, 0, 0]
    assert kept_weights(kept, rescale=True).sum() == kept.numel()


def test_rounds_hit_each_rounds_targets_and_only_shrink():
    train, val = make_blobs(n=90), make_blobs(n=30, seed=1)
    config = RunConfig(dataset="digits", model="mlp",
                       training=TrainingConfig(epochs=2, batch_size=16, progress=False))
    jmds = JMDSConfig(rounds=3, round_epochs=1, target_model_sparsity=0.7,
                      target_data_sparsity=0.4, keep="low")
    seen: list[tuple[float, int]] = []

    def scorer(model: nn.Module, masks, kept, *, weights: bool, samples: bool) -> RoundScores:
        active = sum(int(m.sum()) for m in masks.values())
        if weights:
            seen.append((active, int(kept.sum())))
        # Data score: the row index, so "keep low" must keep the first rows.
        return RoundScores(weight_scores=magnitude_scores(model, masks),
                           sample_scores=torch.arange(90, dtype=torch.float64))

    model = _build(None)
    masks = {"0.weight": torch.ones(16, 6, dtype=torch.bool),
             "2.weight": torch.ones(3, 16, dtype=torch.bool)}
    outcome = run_rounds(_build, cpu_state(model), cpu_state(model), train, val, config, jmds,
                         masks, scorer, task="classification")
    total = 16 * 6 + 3 * 16
    model_targets = round_targets(0.7, 3, "geometric")
    data_targets = round_targets(0.4, 3, "geometric")
    # Round r scores the model of round r-1's targets.
    assert seen[0] == (total, 90)
    for r in (1, 2):
        assert abs(seen[r][0] - round((1 - model_targets[r - 1]) * total)) <= 1
        assert abs(seen[r][1] - round((1 - data_targets[r - 1]) * 90)) <= 1
    final_active = sum(int(m.sum()) for m in outcome.masks.values())
    assert abs(final_active - round(0.3 * total)) <= 1
    assert int(outcome.kept.sum()) == 54
    assert outcome.kept[:54].all() and not outcome.kept[54:].any()  # kept the low scores
    assert [row["round"] for row in outcome.trace] == [1, 2, 3]


def test_phase_c_scores_samples_under_the_mask_phase_b_just_chose():
    """The paper's order: m_r is fixed first, then s_r is optimised under m_r. The sample
    scorer must see the round's new mask (its target count of active weights) and a model
    whose pruned weights are zero under it; with rescore_samples false it sees the old one."""
    train, val = make_blobs(n=60), make_blobs(n=30, seed=1)
    config = RunConfig(dataset="digits", model="mlp",
                       training=TrainingConfig(epochs=2, batch_size=16, progress=False))
    total = 16 * 6 + 3 * 16
    targets = round_targets(0.6, 2, "geometric")
    for rescore in (True, False):
        jmds = JMDSConfig(rounds=2, round_epochs=1, target_model_sparsity=0.6,
                          target_data_sparsity=0.3, rescore_samples=rescore)
        sample_calls: list[int] = []

        def scorer(model: nn.Module, masks, kept, *, weights: bool, samples: bool,
                   calls=sample_calls) -> RoundScores:
            if samples:
                calls.append(sum(int(m.sum()) for m in masks.values()))
            return RoundScores(weight_scores=magnitude_scores(model, masks) if weights else None,
                               sample_scores=torch.randn(60, dtype=torch.float64)
                               if samples else None)

        masks = {"0.weight": torch.ones(16, 6, dtype=torch.bool),
                 "2.weight": torch.ones(3, 16, dtype=torch.bool)}
        model = _build(None)
        run_rounds(_build, cpu_state(model), cpu_state(model), train, val, config, jmds,
                   masks, scorer, task="classification")
        after = [round((1 - t) * total) for t in targets]
        before = [total, after[0]]
        expected = after if rescore else before
        assert len(sample_calls) == 2
        for got, want in zip(sample_calls, expected, strict=True):
            assert abs(got - want) <= 1


@pytest.mark.parametrize("rewind", [True, False])
def test_each_round_trains_from_the_rewind_point_or_continues(rewind: bool):
    """Round 2's model is exactly `train_model` run by hand from the rewind state (rewind)
    or from the model round 1 scored (no rewind), under round 1's (m, s)."""
    train, val = make_blobs(n=60), make_blobs(n=30, seed=1)
    config = RunConfig(dataset="digits", model="mlp",
                       training=TrainingConfig(epochs=2, batch_size=16, progress=False))
    jmds = JMDSConfig(rounds=2, round_epochs=1, target_model_sparsity=0.5,
                      target_data_sparsity=0.3, rewind=rewind, keep="high", tie_prior=False)
    seen: list[tuple[dict, dict, torch.Tensor]] = []

    def scorer(model: nn.Module, masks, kept, *, weights: bool, samples: bool) -> RoundScores:
        if weights:  # once per round (phase C may call again for the samples alone)
            seen.append((cpu_state(model), {k: v.clone() for k, v in masks.items()},
                         kept.clone()))
        return RoundScores(weight_scores=magnitude_scores(model, masks) if weights else None,
                           sample_scores=torch.arange(60, dtype=torch.float64)
                           if samples else None)

    trained, rewound = _build(None), _build(None)
    with torch.no_grad():  # two distinct states: a copy cannot pass for the other
        for p in rewound.parameters():
            p.mul_(-0.5)
    masks = {"0.weight": torch.ones(16, 6, dtype=torch.bool)}
    run_rounds(_build, cpu_state(trained), cpu_state(rewound), train, val, config, jmds,
               masks, scorer, task="classification")
    assert len(seen) == 2
    first_state, round_masks, round_kept = seen[0][0], seen[1][1], seen[1][2]
    assert all(torch.equal(first_state[k], cpu_state(trained)[k]) for k in first_state)
    reference = _build(cpu_state(rewound) if rewind else first_state)
    train_model(reference, train, config.training, seed=config.seed, masks=round_masks,
                kept=round_kept, epochs=1)
    expected = cpu_state(reference)
    assert all(torch.equal(seen[1][0][k], expected[k]) for k in expected)
