"""Figures a person reads after a run (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter


def round_curves(trace: pd.DataFrame, final_accuracy: float | None = None) -> Figure:
    """Log evidence and validation accuracy of the model scored in each round."""
    figure, (evidence_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    evidence_axis.plot(trace["round"], trace["log_evidence"], marker="o")
    evidence_axis.set(xlabel="round", ylabel="log evidence (Laplace)",
                      title="evidence of the model scored each round")
    accuracy_axis.plot(trace["round"], trace["val_accuracy"], marker="o", label="round model")
    if final_accuracy is not None:
        accuracy_axis.axhline(final_accuracy, color="tab:red", linestyle="--",
                              label="final retrain (test)")
    accuracy_axis.set(xlabel="round", ylabel="accuracy", title="accuracy per round")
    accuracy_axis.legend()
    for axis in (evidence_axis, accuracy_axis):
        axis.set_xticks(trace["round"])
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def layer_density(summary: pd.DataFrame) -> Figure:
    """Fraction of weights kept per prunable layer."""
    figure, axis = plt.subplots(figsize=(max(5, 0.45 * len(summary) + 2), 3.8))
    axis.bar(range(len(summary)), summary["density"], color="tab:blue")
    axis.set_xticks(range(len(summary)), summary["layer"], rotation=60, ha="right",
                    fontsize=7)
    axis.set(ylabel="density (kept / total)", ylim=(0, 1), title="per-layer density")
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


# ---------------------------------------------------------------------------------------
# Quality against cost across methods (the comparison): Pareto figures.

# Methods grouped into families; a family is one hue, its members shades of it.
METHOD_FAMILIES: dict[str, tuple[str, ...]] = {
    "dense": ("dense",),
    "model pruning": ("imp", "random_pruning"),
    "data pruning": ("forgetting", "el2n", "grand", "random_data"),
    "phased (IMP → forgetting)": ("phased",),
    "JMDS": ("jmds", "jmds_diag", "jmds_model_only", "jmds_data_only"),
}
FAMILY_COLOURMAPS = {"dense": "Greys", "model pruning": "Blues", "data pruning": "Greens",
                     "phased (IMP → forgetting)": "Purples", "JMDS": "Reds",
                     "other": "Oranges"}
BUDGET_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
DENSE_MARKER = "*"


def pareto_front(costs: np.ndarray, qualities: np.ndarray, *,
                 higher_is_better: bool = True) -> np.ndarray:
    """Boolean mask of the points no other point dominates.

    Lower cost is better; quality is better when higher (accuracy) or lower (perplexity).
    Point j dominates i when it is at least as good in both and strictly better in one.
    NaN points are never on the front and dominate nothing.
    """
    cost = np.asarray(costs, dtype=float)
    quality = np.asarray(qualities, dtype=float)
    if cost.shape != quality.shape or cost.ndim != 1:
        raise ValueError(f"costs {cost.shape} and qualities {quality.shape} must be 1-D "
                         "and of one length")
    if not higher_is_better:
        quality = -quality
    valid = ~(np.isnan(cost) | np.isnan(quality))
    on_front = valid.copy()
    for i in np.flatnonzero(valid):
        others = valid & (cost <= cost[i]) & (quality >= quality[i])
        strictly = (cost < cost[i]) | (quality > quality[i])
        if np.any(others & strictly):
            on_front[i] = False
    return on_front


def method_family(method: str) -> str:
    """The family of ``method``; unlisted ``jmds_*`` variants are JMDS."""
    listed = next((family for family, members in METHOD_FAMILIES.items()
                   if method in members), None)
    if listed is not None:
        return listed
    return "JMDS" if method.startswith("jmds") else "other"


def row_kind(model_sparsity: float, data_sparsity: float) -> str:
    """Which sparsities a result row uses, read from the row itself: none (the dense
    model), model, data or joint. Tolerant of the few weights / samples a target misses."""
    model, data = model_sparsity > 1e-3, data_sparsity > 1e-3
    return {(False, False): "none", (True, False): "model", (False, True): "data",
            (True, True): "joint"}[(model, data)]


def method_colours(methods: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """One hue per family, evenly spaced shades of it for the family's methods."""
    colours: dict[str, tuple[float, ...]] = {}
    by_family: dict[str, list[str]] = {}
    for method in dict.fromkeys(methods):
        by_family.setdefault(method_family(method), []).append(method)
    for family, members in by_family.items():
        cmap = matplotlib.colormaps[FAMILY_COLOURMAPS[family]]
        shades = np.linspace(0.95, 0.4, len(members)) if len(members) > 1 else [0.75]
        if family == "dense":
            shades = [0.9]  # near black
        for member, shade in zip(members, shades, strict=True):
            colours[member] = cmap(float(shade))
    return colours


def budget_index(kind: str, model_sparsity: float, data_sparsity: float,
                 budgets: Sequence[tuple[float, float]]) -> int | None:
    """Which requested budget a row's effective (model, data) sparsity belongs to.

    Model-only methods run at (ρ_m, 0) and data-only ones at (0, ρ_s) for a budget
    (ρ_m, ρ_s) (comparison.methods.effective_budget); the first budget that fits wins.
    None for the dense model and for rows that fit no budget.
    """
    def close(a: float, b: float) -> bool:
        return abs(a - b) < 1e-9

    for index, (model, data) in enumerate(budgets):
        fits = {
            "model": close(model_sparsity, model) and close(data_sparsity, 0.0),
            "data": close(data_sparsity, data) and close(model_sparsity, 0.0),
            "joint": close(model_sparsity, model) and close(data_sparsity, data),
        }.get(kind, False)
        if fits:
            return index
    return None


