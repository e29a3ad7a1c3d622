"""Refactor guard: the engine reproduces the numbers of the pre-refactor engine (commit
4317ee5) to 1e-6 relative on fixed tiny float64 models, for every structure, Fisher,
mask, sample-weight, subsample, prior-mode and weight-score path whose maths is unchanged.

The reference file stores the weights, data, masks and results; regenerate it only from an
engine whose maths is known to be right (``python -m tests.evidence.reference_cases``).
The three MC-Fisher cases (mlp_kfac_mc, cnn1d_kfac_mc, cnn2d_kfac_masked) were recomputed
when the MC label draw moved from ``torch.multinomial`` to inverse-CDF sampling (the same
law, other random numbers; ``test_sampler.py`` checks the law); the others are unchanged.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.evidence.reference_cases import CASES, FIELDS, REFERENCE, run_case

RTOL = 1e-6


@pytest.fixture(scope="module")
def reference():
    return torch.load(REFERENCE, weights_only=False)


def _close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    assert got.shape == want.shape, what
    assert torch.equal(torch.isnan(got), torch.isnan(want)), what
    assert torch.equal(torch.isinf(got), torch.isinf(want)), what
    ok = torch.isfinite(want)
    g, w = got[ok].double(), want[ok].double()
    if not w.numel():
        return
    # relative to each entry, the denominator floored at 1e-3 of the largest |entry| (entries
    # near 0, such as the Occam part of a weight whose curvature is tiny, are sums of
    # cancelling terms and carry rounding relative to the tensor's scale, not their own)
    floor = torch.tensor(float(w.abs().max()) * 1e-3 + 1e-300, dtype=torch.float64)
    err = float(((g - w).abs() / torch.maximum(w.abs(), floor)).max())
    assert err <= RTOL, f"{what}: max relative error {err:.2e}"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_engine_matches_reference(reference, case):
    want = reference["results"][case[0]]
    res = run_case(reference["models"], case)
    for f in FIELDS:
        assert getattr(res, f) == pytest.approx(want[f], rel=RTOL, abs=1e-9), f
    if isinstance(want["prior_precision"], dict):
        assert res.prior_precision.keys() == want["prior_precision"].keys()
        for k, v in want["prior_precision"].items():
            assert res.prior_precision[k] == pytest.approx(v, rel=RTOL)
    else:
        assert res.prior_precision == pytest.approx(want["prior_precision"], rel=RTOL)
    for f in ("sample_loss", "sample_leverage", "sample_contribution"):
        _close(getattr(res, f), want[f], f)
    assert res.weight_scores.keys() == want["weight_scores"].keys()
    for k, v in want["weight_scores"].items():
        _close(res.weight_scores[k], v, f"weight_scores[{k}]")
        for part, t in want["weight_score_parts"][k].items():
            _close(res.weight_score_parts[k][part], t, f"{part}[{k}]")
    assert math.isfinite(res.log_evidence)
