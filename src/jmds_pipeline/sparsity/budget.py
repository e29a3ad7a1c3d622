"""Turning a sparsity fraction into an exact count, and validating fractions.

Every selection rule in this package hits an integer budget, not a fraction: with ``n``
items and sparsity ρ the number removed is

    k(n, ρ) = ⌊ρ·n + ½⌋        (round half up; never Python's round-half-to-even)

so the achieved sparsity k/n is within 1/(2n) of ρ, and the same (n, ρ) always gives the
same k on every platform. Since ρ < 1, at least one item always stays (k ≤ n − 1 for
n ≥ 1), even where rounding alone would remove all of a small set. A tiny tolerance
absorbs binary floating point: 0.285·100 is 28.499999999999996 in IEEE doubles and must
still round up to 29.
"""

from __future__ import annotations

import math

_EPS = 1e-9


def check_fraction(key: str, value: float) -> float:
    """Return ``value`` as a float if it lies in [0, 1), else raise ``ValueError`` naming ``key``.

    A sparsity of 1 would remove everything (nothing left to train or evaluate), so the
    interval is half-open; NaN and non-numbers are rejected too.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} = {value!r} must be a number in [0, 1)")
    value = float(value)
    if not (0.0 <= value < 1.0):  # also rejects NaN
        raise ValueError(f"{key} = {value!r} is outside [0, 1); accepted: 0 <= {key} < 1")
    return value


def count_to_remove(total: int, sparsity: float) -> int:
    """k(n, ρ) = min(⌊ρ·n + ½⌋, n − 1): how many of ``total`` items sparsity ρ < 1 removes."""
    if total < 0:
        raise ValueError(f"total = {total} must be >= 0")
    if total == 0:
        return 0
    return min(total - 1, max(0, math.floor(sparsity * total + 0.5 + _EPS)))


def count_to_keep(total: int, sparsity: float) -> int:
    """n − k(n, ρ): how many of ``total`` items stay at sparsity ``sparsity``."""
    return total - count_to_remove(total, sparsity)
