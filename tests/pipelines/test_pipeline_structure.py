"""What each pipeline's nodes are called and what they read, against what the rest of the
project relies on: node names that ``provenance.SCOPES`` and the README's resume commands
(``kedro run --from-nodes=round_3.train``) refer to, the round r nodes reading round r−1's
outputs, the node functions bound to their round, and the round trace reading, per round,
the evidence, the scoring, the mask and kept rows the round scored, and its training log."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from kedro.pipeline import Pipeline

from jmds_pipeline.comparison.methods import METHODS
from jmds_pipeline.pipelines.compare import pipeline as compare
from jmds_pipeline.pipelines.compare.nodes import evidence_correlation, jmds_grid, summarise
from jmds_pipeline.pipelines.data_loading import pipeline as data_loading
from jmds_pipeline.pipelines.data_loading.nodes import load_splits
from jmds_pipeline.pipelines.evaluation import pipeline as evaluation
from jmds_pipeline.pipelines.evaluation.nodes import evaluate_dense, evaluate_jmds
from jmds_pipeline.pipelines.jmds import nodes as jmds_nodes
from jmds_pipeline.pipelines.jmds import pipeline as jmds
from jmds_pipeline.pipelines.jmds.export import export_model
from jmds_pipeline.pipelines.jmds.trace import round_trace
from jmds_pipeline.pipelines.pretraining import pipeline as pretraining
from jmds_pipeline.pipelines.pretraining.nodes import pretrain_dense
from jmds_pipeline.provenance import SCOPES
from jmds_pipeline.tracking import track_rounds

README = Path(__file__).resolve().parents[2] / "README.md"
# the nodes the README's ``kedro run --from-nodes=…`` / ``--to-nodes=…`` commands name
RESUME_NODES = {"round_2.train", "round_3.train", "round_2.update_mask",
                "round_2.estimate_evidence"}
SPLITS = ["train_split", "val_split", "test_split", "dataset_meta", "parameters"]


def _quiet(build, *args):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kedro warns about '.' in dataset names
        return build(*args)


def _nodes(pipe: Pipeline) -> dict:
    return {node.name: node for node in pipe.nodes}


def _func(node):  # type: ignore[no-untyped-def]
    return getattr(node.func, "func", node.func)  # a round's partial: the function itself


def test_node_names_that_provenance_and_the_readme_refer_to_exist() -> None:
    names = set()
    for pipe in (_quiet(data_loading.create_pipeline), _quiet(pretraining.create_pipeline),
                 _quiet(jmds.create_pipeline, 3), _quiet(evaluation.create_pipeline, 3)):
        names |= set(_nodes(pipe))
    assert set(SCOPES) <= names
    assert names >= RESUME_NODES


@pytest.mark.skipif(not README.exists(), reason="README.md is not copied (mutation run)")
def test_the_readme_resumes_only_from_the_nodes_checked_above() -> None:
    assert set(re.findall(r"--(?:from|to)-nodes=(\w+(?:\.\w+)*)", README.read_text())) == (
        RESUME_NODES)


def test_data_loading_and_pretraining_nodes() -> None:
    (load,) = _quiet(data_loading.create_pipeline).nodes
    assert (load.name, load.func, load.inputs) == ("load_splits", load_splits, ["parameters"])
    assert load.outputs == ["train_split", "val_split", "test_split", "dataset_meta"]
    (pretrain,) = _quiet(pretraining.create_pipeline).nodes
    assert (pretrain.name, pretrain.func) == ("pretrain_dense", pretrain_dense)
    assert pretrain.inputs == ["train_split", "val_split", "dataset_meta", "parameters"]
    assert pretrain.outputs == ["dense_state", "rewind_state", "dense_history",
                                "dense_training"]


def test_evaluation_nodes_read_the_last_rounds_outputs() -> None:
    (dense,) = _quiet(evaluation.create_pipeline).nodes
    assert (dense.name, dense.func) == ("evaluate_dense", evaluate_dense)
    assert dense.inputs == ["dense_state", "test_split", "dataset_meta", "dense_training",
                            "parameters"]
    assert dense.outputs == ["dense_metrics"]
    nodes = _nodes(_quiet(evaluation.create_pipeline, 4))
    assert set(nodes) == {"evaluate_dense", "evaluate_jmds"}
    final = nodes["evaluate_jmds"]
    assert final.func is evaluate_jmds
    # evaluate_jmds(final_state, masks, kept, train, test, meta, parameters, dense_metrics,
    #               dense_training, final_training, round_trace)
    assert final.inputs == ["jmds.final_state", "round_4.masks", "round_4.kept",
                            "train_split", "test_split", "dataset_meta", "parameters",
                            "dense_metrics", "dense_training", "jmds.final_training",
                            "jmds.round_trace"]
    assert final.outputs == ["jmds_metrics", "jmds_report", "jmds_round_curves",
                             "jmds_layer_density"]


def test_compare_nodes() -> None:
    nodes = _nodes(_quiet(compare.create_pipeline))
    assert set(nodes) == {"compare_dense_runs", "compare_summarise", "compare_jmds_grid",
                          "compare_evidence_correlation",
                          *(f"compare_{method}" for method in METHODS)}
    assert nodes["compare_dense_runs"].inputs == SPLITS
    assert nodes["compare_dense_runs"].outputs == ["compare.dense_runs"]
    for method in METHODS:
        node = nodes[f"compare_{method}"]
        assert node.func.__name__ == f"compare_{method}"
        assert node.inputs == ["compare.dense_runs", *SPLITS]
        assert node.outputs == [f"compare.rows_{method}"]
    summary = nodes["compare_summarise"]
    assert summary.func is summarise
    assert summary.inputs == ["parameters", *(f"compare.rows_{m}" for m in METHODS)]
    assert summary.outputs == ["compare.results", "compare.table", "compare.markdown",
                               "compare.summary", "compare.pareto_flops",
                               "compare.pareto_time"]
    grid = nodes["compare_jmds_grid"]
    assert grid.func is jmds_grid
    assert grid.inputs == ["compare.dense_runs", *SPLITS]
    assert grid.outputs == ["compare.grid", "compare.grid_heatmap"]
    correlation = nodes["compare_evidence_correlation"]
    assert correlation.func is evidence_correlation
    assert correlation.inputs == ["compare.results", "compare.grid"]
    assert correlation.outputs == ["compare.evidence_correlation"]


@pytest.mark.parametrize("rounds", [0, -1])
def test_fewer_than_one_round_is_refused(rounds: int) -> None:
    with pytest.raises(ValueError, match=rf"^jmds.rounds = {rounds}; accepted: an integer ≥ 1$"):
        jmds.create_pipeline(rounds)


def test_one_round_builds_round_one_only() -> None:
    nodes = _nodes(_quiet(jmds.create_pipeline, 1))
    assert {n for n in nodes if n.startswith("round_")} == {
        "round_1.start", "round_1.estimate_evidence", "round_1.update_mask",
        "round_1.score_samples", "round_1.update_samples"}
    assert nodes["jmds.final_retrain"].inputs[1:4] == ["round_1.masks", "round_1.kept",
                                                       "round_1.evidence"]


def test_the_jmds_rounds_chain_and_each_node_knows_its_round() -> None:
    rounds = 3
    nodes = _nodes(_quiet(jmds.create_pipeline, rounds))
    initial = nodes["jmds.initial_sparsity"]
    assert initial.func is jmds_nodes.initial_sparsity
    assert initial.inputs == ["dense_state", "train_split", "dataset_meta", "parameters"]
    assert initial.outputs == ["jmds.initial_masks", "jmds.initial_kept"]

    start = nodes["round_1.start"]
    assert start.func is jmds_nodes.round_one_state
    assert start.inputs == ["dense_state", "rewind_state", "dense_training", "val_split",
                            "dataset_meta", "parameters"]
    assert start.outputs == ["round_1.state", "round_1.train_log"]
    assert "round_1.train" not in nodes

    for r in range(1, rounds + 1):
        masks_in = f"round_{r - 1}.masks" if r > 1 else "jmds.initial_masks"
        kept_in = f"round_{r - 1}.kept" if r > 1 else "jmds.initial_kept"
        state = f"round_{r}.state"
        if r > 1:
            train = nodes[f"round_{r}.train"]
            assert _func(train) is jmds_nodes.train_round
            assert train.func.keywords == {"round_index": r}
            assert train.func.__name__ == "train_round"  # Kedro's logs name it
            # train_round(rewind_state, previous_state, masks, kept, previous_evidence, ...)
            # round 2 continues (rewind: false) from the dense model, later rounds from
            # the model the round before trained
            previous = "dense_state" if r == 2 else f"round_{r - 1}.state"
            assert train.inputs == ["rewind_state", previous, masks_in, kept_in,
                                    f"round_{r - 1}.evidence", "train_split", "val_split",
                                    "dataset_meta", "parameters"]
            assert train.outputs == [state, f"round_{r}.train_log"]
        score = nodes[f"round_{r}.estimate_evidence"]
        assert score.func is jmds_nodes.score_round
        assert score.inputs == [state, masks_in, kept_in, "train_split", "dataset_meta",
                                "parameters"]
        assert score.outputs == [f"round_{r}.weight_scores", f"round_{r}.evidence"]
        mask = nodes[f"round_{r}.update_mask"]
        assert _func(mask) is jmds_nodes.update_mask
        assert mask.func.keywords == {"round_index": r}
        assert mask.inputs == [f"round_{r}.weight_scores", masks_in, "parameters",
                               "dataset_meta"]
        assert mask.outputs == [f"round_{r}.masks", f"round_{r}.mask_summary"]
        samples = nodes[f"round_{r}.score_samples"]
        assert samples.func is jmds_nodes.score_round_samples
        # phase C scores under the mask before and after phase B's update
        assert samples.inputs == [state, masks_in, f"round_{r}.masks", kept_in,
                                  "train_split", "dataset_meta", "parameters"]
        assert samples.outputs == [f"round_{r}.sample_scores", f"round_{r}.sample_scoring"]
        update = nodes[f"round_{r}.update_samples"]
        assert _func(update) is jmds_nodes.update_samples
        assert update.func.keywords == {"round_index": r}
        # from round 2 on, the previous round's table carries the running score
        assert update.inputs == [f"round_{r}.sample_scores", kept_in, "train_split",
                                 "parameters"] + ([f"round_{r - 1}.sample_table"]
                                                  if r > 1 else [])
        assert update.outputs == [f"round_{r}.kept", f"round_{r}.sample_table"]

    final = nodes["jmds.final_retrain"]
    assert final.func is jmds_nodes.final_retrain
    assert final.inputs == ["rewind_state", "round_3.masks", "round_3.kept",
                            "round_3.evidence", "train_split", "dataset_meta", "parameters"]
    assert final.outputs == ["jmds.final_state", "jmds.final_history", "jmds.final_training"]

    trace = nodes["jmds.round_trace"]
    assert trace.func is round_trace
    # per round: (evidence, sample scoring, masks scored, kept scored, training log)
    assert trace.inputs == [
        "round_1.evidence", "round_1.sample_scoring", "jmds.initial_masks",
        "jmds.initial_kept", "round_1.train_log",
        "round_2.evidence", "round_2.sample_scoring", "round_1.masks", "round_1.kept",
        "round_2.train_log",
        "round_3.evidence", "round_3.sample_scoring", "round_2.masks", "round_2.kept",
        "round_3.train_log"]
    assert trace.outputs == ["jmds.round_trace", "jmds.round_trace_json"]

    tracking = nodes["jmds.track_rounds"]
    assert tracking.func is track_rounds
    assert tracking.inputs == ["jmds.round_trace", "parameters"] and tracking.outputs == []

    shipped = nodes["jmds.export"]
    assert shipped.func is export_model
    assert shipped.inputs == ["jmds.final_state", "round_3.masks", "train_split",
                              "dataset_meta", "parameters"]
    assert shipped.outputs == ["jmds.export_program", "jmds.export_sparse",
                               "jmds.export_summary"]
    assert len(nodes) == 1 + 5 * rounds + 4


def test_round_template_alone() -> None:
    first, later = jmds.round_template(1), jmds.round_template(2)
    assert [n.name for n in first.nodes] == ["start", "estimate_evidence", "update_mask",
                                             "score_samples", "update_samples"]
    assert {n.name for n in later.nodes} == {"train", "estimate_evidence", "update_mask",
                                             "score_samples", "update_samples"}
    assert "table_in" not in first.inputs() and "table_in" in later.inputs()
    assert {"state_in", "evidence_in"} <= later.inputs()
