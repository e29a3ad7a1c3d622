"""`kedro run --pipelines=compare`: every method side by side (the paper's main table)."""

from kedro.pipeline import Pipeline, node, pipeline

from jmds_pipeline.comparison.methods import METHODS
from jmds_pipeline.pipelines.compare.nodes import (
    compare_method,
    dense_runs,
    evidence_correlation,
    jmds_grid,
    summarise,
)

SPLITS = ["train_split", "val_split", "test_split", "dataset_meta", "parameters"]


def create_pipeline() -> Pipeline:
    method_nodes = [
        node(compare_method(method), ["compare.dense_runs", *SPLITS],
             f"compare.rows_{method}", name=f"compare_{method}")
        for method in METHODS
    ]
    return pipeline(
        [
            node(dense_runs, SPLITS, "compare.dense_runs", name="compare_dense_runs"),
            *method_nodes,
            node(
                summarise,
                ["parameters", *(f"compare.rows_{method}" for method in METHODS)],
                ["compare.results", "compare.table", "compare.markdown", "compare.summary",
                 "compare.pareto_flops", "compare.pareto_time"],
                name="compare_summarise",
            ),
            node(jmds_grid, ["compare.dense_runs", *SPLITS],
                 ["compare.grid", "compare.grid_heatmap"], name="compare_jmds_grid"),
            node(evidence_correlation, ["compare.results", "compare.grid"],
                 "compare.evidence_correlation", name="compare_evidence_correlation"),
        ]
    )
