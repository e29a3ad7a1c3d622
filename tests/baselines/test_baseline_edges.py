"""Edge cases of the baselines' scores that mutation testing showed no test pinned down:
error messages naming the bad value, the averaging over models, sequences with ignored
tokens, the forgetting tracker's first presentation, and defaults."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jmds_pipeline.baselines.el2n import el2n_scores, grand_scores
from jmds_pipeline.baselines.forgetting import ForgettingTracker
from jmds_pipeline.baselines.imp import imp_prune
from jmds_pipeline.baselines.random_baselines import random_sample_scores, random_weight_scores
from jmds_pipeline.training.losses import IGNORE_INDEX


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(4, 3)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(10, 4, generator=generator), torch.arange(10) % 3


def _grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """‖∇_θ ℓ_i‖ one sample at a time with autograd (the reference for GraNd)."""
    norms = []
    for i in range(x.shape[0]):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        norms.append(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters())))
    return torch.stack(norms)


def test_grand_averages_the_per_model_norms_over_batches_and_models() -> None:
    x, y = _data()
    models = [_model(1), _model(2)]
    expected = (_grad_norm(models[0], x, y) + _grad_norm(models[1], x, y)) / 2
    for batch_size in (1, 3, 32):  # 1 is allowed; 3 leaves a ragged last batch
        got = grand_scores(models, x, y, batch_size=batch_size)
        assert torch.allclose(got, expected, rtol=1e-5)
    assert torch.allclose(grand_scores(models, x, y), expected, rtol=1e-5)  # default batch


def test_grand_and_el2n_reject_bad_inputs_naming_them() -> None:
    x, y = _data()
    with pytest.raises(ValueError, match=r"^models is empty; pass at least one model"):
        grand_scores([], x, y)
    with pytest.raises(ValueError, match=r"^x has 10 rows but y has 9"):
        el2n_scores([_model(1)], x, y[:9])
    with pytest.raises(ValueError, match=r"^y must be \(N,\) labels or \(N, T\) tokens, got "
                                         r"\(10, 1, 1\)"):
        el2n_scores([_model(1)], x, y.reshape(10, 1, 1))
    with pytest.raises(ValueError, match=r"^batch_size = True must be an integer >= 1"):
        grand_scores([_model(1)], x, y, batch_size=True)
    with pytest.raises(ValueError, match=r"^masks name parameters the model does not train: "
                                         r"\['nope'\]"):
        grand_scores([_model(1)], x, y, masks={"nope": torch.ones(2, dtype=torch.bool)})


class _TokenModel(nn.Module):
    """Logits (N, T, V) from a per-position table: a sequence model with no context."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.table = nn.Parameter(torch.randn(5, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x]


def test_grand_of_a_sequence_uses_the_mean_over_its_counted_tokens() -> None:
    x = torch.tensor([[0, 1, 2], [3, 4, 0]])
    y = torch.tensor([[1, 2, IGNORE_INDEX], [0, 3, 1]])
    model = _TokenModel()
    expected = []
    for i in range(2):
        model.zero_grad()
        counted = y[i] != IGNORE_INDEX
        loss = nn.functional.cross_entropy(model(x[i])[counted], y[i][counted])
        loss.backward()
        expected.append(float(model.table.grad.double().norm()))
    assert grand_scores([model], x, y).tolist() == pytest.approx(expected, rel=1e-5)


def test_forgetting_first_presentation_is_not_a_forget_and_errors_name_values() -> None:
    tracker = ForgettingTracker(torch.tensor([7, 3, 5]))
    tracker.update_rows(torch.tensor([0, 1, 2]), torch.tensor([False, True, True]))
    tracker.update_rows(torch.tensor([0, 1, 2]), torch.tensor([True, False, True]))
    assert tracker.forgets.tolist() == [0, 1, 0] and tracker.forgets.dtype == torch.int64
    assert tracker.presentations.dtype == torch.int64
    assert tracker.scores().tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match=r"^ids \[9, 11\] are not in the tracked split"):
        tracker.update(torch.tensor([3, 9, 11]), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^rows must lie in \[0, 3\)"):
        tracker.update_rows(torch.tensor([3]), torch.ones(1, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^rows must lie in \[0, 3\)"):
        tracker.update_rows(torch.tensor([-1]), torch.ones(1, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^2 rows but 1 correctness flags"):
        tracker.update_rows(torch.tensor([0, 1]), torch.ones(1, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^a row appears twice in one update"):
        tracker.update_rows(torch.tensor([1, 1]), torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^ids are not unique"):
        ForgettingTracker(torch.tensor([1, 2, 1]))
    with pytest.raises(ValueError, match=r"^ids must be 1-D \(N,\), got shape \(2, 1\)"):
        ForgettingTracker(torch.tensor([[1], [2]]))
    # Adjacent duplicates only at the end of the sorted ids are caught too.
    with pytest.raises(ValueError, match="not unique"):
        ForgettingTracker(torch.tensor([1, 2, 3, 3]))


def test_never_presented_samples_score_one_forget_when_nothing_was_presented() -> None:
    tracker = ForgettingTracker(torch.tensor([1, 2]))
    assert tracker.scores().tolist() == [1, 1]  # E = max(presentations, 1) = 1


def test_random_baselines_defaults_and_checks() -> None:
    assert torch.equal(random_sample_scores(6), random_sample_scores(
        6, torch.Generator().manual_seed(0)))
    assert random_sample_scores(0).numel() == 0
    with pytest.raises(ValueError, match=r"^num_samples = -1 must be an integer >= 0"):
        random_sample_scores(-1)
    with pytest.raises(ValueError, match=r"^num_samples = 2\.0 must be an integer >= 0"):
        random_sample_scores(2.0)  # type: ignore[arg-type]
    masks = {"w": torch.ones(3, 4, dtype=torch.bool)}
    seeded = random_weight_scores(masks, torch.Generator().manual_seed(5))
    assert torch.equal(seeded["w"], random_weight_scores(
        masks, torch.Generator().manual_seed(5))["w"])
    assert not torch.equal(seeded["w"], random_weight_scores(masks)["w"])


def test_imp_prune_passes_its_scope_through() -> None:
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 2, bias=False))
    with torch.no_grad():  # layer 0 holds all the large weights
        model[0].weight.copy_(torch.full((4, 4), 5.0) + torch.arange(16.0).reshape(4, 4))
        model[1].weight.copy_(torch.arange(8.0).reshape(2, 4) / 100)
    masks = {"0.weight": torch.ones(4, 4, dtype=torch.bool),
             "1.weight": torch.ones(2, 4, dtype=torch.bool)}
    layerwise = imp_prune(model, masks, 0.5, scope="layerwise")
    assert [int((~layerwise[n]).sum()) for n in masks] == [8, 4]
    global_ = imp_prune(model, masks, 0.5)
    assert [int((~global_[n]).sum()) for n in masks] == [4, 8]
