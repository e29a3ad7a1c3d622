"""The comparison's Pareto figures: the front against hand-made cases, markers, legend."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jmds_pipeline.plots import (
    DENSE_MARKER,
    budget_index,
    method_colours,
    method_family,
    pareto_figure,
    pareto_front,
    row_kind,
)
from jmds_pipeline.reporting import comparison_markdown


def test_pareto_front_of_a_hand_made_set() -> None:
    #                 A    B    C    D    E     F    G
    costs = np.array([1.0, 0.5, 0.5, 0.2, 0.6, 0.2, np.nan])
    accuracy = np.array([0.9, 0.8, 0.7, 0.5, 0.75, 0.5, 0.99])
    # C: B is as cheap and better; E: B is cheaper and better; D and F tie (neither
    # dominates the other); G has no cost and is left out.
    assert pareto_front(costs, accuracy).tolist() == [True, True, False, True, False, True,
                                                      False]


def test_lower_is_better_flips_the_quality_only() -> None:
    costs = np.array([1.0, 0.6, 0.6, 0.3])
    perplexity = np.array([8.0, 8.8, 9.4, 20.0])
    assert pareto_front(costs, perplexity, higher_is_better=False).tolist() == [
        True, True, False, True]
    # Read as accuracy, the same numbers make the most expensive point the dominated one.
    assert pareto_front(costs, perplexity).tolist() == [False, False, False, True]


def test_front_points_are_undominated_and_the_rest_dominated_by_the_front() -> None:
    rng = np.random.default_rng(0)
    costs, quality = rng.random(60).round(1), rng.random(60).round(1)  # many ties
    front = pareto_front(costs, quality)

    def dominates(j: int, i: int) -> bool:
        return bool(costs[j] <= costs[i] and quality[j] >= quality[i]
                    and (costs[j] < costs[i] or quality[j] > quality[i]))

    for i in range(60):
        dominated = [j for j in range(60) if dominates(j, i)]
        assert front[i] == (not dominated)
        if not front[i]:
            assert any(front[j] for j in dominated)


def test_pareto_front_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="of one length"):
        pareto_front(np.ones(3), np.ones(2))


@pytest.mark.parametrize(("kind", "model", "data", "expected"), [
    ("model", 0.8, 0.0, 0), ("model", 0.9, 0.0, 1), ("data", 0.0, 0.7, 1),
    ("joint", 0.9, 0.7, 1), ("joint", 0.5, 0.5, None), ("none", 0.0, 0.0, None),
    ("model", 0.8, 0.5, None),  # a model-only method never drops data
])
def test_budget_index(kind: str, model: float, data: float, expected: int | None) -> None:
    assert budget_index(kind, model, data, [(0.8, 0.5), (0.9, 0.7)]) == expected


def test_row_kind_reads_the_measured_sparsities() -> None:
    assert row_kind(0.0, 0.0) == "none"
    assert row_kind(0.7996, 0.0) == "model"
    assert row_kind(0.0, 0.5) == "data"
    assert row_kind(0.9, 0.7) == "joint"


def test_families_take_new_jmds_variants_and_leave_the_rest_apart() -> None:
    assert method_family("jmds_ccs") == "JMDS"
    assert method_family("imp") == "model pruning"
    assert method_family("something_new") == "other"


def test_one_hue_per_family_and_distinct_shades_inside_it() -> None:
    colours = method_colours(["jmds", "imp", "jmds_diag", "random_pruning", "dense"])
    assert len(set(colours.values())) == 5
    red, blue = colours["jmds"], colours["imp"]
    assert red[0] > red[2] and blue[2] > blue[0]  # JMDS reds, model pruning blues


def _table(perplexity: bool) -> pd.DataFrame:
    rows = [  # method, ρ_m, ρ_s, cost, quality
        ("dense", 0.0, 0.0, 1.0, 0.9), ("imp", 0.8, 0.0, 0.25, 0.85),
        ("forgetting", 0.0, 0.5, 1.0, 0.8), ("jmds", 0.8, 0.5, 0.25, 0.8),
        ("jmds", 0.9, 0.7, 0.15, 0.6), ("phased", 0.9, 0.7, 0.15, 0.5),
    ]
    metric = "test_perplexity" if perplexity else "test_accuracy"
    frame = pd.DataFrame(rows, columns=["method", "target_model_sparsity",
                                        "target_data_sparsity", "cost", f"{metric}_mean"])
    frame["model_sparsity_mean"] = frame["target_model_sparsity"] - 0.0004  # ±1 weight
    frame["data_sparsity_mean"] = frame["target_data_sparsity"]
    if perplexity:
        frame[f"{metric}_mean"] = 1 / frame[f"{metric}_mean"]
    return frame.assign(**{f"{metric}_std": 0.01})


@pytest.mark.parametrize("perplexity", [False, True])
def test_pareto_figure_draws_the_front_and_a_legend_instead_of_labels(perplexity: bool):
    figure = pareto_figure(_table(perplexity), "cost", "cost", [(0.8, 0.5), (0.9, 0.7)])
    axis = figure.axes[0]
    (front,) = [line for line in axis.get_lines() if line.get_label() == "Pareto front"]
    # Front: jmds (0.15, 0.6), imp (0.25, 0.85), dense (1.0, 0.9); in cost order.
    assert front.get_xdata().tolist() == [0.15, 0.25, 1.0]
    expected = [0.6, 0.85, 0.9]
    assert front.get_ydata() == pytest.approx([1 / v for v in expected] if perplexity
                                              else expected)
    assert len(axis.texts) == 0  # no point labels
    legend_text = [t.get_text().strip() for legend in (axis.get_legend(), *axis.artists)
                   for t in legend.get_texts()]
    for label in ("dense", "imp", "forgetting", "jmds", "phased", "dense (no pruning)",
                  "budget 80% model / 50% data", "budget 90% model / 70% data"):
        assert label in legend_text
    markers = {collection.get_paths()[0].vertices.shape for collection in axis.collections
               if hasattr(collection, "get_sizes") and len(collection.get_sizes())}
    assert len(markers) == 3  # star (dense), circle (budget 1), square (budget 2)
    assert axis.get_yscale() == ("log" if perplexity else "linear")
    assert ("perplexity" in axis.get_ylabel()) == perplexity
    assert DENSE_MARKER == "*"


def test_comparison_markdown_links_the_figures() -> None:
    table = pd.DataFrame(columns=["method"])
    text = comparison_markdown("digits", "mlp", table, [],
                               figures={"pareto_flops": "pareto_flops.png"})
    assert "![pareto_flops](pareto_flops.png)" in text
    assert "Test accuracy against cost" in text
