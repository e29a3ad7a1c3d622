"""What "the same as one process" means in these tests, one tolerance per kind of result."""

from __future__ import annotations

import math
from typing import Any

import torch

RTOL_EVIDENCE = 1e-6  # float64 sums added in another order
RTOL_WEIGHTS = 1e-5  # float32 gradients summed over ranks, then many optimiser steps


def relative(got: Any, want: Any) -> float:
    """max |got − want| / max |want| over the finite entries; NaN when the shapes or the
    non-finite entries (NaN, ±inf: pruned weights score +inf) differ."""
    g = torch.as_tensor(got, dtype=torch.float64)
    w = torch.as_tensor(want, dtype=torch.float64)
    if g.shape != w.shape or not torch.equal(torch.isnan(g), torch.isnan(w)):
        return math.nan
    if not torch.equal(g[torch.isinf(w)], w[torch.isinf(w)]):
        return math.nan
    ok = torch.isfinite(w)
    if not torch.equal(ok, torch.isfinite(g)):
        return math.nan
    if not bool(ok.any()):
        return 0.0
    scale = float(w[ok].abs().max())
    return float((g[ok] - w[ok]).abs().max()) / max(scale, 1e-300)


def assert_close(got: Any, want: Any, rtol: float, what: str) -> float:
    err = relative(got, want)
    assert err <= rtol, f"{what}: relative difference {err:.3g} > {rtol:g}"
    return err


def alpha_values(alpha: float | dict[str, float]) -> list[float]:
    return [alpha] if isinstance(alpha, float) else [alpha[k] for k in sorted(alpha)]


def assert_same_evidence(got: dict, want: dict, what: str) -> dict[str, float]:
    """Evidence, α, factors, per-sample terms and weight scores agree; decisions equal."""
    errors = {}
    for key in ("log_evidence", "log_likelihood", "log_det_ratio"):
        errors[key] = assert_close(got[key], want[key], RTOL_EVIDENCE, f"{what} {key}")
    errors["alpha"] = assert_close(
        alpha_values(got["prior_precision"]),
        alpha_values(want["prior_precision"]),
        RTOL_EVIDENCE,
        f"{what} alpha",
    )
    for key in ("sample_contribution", "sample_loss", "sample_leverage"):
        errors[key] = assert_close(got[key], want[key], RTOL_EVIDENCE, f"{what} {key}")
    assert got["weight_scores"].keys() == want["weight_scores"].keys()
    for name, scores in want["weight_scores"].items():
        assert_close(got["weight_scores"][name], scores, RTOL_EVIDENCE, f"{what} Δ[{name}]")
    factor_errors = [0.0]
    assert got.get("factors", {}).keys() == want.get("factors", {}).keys()
    for name, (a, g) in want.get("factors", {}).items():
        factor_errors.append(
            assert_close(got["factors"][name][0], a, RTOL_EVIDENCE, f"{what} A[{name}]")
        )
        factor_errors.append(
            assert_close(got["factors"][name][1], g, RTOL_EVIDENCE, f"{what} G[{name}]")
        )
    errors["factors"] = max(factor_errors)
    for key, value in want["stationarity"].items():
        assert_close(got["stationarity"][key], value, RTOL_EVIDENCE, f"{what} {key}")
    assert torch.equal(got["kept_ids"], want["kept_ids"]), f"{what}: kept ids differ"
    for name, mask in want["masks"].items():
        assert torch.equal(got["masks"][name], mask), f"{what}: mask {name} differs"
    return errors


def assert_same_training(got: dict, want: dict, what: str) -> float:
    """Weights within RTOL_WEIGHTS; the same global batches, in the same order."""
    err = max(
        assert_close(got["state"][k], v, RTOL_WEIGHTS, f"{what} {k}")
        for k, v in want["state"].items()
    )
    # column 0: the ids of every global batch in order (exact); then the logits
    assert torch.equal(got["drawn"][:, 0], want["drawn"][:, 0]), f"{what}: batches differ"
    assert_close(got["drawn"][:, 1:], want["drawn"][:, 1:], RTOL_WEIGHTS, f"{what} logits")
    assert got["samples_seen"] == want["samples_seen"]
    for key in ("train_loss", "train_accuracy"):
        assert_close(
            [h[key] for h in got["history"]],
            [h[key] for h in want["history"]],
            RTOL_WEIGHTS,
            f"{what} {key}",
        )
    return err