def pareto_figure(table: pd.DataFrame, cost: str, cost_label: str,
                  budgets: Sequence[tuple[float, float]] | None = None,
                  title: str | None = None) -> Figure:
    """Test quality (mean ± std over seeds) against a cost, one point per method × budget.

    ``table`` is comparison.stats.summary_table's output. The quality is perplexity (lower
    is better, log axis) when the table has it, else accuracy. Colour: the method (hue:
    its family); marker: the budget; the Pareto front over all points is drawn as a
    staircase and its points are ringed. ``budgets`` defaults to the joint methods' ones.
    """
    perplexity = "test_perplexity_mean" in table.columns
    metric = "test_perplexity" if perplexity else "test_accuracy"
    # What a row uses is read from its measured sparsities (means over seeds), so any
    # method, including ones added later, gets its marker without a registry.
    kinds = [row_kind(m, d) for m, d in zip(table["model_sparsity_mean"],
                                            table["data_sparsity_mean"], strict=True)]
    if budgets is None:
        joint = table[[kind == "joint" for kind in kinds]]
        budgets = list(dict.fromkeys(
            zip(joint["target_model_sparsity"], joint["target_data_sparsity"], strict=True)))
    colours = method_colours(list(table["method"]))
    x = table[cost].to_numpy(dtype=float)
    y = table[f"{metric}_mean"].to_numpy(dtype=float)
    error = table[f"{metric}_std"].fillna(0.0).to_numpy(dtype=float)
    front = pareto_front(x, y, higher_is_better=not perplexity)

    figure, axis = plt.subplots(figsize=(9.5, 5.2))
    used_budgets: set[int | None] = set()
    for i, row in enumerate(table.itertuples(index=False)):
        kind = kinds[i]
        index = budget_index(kind, row.target_model_sparsity, row.target_data_sparsity,
                             budgets)
        if kind != "none":
            used_budgets.add(index)
        marker = (DENSE_MARKER if kind == "none" else
                  BUDGET_MARKERS[index % len(BUDGET_MARKERS)] if index is not None else "x")
        axis.errorbar(x[i], y[i], yerr=error[i], fmt="none", ecolor=colours[row.method],
                      elinewidth=1, alpha=0.6, capsize=2, zorder=2)
        axis.scatter(x[i], y[i], marker=marker, s=110 if marker == DENSE_MARKER else 60,
                     color=colours[row.method], edgecolors="black" if front[i] else "none",
                     linewidths=1.4, zorder=3)
    order = np.argsort(x[front])
    axis.step(x[front][order], y[front][order], where="post", color="0.35", linestyle="--",
              linewidth=1, zorder=1, label="Pareto front")

    method_handles = []  # grouped by family: a family name, then its methods indented
    for family in [*METHOD_FAMILIES, "other"]:
        members = [m for m in colours if method_family(m) == family]
        if not members:
            continue
        if members != [family]:
            method_handles.append(Line2D([], [], linestyle="none", label=family))
        method_handles += [
            Line2D([], [], linestyle="none", marker="o", markersize=8, color=colours[m],
                   label=m if members == [family] else f"   {m}")
            for m in members
        ]
    budget_handles = []
    if "none" in kinds:
        budget_handles.append(Line2D([], [], linestyle="none", marker=DENSE_MARKER,
                                     markersize=10, color="0.3", label="dense (no pruning)"))
    for index, (model, data) in enumerate(budgets):
        if index in used_budgets:
            budget_handles.append(Line2D(
                [], [], linestyle="none", marker=BUDGET_MARKERS[index % len(BUDGET_MARKERS)],
                markersize=8, color="0.3", label=f"budget {model:.0%} model / {data:.0%} data"))
    if None in used_budgets:
        budget_handles.append(Line2D([], [], linestyle="none", marker="x", markersize=8,
                                     color="0.3", label="another budget"))
    budget_handles.append(Line2D([], [], color="0.35", linestyle="--",
                                 label="Pareto front (ringed)"))
    methods_legend = axis.legend(handles=method_handles, title="method", fontsize=8,
                                 title_fontsize=9, loc="upper left",
                                 bbox_to_anchor=(1.01, 1.0), frameon=False)
    axis.add_artist(methods_legend)
    axis.legend(handles=budget_handles, title="marker", fontsize=8, title_fontsize=9,
                loc="lower left", bbox_to_anchor=(1.01, 0.0), frameon=False)
    better = "lower is better" if perplexity else "higher is better"
    axis.set(xlabel=f"{cost_label} (lower is better)",
             ylabel=f"test {'perplexity' if perplexity else 'accuracy'} "
                    f"(mean ± std over seeds; {better})")
    if perplexity:  # ratios matter: a log axis, with plain numbers on it
        axis.set_yscale("log")
        axis.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        axis.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    if title:
        axis.set_title(title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure
