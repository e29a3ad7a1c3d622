"""Figures a person reads after a run (matplotlib, no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure


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
