"""The pipelines' wiring against the catalog: every dataset a node reads is saved by the
catalog or produced by another node, every end result is saved, and the stages chain up
(data_loading → pretraining → jmds → evaluation, and data_loading → compare)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import yaml
from kedro.pipeline import Pipeline

from jmds_pipeline.pipelines.compare import pipeline as compare
from jmds_pipeline.pipelines.data_loading import pipeline as data_loading
from jmds_pipeline.pipelines.evaluation import pipeline as evaluation
from jmds_pipeline.pipelines.jmds import pipeline as jmds
from jmds_pipeline.pipelines.pretraining import pipeline as pretraining

CATALOG = Path(__file__).resolve().parents[2] / "conf" / "base" / "catalog.yml"
ROUNDS = 3


def _catalog_patterns() -> list[re.Pattern]:
    names = [key for key in yaml.safe_load(CATALOG.read_text()) if not key.startswith("_")]
    # "round_{r}.masks" matches round_1.masks, round_2.masks, ...
    return [re.compile("^" + re.sub(r"\\\{[^}]+\\\}", r"[^.]+", re.escape(n)) + "$") for n in names]


def _saved(name: str) -> bool:
    return any(pattern.match(name) for pattern in _catalog_patterns())


def _pipelines() -> dict[str, Pipeline]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kedro warns about '.' in dataset names
        return {
            "data_loading": data_loading.create_pipeline(),
            "pretraining": pretraining.create_pipeline(),
            "jmds": jmds.create_pipeline(ROUNDS),
            "evaluation": evaluation.create_pipeline(ROUNDS),
            "evaluation_dense": evaluation.create_pipeline(),
            "compare": compare.create_pipeline(),
        }


def _is_parameter(name: str) -> bool:
    return name == "parameters" or name.startswith("params:")


@pytest.mark.parametrize("name", list(_pipelines()))
def test_each_pipeline_reads_saved_data_and_saves_its_results(name: str) -> None:
    pipe = _pipelines()[name]
    free = {d for d in pipe.inputs() if not _is_parameter(d)}
    assert {d for d in free if not _saved(d)} == set()  # a separate `kedro run` can load them
    assert {d for d in pipe.outputs() if not _saved(d)} == set()  # end results are kept
    # every output is produced by exactly one node
    produced = [output for node in pipe.nodes for output in node.outputs]
    assert len(produced) == len(set(produced))
    assert len({node.name for node in pipe.nodes}) == len(pipe.nodes)


def test_the_stages_chain_from_the_parameters_alone() -> None:
    p = _pipelines()
    main = p["data_loading"] + p["pretraining"] + p["jmds"] + p["evaluation"]
    assert {d for d in main.inputs() if not _is_parameter(d)} == set()
    assert {d for d in (p["data_loading"] + p["compare"]).inputs() if not _is_parameter(d)} == set()
    # each stage needs something the one before it made (no stage stands alone)
    assert p["pretraining"].inputs() & p["data_loading"].outputs()
    assert p["jmds"].inputs() & p["pretraining"].outputs()
    assert p["evaluation"].inputs() & p["jmds"].outputs()


def test_evaluation_of_r_rounds_reads_round_r() -> None:
    inputs = evaluation.create_pipeline(ROUNDS).inputs()
    assert {f"round_{ROUNDS}.masks", f"round_{ROUNDS}.kept"} <= inputs
    assert evaluation.create_pipeline().outputs() == {"dense_metrics"}
    assert {
        "jmds_metrics",
        "jmds_report",
        "jmds_round_curves",
        "jmds_layer_density",
    } <= evaluation.create_pipeline(ROUNDS).outputs()


def test_the_compare_pipeline_yields_every_comparison_artefact() -> None:
    artefacts = {
        "compare.results",
        "compare.table",
        "compare.markdown",
        "compare.summary",
        "compare.pareto_flops",
        "compare.pareto_time",
        "compare.grid",
        "compare.grid_heatmap",
        "compare.evidence_correlation",
    }
    assert artefacts <= compare.create_pipeline().all_outputs()
    assert all(_saved(name) for name in artefacts)
