from kedro.pipeline import Pipeline, node, pipeline

from jmds_pipeline.pipelines.pretraining.nodes import pretrain_dense


def create_pipeline() -> Pipeline:
    return pipeline(
        [
            node(
                pretrain_dense,
                ["train_split", "val_split", "dataset_meta", "parameters"],
                ["dense_state", "rewind_state", "dense_history", "dense_training"],
                name="pretrain_dense",
            )
        ]
    )
