"""What a person reads at the end of a run: a table in the terminal and Markdown."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence

import pandas as pd
from rich.console import Console
from rich.table import Table

from jmds_pipeline import distributed

SUMMARY_COLUMNS: dict[str, str] = {
    "test_accuracy": "test acc",
    "test_perplexity": "test ppl",
    "model_sparsity": "model sparsity",
    "data_sparsity": "data sparsity",
    "time_vs_dense": "train time ×dense",
    "inference_flops_vs_dense": "inference FLOPs ×dense",
    "training_flops": "training FLOPs",
    "log_evidence": "log evidence",
}


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3e}" if abs(value) >= 1e5 else f"{value:.4f}"
    return str(value)


def summary_rows(runs: Mapping[str, Mapping[str, float]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (one per run) over the summary columns that any run has."""
    keys = [k for k in SUMMARY_COLUMNS if any(k in metrics for metrics in runs.values())]
    header = ["run", *(SUMMARY_COLUMNS[k] for k in keys)]
    rows = [
        [name, *(_format(metrics[k]) if k in metrics else "–" for k in keys)]
        for name, metrics in runs.items()
    ]
    return header, rows


def _print(table: Table) -> None:
    if not distributed.is_rank_zero():  # under torchrun: one table, not one per rank
        return
    # Logs and CI are not terminals: give the table room instead of eliding its columns.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(table)


def print_summary(title: str, runs: Mapping[str, Mapping[str, float]]) -> None:
    header, rows = summary_rows(runs)
    table = Table(title=title)
    for column in header:
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in rows:
        table.add_row(*row)
    _print(table)


ROUND_COLUMNS = {"round": "round", "log_evidence": "log Z", "objective": "objective J",
                 "stationarity": "‖∇log joint‖ rel.", "prior_precision": "α",
                 "model_sparsity": "model sp.", "data_sparsity": "data sp.",
                 "val_accuracy": "val acc"}
EVIDENCE_NOTE = (
    "log Z is the Laplace evidence of the kept samples (weighted N/K, so every subset is on "
    "the full data's scale) at the round's scored model; objective J = log Z − λ1‖m‖₀ − "
    "λ2‖s‖₀ (= log Z in target mode). Round r's model is trained under (m, s) of round r−1 "
    "and scored there: pruning weights costs fit and gains Occam; dropping samples with "
    "low contribution raises log Z (every likelihood factor is ≤ 1), which is why, between "
    "data subsets, a higher log Z is no sign of better generalisation. The stationarity "
    "column is ‖∇ log joint‖ relative to its likelihood and prior parts at the scored θ: "
    "0 at a mode (where the Laplace expansion is meant to be taken), about 1 far from it."
)


def print_rounds(trace: pd.DataFrame) -> None:
    """The rounds, as the run ends: what JMDS maximised and where it was evaluated."""
    table = Table(title="JMDS rounds (each row: the model scored in that round)")
    columns = [c for c in ROUND_COLUMNS if c in trace.columns]
    for column in columns:
        table.add_column(ROUND_COLUMNS[column], justify="right")
    for _, row in trace.iterrows():
        table.add_row(*(_format(row[c]) if c != "round" else str(int(row[c]))
                        for c in columns))
    _print(table)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def jmds_report(
    title: str,
    runs: Mapping[str, Mapping[str, float]],
    trace: pd.DataFrame,
    config: Mapping[str, object],
) -> str:
    """The Markdown report of one JMDS run: summary, per-round trace, configuration."""
    header, rows = summary_rows(runs)
    trace_rows = [[_format(v) for v in row] for row in trace.itertuples(index=False)]
    jmds = config.get("jmds", {})
    return "\n".join(
        [
            f"# {title}",
            "",
            "## Summary",
            "",
            markdown_table(header, rows),
            "Train time ×dense is the final retrain's; the whole pipeline's cost (the "
            "pretraining it needs, rounds, evidence, retrain) is `total_vs_dense` in the "
            "metrics JSON, and in training samples drawn (no scoring passes, immune to "
            "machine load) `total_samples_vs_dense`.",
            "",
            "## Rounds",
            "",
            "Each row is the model scored in that round (round 1: the dense model). "
            + EVIDENCE_NOTE,
            "",
            markdown_table(list(trace.columns), trace_rows),
            "![evidence and accuracy per round](round_curves.png)",
            "",
            "![per-layer density](layer_density.png)",
            "",
            "## Configuration",
            "",
            "```json",
            json.dumps({"dataset": config.get("dataset"), "model": config.get("model"),
                        "seed": config.get("seed"), "jmds": jmds}, indent=2),
            "```",
            "",
        ]
    )


def comparison_markdown(
    dataset: str, model: str, table: pd.DataFrame, differences: Sequence[Mapping[str, object]],
    figures: Mapping[str, str] | None = None,
) -> str:
    """The paper-style table (mean ± std over seeds), the JMDS − phased test and links to
    the ``figures`` (name → file next to the Markdown)."""
    header = ["method", "model sparsity", "data sparsity", "test acc (mean ± std)",
              "train time ×dense", "total time ×dense", "inference FLOPs ×dense",
              "training FLOPs", "log evidence", "seeds"]
    perplexity = "test_perplexity_mean" in table.columns
    samples = "total_samples_vs_dense_mean" in table.columns
    if samples:  # the load-independent cost beside the wall-time one
        header.insert(header.index("total time ×dense") + 1, "training samples ×dense")
    if "val_accuracy_mean" in table.columns:
        header.insert(4, "val acc (mean)")
    if perplexity:  # language models: perplexity is the headline number
        header.insert(3, "test ppl (mean ± std)")
    rows = [
        [
            row["method"],
            f"{row['model_sparsity_mean']:.2f}",
            f"{row['data_sparsity_mean']:.2f}",
            *([f"{row['test_perplexity_mean']:.3f} ± {row['test_perplexity_std']:.3f}"]
              if perplexity else []),
            f"{row['test_accuracy_mean']:.4f} ± {row['test_accuracy_std']:.4f}",
            *([f"{row['val_accuracy_mean']:.4f}"] if "val_accuracy_mean" in row else []),
            f"{row['time_vs_dense_mean']:.2f}",
            f"{row['total_vs_dense_mean']:.2f}",
            *([f"{row['total_samples_vs_dense_mean']:.2f}"] if samples else []),
            f"{row['inference_flops_vs_dense_mean']:.3f}",
            f"{row['training_flops_mean']:.3e}",
            f"{row['log_evidence_mean']:.1f}",
            str(int(row["seeds"])),
        ]
        for _, row in table.iterrows()
    ]
    lines = [f"# {dataset} / {model}: methods compared", "", markdown_table(header, rows)]
    lines.append("## Paired differences (test accuracy, paired by seed, 95 % t interval)\n")
    for d in differences:
        first, _, second = str(d["comparison"]).partition(" - ")
        verdict = (f"{first} better" if d["ci_low"] > 0 else f"{second} better"
                   if d["ci_high"] < 0 else "no significant difference")
        lines.append(
            f"- {d['comparison']}, budget ({d['target_model_sparsity']:.0%} model, "
            f"{d['target_data_sparsity']:.0%} data): {d['mean_difference']:+.4f} "
            f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] over {d['seeds']} seeds — {verdict}"
        )
    if figures:
        quality = "perplexity" if "test_perplexity_mean" in table.columns else "accuracy"
        lines.append(f"\n## Test {quality} against cost (Pareto front dashed, its points "
                     "ringed)\n")
        lines += [f"![{name}]({file})\n" for name, file in figures.items()]
    return "\n".join(lines) + "\n"
