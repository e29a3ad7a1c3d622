"""The JMDS pipeline: one round template unrolled R times as namespaces round_1..round_R.

Kedro has no loops, so round r's inputs are mapped to round r−1's outputs. R is read
from ``conf/base/parameters_jmds.yml`` (``jmds.rounds``) when the pipeline is built.
"""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node, pipeline

from jmds_pipeline.pipelines.jmds.export import export_model
from jmds_pipeline.pipelines.jmds.nodes import (
    final_retrain,
    initial_sparsity,
    round_one_state,
    score_round,
    score_round_samples,
    train_round,
    update_mask,
    update_samples,
)
from jmds_pipeline.pipelines.jmds.trace import round_trace
from jmds_pipeline.tracking import track_rounds

SHARED_INPUTS = {"train_split", "val_split", "dataset_meta", "rewind_state", "dense_state",
                 "dense_training"}


def _for_round(func, round_index: int):  # type: ignore[no-untyped-def]
    bound = partial(func, round_index=round_index)
    return update_wrapper(bound, func)


def round_template(round_index: int) -> Pipeline:
    """One round: train → estimate_evidence → update_mask → score_samples (under the new
    mask) → update_samples. Round 1 trains nothing: it scores the dense model, or the rewind
    point (``jmds.score_from``), which its ``start`` node saves as the round's state."""
    nodes = []
    if round_index == 1:
        nodes.append(node(round_one_state,
                          ["dense_state", "rewind_state", "dense_training", "val_split",
                           "dataset_meta", "parameters"],
                          ["state", "train_log"], name="start"))
    else:
        nodes.append(
            node(
                _for_round(train_round, round_index),
                ["rewind_state", "state_in", "masks_in", "kept_in", "evidence_in",
                 "train_split", "val_split", "dataset_meta", "parameters"],
                ["state", "train_log"],
                name="train",
            )
        )
    nodes += [
        node(
            score_round,
            ["state", "masks_in", "kept_in", "train_split", "dataset_meta", "parameters"],
            ["weight_scores", "evidence"],
            name="estimate_evidence",
        ),
        node(
            _for_round(update_mask, round_index),
            ["weight_scores", "masks_in", "parameters", "dataset_meta"],
            ["masks", "mask_summary"],
            name="update_mask",
        ),
        node(
            score_round_samples,
            ["state", "masks_in", "masks", "kept_in", "train_split", "dataset_meta",
             "parameters"],
            ["sample_scores", "sample_scoring"],
            name="score_samples",
        ),
        node(
            _for_round(update_samples, round_index),
            ["sample_scores", "kept_in", "train_split", "parameters"]
            + (["table_in"] if round_index > 1 else []),
            ["kept", "sample_table"],
            name="update_samples",
        ),
    ]
    return pipeline(nodes)


def create_pipeline(rounds: int) -> Pipeline:
    if rounds < 1:
        raise ValueError(f"jmds.rounds = {rounds}; accepted: an integer ≥ 1")
    start = pipeline(
        [
            node(
                initial_sparsity,
                ["dense_state", "train_split", "dataset_meta", "parameters"],
                ["initial_masks", "initial_kept"],
                name="initial_sparsity",
            )
        ],
        namespace="jmds",
        inputs={"dense_state", "train_split", "dataset_meta"},
    )
    unrolled = Pipeline([])
    trace_inputs: list[str] = []
    for r in range(1, rounds + 1):
        previous = f"round_{r - 1}" if r > 1 else None
        mapping = {
            "masks_in": f"{previous}.masks" if previous else "jmds.initial_masks",
            "kept_in": f"{previous}.kept" if previous else "jmds.initial_kept",
        }
        if r > 1:
            # round 1's model is the dense one or the rewind point, both already inputs
            mapping["state_in"] = "dense_state" if r == 2 else f"{previous}.state"
            mapping["evidence_in"] = f"{previous}.evidence"
            mapping["table_in"] = f"{previous}.sample_table"
        template = round_template(r)
        shared = SHARED_INPUTS & template.inputs()
        unrolled += pipeline(
            template,
            namespace=f"round_{r}",
            inputs={**mapping, **{name: name for name in shared}},
        )
        trace_inputs += [
            f"round_{r}.evidence",
            f"round_{r}.sample_scoring",
            mapping["masks_in"],
            mapping["kept_in"],
            f"round_{r}.train_log",
        ]
    finish = pipeline(
        [
            node(
                final_retrain,
                ["rewind_state", f"round_{rounds}.masks", f"round_{rounds}.kept",
                 f"round_{rounds}.evidence", "train_split", "dataset_meta", "parameters"],
                ["jmds.final_state", "jmds.final_history", "jmds.final_training"],
                name="jmds.final_retrain",
            ),
            node(
                round_trace,
                trace_inputs,
                ["jmds.round_trace", "jmds.round_trace_json"],
                name="jmds.round_trace",
            ),
            node(track_rounds, ["jmds.round_trace", "parameters"], None,
                 name="jmds.track_rounds"),
            node(
                export_model,
                ["jmds.final_state", f"round_{rounds}.masks", "train_split", "dataset_meta",
                 "parameters"],
                ["jmds.export_program", "jmds.export_sparse", "jmds.export_summary"],
                name="jmds.export",
            ),
        ]
    )
    return start + unrolled + finish

