from kedro.pipeline import Pipeline, node, pipeline

from jmds_pipeline.pipelines.evaluation.nodes import evaluate_dense, evaluate_jmds


def create_pipeline(rounds: int | None = None) -> Pipeline:
    """Dense evaluation; with ``rounds``, also the final JMDS model of that many rounds."""
    dense = pipeline(
        [
            node(
                evaluate_dense,
                ["dense_state", "test_split", "dataset_meta", "dense_training", "parameters"],
                "dense_metrics",
                name="evaluate_dense",
            )
        ]
    )
    if rounds is None:
        return dense
    jmds = pipeline(
        [
            node(
                evaluate_jmds,
                ["jmds.final_state", f"round_{rounds}.masks", f"round_{rounds}.kept",
                 "train_split", "test_split", "dataset_meta", "parameters", "dense_metrics",
                 "dense_training", "jmds.final_training", "jmds.round_trace"],
                ["jmds_metrics", "jmds_report", "jmds_round_curves", "jmds_layer_density"],
                name="evaluate_jmds",
            )
        ]
    )
    return dense + jmds
