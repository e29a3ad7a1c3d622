"""The compare pipeline's nodes as plain functions: the methods' own training is replaced by
stand-ins that record what the nodes hand them, and the tables are checked against
hand-built rows (means and paired differences worked out by hand, Spearman ρ = ±1 for
monotone data)."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.figure import Figure

from jmds_pipeline.comparison.methods import Budget, Context
from jmds_pipeline.config import ConfigError, RunConfig
from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.pipelines.compare import nodes
from jmds_pipeline.pipelines.compare.nodes import (
    compare_method,
    dense_runs,
    evidence_correlation,
    jmds_grid,
    summarise,
)
from jmds_pipeline.runtime import run_config_of
from jmds_pipeline.schemas import ComparisonSchema
from tests.conftest import make_blobs

META = DatasetMeta(name="digits", task="classification", num_classes=3, input_shape=(6,))


def _parameters(**compare: object) -> dict:
    return {"dataset": "digits", "model": "mlp", "model_options": {"hidden_sizes": [8]},
            "dvclive": False,
            "training": {"epochs": 3, "batch_size": 16, "progress": False},
            "jmds": {"rounds": 2, "round_epochs": 4},
            "compare": {"methods": ["imp", "jmds", "phased"], "seeds": [3, 1],
                        "budgets": [[0.5, 0.25], [0.8, 0.5]], "paired": [["jmds", "imp"]],
                        "el2n_models": 3, "el2n_epoch_fraction": 0.25, **compare}}


def _splits() -> tuple[dict, dict, dict]:
    return make_blobs(n=12), make_blobs(n=6, seed=1), make_blobs(n=6, seed=2)


# ---------------------------------------------------------------- the context and methods

@pytest.mark.parametrize(("compare", "key", "bad"), [
    ({"methods": ["imp", "jmds_typo", "phased"]}, "compare.methods", "jmds_typo"),
    ({"paired": [["jmds", "imp"], ["nonesuch", "imp"]]}, "compare.paired", "nonesuch"),
])
def test_unknown_methods_stop_every_node_before_training(monkeypatch, compare: dict,
                                                         key: str, bad: str) -> None:
    monkeypatch.setattr(nodes, "dense_run", lambda *a: pytest.fail("trained"))
    monkeypatch.setattr(nodes, "run_method", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(nodes, "run_jmds", lambda *a: pytest.fail("trained"))
    parameters = _parameters(**compare)
    train, val, test = _splits()
    calls = [
        lambda: dense_runs(train, val, test, META.to_dict(), parameters),
        lambda: compare_method("imp")([], train, val, test, META.to_dict(), parameters),
        lambda: jmds_grid([], train, val, test, META.to_dict(), parameters),
    ]
    for call in calls:
        with pytest.raises(ConfigError, match=rf"^{key}: unknown methods \['{bad}'\]"):
            call()


def test_dense_runs_train_every_seed_in_order_with_the_runs_context(monkeypatch) -> None:
    seen: list[tuple[Context, int]] = []
    monkeypatch.setattr(nodes, "dense_run",
                        lambda context, seed: seen.append((context, seed)) or f"run {seed}")
    train, val, test = _splits()
    parameters = _parameters()
    runs = dense_runs(train, val, test, META.to_dict(), parameters)
    assert runs == ["run 3", "run 1"]
    assert [seed for _, seed in seen] == [3, 1]
    context = seen[0][0]
    assert context.config == run_config_of(parameters)
    assert context.meta == META
    assert context.train is train and context.val is val and context.test is test
    assert (context.device, context.el2n_models, context.el2n_epoch_fraction) == (
        "cpu", 3, 0.25)


def test_the_context_runs_on_the_configured_device(monkeypatch) -> None:
    """The device the run's configuration resolves to (a stand-in name here: this machine
    has only a CPU, and the methods are stand-ins too)."""
    monkeypatch.setattr(RunConfig, "resolved_device", lambda self: "cuda:3")
    seen = []
    monkeypatch.setattr(nodes, "dense_run", lambda context, seed: seen.append(context.device))
    train, val, test = _splits()
    dense_runs(train, val, test, META.to_dict(), _parameters())
    assert seen == ["cuda:3", "cuda:3"]


def test_compare_method_is_named_after_and_runs_only_a_selected_method(monkeypatch) -> None:
    calls = []

    def fake_run_method(context, method, budgets, runs, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((context, method, budgets, runs, kwargs))
        return pd.DataFrame({"method": [method]})

    monkeypatch.setattr(nodes, "run_method", fake_run_method)
    train, val, test = _splits()
    runs = ["dense run of seed 3", "dense run of seed 1"]
    selected, unselected = compare_method("phased"), compare_method("el2n")
    assert (selected.__name__, unselected.__name__) == ("compare_phased", "compare_el2n")

    skipped = unselected(runs, train, val, test, META.to_dict(), _parameters())
    assert isinstance(skipped, pd.DataFrame) and skipped.empty and not calls

    parameters = _parameters()
    parameters["training"]["progress"] = True
    frame = selected(runs, train, val, test, META.to_dict(), parameters)
    assert frame["method"].tolist() == ["phased"]
    ((context, method, budgets, runs_in, kwargs),) = calls
    assert method == "phased" and runs_in is runs
    assert budgets == [Budget(0.5, 0.25), Budget(0.8, 0.5)]
    assert kwargs == {"progress": True}
    assert context.train is train and context.val is val and context.test is test
    assert context.config.compare.seeds == (3, 1)


# ---------------------------------------------------------------------------- summarise

def _rows(method: str, accuracy: dict[tuple[float, float, int], float]) -> pd.DataFrame:
    rows = []
    for (model, data, seed), value in accuracy.items():
        rows.append({
            "method": method, "seed": seed, "target_model_sparsity": model,
            "target_data_sparsity": data, "model_sparsity": model,
            "data_sparsity": data, "test_accuracy": value, "test_loss": 1.0 - value,
            "train_seconds": 2.0, "time_vs_dense": 0.5, "total_vs_dense": 1.5 + seed,
            "total_samples_vs_dense": 1.25, "inference_flops_vs_dense": 1.0 - model,
            "training_flops": 100.0, "log_evidence": -10.0 * value, "val_accuracy": value,
        })
    return pd.DataFrame(rows)


def _tables() -> dict[str, pd.DataFrame]:
    return {
        "jmds": _rows("jmds", {(0.5, 0.25, 3): 0.9, (0.5, 0.25, 1): 0.8,
                               (0.8, 0.5, 3): 0.7, (0.8, 0.5, 1): 0.6}),
        "phased": _rows("phased", {(0.5, 0.25, 3): 0.85, (0.5, 0.25, 1): 0.8,
                                   (0.8, 0.5, 3): 0.5, (0.8, 0.5, 1): 0.55}),
        "imp": _rows("imp", {(0.5, 0.25, 3): 0.75, (0.5, 0.25, 1): 0.5}),
    }


def test_summarise_gathers_rows_means_paired_differences_and_figures(monkeypatch) -> None:
    figures, markdowns = [], []

    def fake_pareto(table, cost, label, budgets, title):  # type: ignore[no-untyped-def]
        figures.append((table, cost, label, budgets, title))
        return f"figure of {cost}"

    def fake_markdown(dataset, model, table, paired, figures):  # type: ignore[no-untyped-def]
        markdowns.append((dataset, model, table, paired, figures))
        return "MARKDOWN"

    monkeypatch.setattr(nodes, "pareto_figure", fake_pareto)
    monkeypatch.setattr(nodes, "comparison_markdown", fake_markdown)
    tables = _tables()
    results, table, markdown, payload, flops, time = summarise(
        _parameters(), tables["imp"], pd.DataFrame(), tables["jmds"], tables["phased"])

    # every non-empty table's rows, in order, re-indexed
    assert results["method"].tolist() == ["imp"] * 2 + ["jmds"] * 4 + ["phased"] * 4
    assert results.index.tolist() == list(range(10))
    assert results["test_accuracy"].tolist() == [0.75, 0.5, 0.9, 0.8, 0.7, 0.6,
                                                 0.85, 0.8, 0.5, 0.55]
    ComparisonSchema.validate(results)
    # one row per method × budget, mean over its seeds
    means = {(r.method, r.target_model_sparsity): r.test_accuracy_mean
             for r in table.itertuples()}
    assert means == pytest.approx({("imp", 0.5): 0.625, ("jmds", 0.5): 0.85,
                                   ("jmds", 0.8): 0.65, ("phased", 0.5): 0.825,
                                   ("phased", 0.8): 0.525})
    assert markdown == "MARKDOWN"
    assert payload["dataset"] == "digits" and payload["model"] == "mlp"
    assert payload["seeds"] == [3, 1]
    assert (payload["epochs"], payload["rounds"], payload["round_epochs"]) == (3, 2, 4)
    assert payload["rows"] == results.to_dict(orient="records")
    # jmds − phased per budget: (0.05 + 0) / 2 and (0.2 + 0.05) / 2
    jp = payload["jmds_minus_phased"]
    assert [d["comparison"] for d in jp] == ["jmds - phased"] * 2
    assert [d["mean_difference"] for d in jp] == pytest.approx([0.025, 0.125])
    # the configured pair: jmds − imp only where both ran (the 0.5 budget)
    (pair,) = payload["paired"]
    assert pair["comparison"] == "jmds - imp"
    assert (pair["target_model_sparsity"], pair["seeds"]) == (0.5, 2)
    assert pair["mean_difference"] == pytest.approx((0.15 + 0.3) / 2)
    assert payload["figures"] == {"pareto_flops": "pareto_flops.png",
                                  "pareto_time": "pareto_time.png"}

    ((dataset, model, md_table, paired, md_figures),) = markdowns
    assert (dataset, model) == ("digits", "mlp")
    assert md_table is not None and md_table.equals(table)
    assert paired == payload["paired"]
    assert md_figures == payload["figures"]

    assert (flops, time) == ("figure of inference_flops_vs_dense_mean",
                             "figure of total_vs_dense_mean")
    assert [(cost, label) for _, cost, label, _, _ in figures] == [
        ("inference_flops_vs_dense_mean", "inference FLOPs × dense"),
        ("total_vs_dense_mean", "total training time × dense")]
    for fig_table, _, _, budgets, title in figures:
        assert fig_table is table
        assert budgets == [(0.5, 0.25), (0.8, 0.5)]
        assert title == "digits / mlp, 2 seed(s)"


def test_summarise_draws_real_pareto_figures() -> None:
    tables = _tables()
    *_, flops, time = summarise(_parameters(), tables["jmds"], tables["phased"])
    assert isinstance(flops, Figure) and isinstance(time, Figure)
    assert flops.axes[0].get_xlabel() != time.axes[0].get_xlabel()
    plt.close("all")


# ---------------------------------------------------------------------- grid, correlation

def test_jmds_grid_runs_each_grid_point_for_the_grid_seeds(monkeypatch) -> None:
    calls = []

    def fake_run_jmds(context, dense, budget):  # type: ignore[no-untyped-def]
        calls.append((context, dense.seed, budget))
        accuracy = 1.0 - budget.model_sparsity / 2 - budget.data_sparsity / 4 - dense.seed / 100
        return {"method": "jmds", "seed": dense.seed,
                "target_model_sparsity": budget.model_sparsity,
                "target_data_sparsity": budget.data_sparsity, "test_accuracy": accuracy}

    monkeypatch.setattr(nodes, "run_jmds", fake_run_jmds)
    parameters = _parameters(grid={"model_sparsities": [0.5, 0.8],
                                   "data_sparsities": [0.2, 0.4, 0.6], "seeds": [1, 2]})
    runs = [SimpleNamespace(seed=s) for s in (0, 1, 2)]
    train, val, test = _splits()
    frame, figure = jmds_grid(runs, train, val, test, META.to_dict(), parameters)

    assert {seed for _, seed, _ in calls} == {1, 2}  # seed 0 is not a grid seed
    assert len(frame) == len(calls) == 12
    assert [(s, b.model_sparsity, b.data_sparsity) for _, s, b in calls[:6]] == [
        (1, m, d) for m in (0.5, 0.8) for d in (0.2, 0.4, 0.6)]
    context = calls[0][0]
    assert context.train is train and context.val is val and context.test is test
    axis = figure.axes[0]
    assert [t.get_text() for t in axis.get_xticklabels()] == ["20%", "40%", "60%"]
    assert [t.get_text() for t in axis.get_yticklabels()] == ["50%", "80%"]
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("data sparsity", "model sparsity")
    assert axis.get_title() == "JMDS test accuracy"
    bottom, top = axis.get_ylim()
    assert bottom < top  # the lowest model sparsity at the bottom, as its tick label says
    # each cell's value written in the middle of the cell, readable on the colour map
    assert {(t.get_position(), t.get_ha(), t.get_va(), t.get_color())
            for t in axis.texts[:2]} == {((0, 0), "center", "center", "w"),
                                         ((1, 0), "center", "center", "w")}
    # cell (model m, data d): the mean over seeds 1 and 2 = 1 − m/2 − d/4 − 0.015
    cells = [t.get_text() for t in axis.texts]
    expected = [f"{1 - m / 2 - d / 4 - 0.015:.3f}" for m in (0.5, 0.8)
                for d in (0.2, 0.4, 0.6)]
    assert cells == expected
    assert len(figure.axes) == 2  # the heat map and its colour bar
    # the colour bar spans the cells' values (it belongs to the heat map's image)
    low, high = figure.axes[1].get_ylim()
    assert (low, high) == pytest.approx((min(map(float, cells)), max(map(float, cells))),
                                        abs=5e-4)
    assert tuple(figure.get_size_inches()) == (5.5, 4.5)  # the saved heat map's size
    plt.close("all")


def test_jmds_grid_without_grid_seeds_gives_an_empty_table(monkeypatch) -> None:
    monkeypatch.setattr(nodes, "run_jmds", lambda *a: pytest.fail("trained"))
    parameters = _parameters(grid={"seeds": [7]})
    train, val, test = _splits()
    frame, figure = jmds_grid([SimpleNamespace(seed=0)], train, val, test, META.to_dict(),
                              parameters)
    assert frame.empty
    assert isinstance(figure, Figure) and not figure.axes
    plt.close("all")


def test_evidence_correlation_over_the_table_and_the_grid() -> None:
    results = _tables()["jmds"]  # log evidence = −10 × accuracy: ρ = −1
    grid = results.assign(log_evidence=results["test_accuracy"] * 3)  # ρ = +1
    out = evidence_correlation(results, grid)
    assert out["table"]["across_budgets"]["rho"] == pytest.approx(-1.0)
    assert out["table"]["across_budgets"]["n"] == 4
    assert out["grid"]["across_budgets"]["rho"] == pytest.approx(1.0)
    assert evidence_correlation(results, pd.DataFrame())["grid"] is None
