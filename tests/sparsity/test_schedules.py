from __future__ import annotations

import itertools
import math

import pytest

from jmds_pipeline.sparsity.budget import check_fraction, count_to_keep, count_to_remove
from jmds_pipeline.sparsity.schedules import round_targets


@pytest.mark.parametrize("schedule", ["geometric", "cubic"])
@pytest.mark.parametrize("final", [0.0, 0.5, 0.8, 0.9, 0.99])
@pytest.mark.parametrize("rounds", [1, 2, 3, 7])
def test_endpoints_exact_and_monotone(schedule: str, final: float, rounds: int) -> None:
    targets = round_targets(final, rounds, schedule)
    assert len(targets) == rounds
    assert targets[-1] == final
    assert all(0.0 <= t <= final for t in targets)
    assert all(a <= b for a, b in itertools.pairwise(targets))


def test_geometric_is_equal_ratio() -> None:
    targets = round_targets(0.875, 3, "geometric")  # density 1/8 in three halvings
    assert targets == pytest.approx([0.5, 0.75, 0.875])
    densities = [1.0] + [1 - t for t in targets]
    ratios = [b / a for a, b in itertools.pairwise(densities)]
    assert ratios == pytest.approx([0.5, 0.5, 0.5])


def test_cubic_matches_zhu_gupta() -> None:
    final, rounds = 0.9, 4
    expected = [final * (1 - (1 - r / rounds) ** 3) for r in range(1, rounds + 1)]
    assert round_targets(final, rounds, "cubic") == pytest.approx(expected)
    assert round_targets(final, rounds, "cubic")[0] == pytest.approx(0.9 * (1 - 0.75**3))


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, math.nan])
def test_bad_final_sparsity_names_key(bad: float) -> None:
    with pytest.raises(ValueError, match="final_sparsity"):
        round_targets(bad, 3, "geometric")


@pytest.mark.parametrize("bad", [0, -1, 2.0])
def test_bad_rounds_names_key(bad: object) -> None:
    with pytest.raises(ValueError, match="rounds"):
        round_targets(0.5, bad, "geometric")  # type: ignore[arg-type]


def test_unknown_schedule_lists_accepted() -> None:
    with pytest.raises(ValueError, match=r"'linear'.*accepted.*cubic.*geometric"):
        round_targets(0.5, 3, "linear")


def test_counts_round_half_up_and_keep_one() -> None:
    assert count_to_remove(10, 0.25) == 3  # 2.5 rounds up, not to even
    assert count_to_remove(100, 0.285) == 29  # 28.499999999999996 in floating point
    assert count_to_remove(100, 0.8) == 80
    assert count_to_remove(3, 0.9) == 2  # 2.7 → 3 would remove everything: one stays
    assert count_to_remove(0, 0.5) == 0
    assert count_to_keep(7, 0.5) == 3


def test_check_fraction_rejects_non_numbers() -> None:
    assert check_fraction("rho", 0) == 0.0
    with pytest.raises(ValueError, match="rho"):
        check_fraction("rho", "0.5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rho"):
        check_fraction("rho", True)
