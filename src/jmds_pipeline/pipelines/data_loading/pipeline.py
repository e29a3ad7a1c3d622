from kedro.pipeline import Pipeline, node, pipeline

from jmds_pipeline.pipelines.data_loading.nodes import load_splits


def create_pipeline() -> Pipeline:
    return pipeline(
        [
            node(
                load_splits,
                "parameters",
                ["train_split", "val_split", "test_split", "dataset_meta"],
                name="load_splits",
            )
        ]
    )
