"""The MC Fisher's label draw (``likelihood.sample_classes``): the categorical law of the
given probabilities, zero-probability classes never, seeded, any number of classes."""

from __future__ import annotations

import torch

from jmds_pipeline.evidence import likelihood
from jmds_pipeline.evidence.likelihood import sample_classes


def _cdf(probs: list[float]) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float32).cumsum(0)[None]


def test_draws_follow_the_probabilities():
    """200 000 draws from p = (0.5, 0, 0.3, 0.15, 0.05, 0): each class's frequency within
    5 standard errors of p_c (Pearson χ² with 3 degrees of freedom below 30, p < 1e-5 under
    the law), and the two classes of probability 0 never appear."""
    probs = torch.tensor([0.5, 0.0, 0.3, 0.15, 0.05, 0.0])
    n = 200_000
    cdf = probs.cumsum(0).expand(n, -1).contiguous()
    draws = sample_classes(cdf, torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=6).double()
    assert counts[1] == 0 and counts[5] == 0
    expected = probs.double() * n
    se = (n * probs.double() * (1 - probs.double())).sqrt()
    live = probs > 0
    assert bool(((counts - expected).abs()[live] <= 5 * se[live]).all())
    chi2 = float(((counts - expected)[live] ** 2 / expected[live]).sum())
    assert chi2 < 30.0


def test_a_uniform_at_the_top_still_draws_a_class_of_positive_probability(monkeypatch):
    """u·total can round up to the total: the draw is then the last class with mass, not a
    trailing class of probability 0 and not an index past the end."""
    cdf = _cdf([0.25, 0.75, 0.0, 0.0])
    monkeypatch.setattr(likelihood.torch, "rand",
                        lambda *shape, **kw: torch.ones(*shape, dtype=kw.get("dtype")))
    assert sample_classes(cdf, None).tolist() == [1]
    monkeypatch.setattr(likelihood.torch, "rand",
                        lambda *shape, **kw: torch.zeros(*shape, dtype=kw.get("dtype")))
    assert sample_classes(_cdf([0.0, 0.4, 0.6]), None).tolist() == [1]


def test_seeded_and_one_uniform_per_row():
    """Same seed, same draws; the generator advances by one uniform per row, whatever the
    number of classes (what ``skip_backward_draws`` replays for another rank's batch)."""
    probs = torch.rand(7, 50_000, generator=torch.Generator().manual_seed(1))
    cdf = (probs / probs.sum(1, keepdim=True)).cumsum(1)
    a = sample_classes(cdf, torch.Generator().manual_seed(3))
    b = sample_classes(cdf, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (7,) and int(a.max()) < 50_000
    gen = torch.Generator().manual_seed(3)
    sample_classes(cdf, gen)
    after = torch.rand(1, generator=gen)
    skip = torch.Generator().manual_seed(3)
    torch.rand(7, 1, generator=skip)
    assert torch.equal(after, torch.rand(1, generator=skip))


def test_unnormalised_cumulative_sums_draw_the_same_law():
    """The rows' totals need not be 1 (float32 softmax sums are not): the uniform is
    scaled by the row's total, so cdf × 3 draws what cdf draws, seed for seed."""
    probs = torch.tensor([0.1, 0.6, 0.0, 0.3])
    cdf = probs.cumsum(0).expand(5000, -1).contiguous()
    plain = sample_classes(cdf, torch.Generator().manual_seed(4))
    scaled = sample_classes(cdf * 3.0, torch.Generator().manual_seed(4))
    assert torch.equal(plain, scaled)
    counts = torch.bincount(scaled, minlength=4).double() / 5000
    assert counts[2] == 0 and bool(((counts - probs.double()).abs() < 0.03).all())
