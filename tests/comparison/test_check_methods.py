"""Unknown comparison methods stop the compare pipeline at its first node, before training.

The configuration cannot check method names itself (the methods import it: that was an
import cycle), so the comparison package checks them in every compare node.
"""

from __future__ import annotations

import pytest

from jmds_pipeline.comparison.methods import METHODS
from jmds_pipeline.comparison.runner import check_methods
from jmds_pipeline.config import ConfigError, build_run_config
from jmds_pipeline.pipelines.compare import nodes
from tests.conftest import make_blobs


def test_check_methods_names_the_unknown_and_the_accepted() -> None:
    check_methods(["jmds", "phased"])
    with pytest.raises(ConfigError, match=r"unknown methods \['jmdss', 'imq'\]; accepted: "
                                          r"\[.*'phased'.*\]"):
        check_methods(["jmds", "jmdss", "phased", "imq"])


def test_the_first_compare_node_refuses_before_training(monkeypatch) -> None:
    trained: list[int] = []
    monkeypatch.setattr(nodes, "dense_run", lambda context, seed: trained.append(seed))
    parameters = {"dataset": "digits", "compare": {"methods": ["jmds", "jmdss"]}}
    build_run_config(parameters)  # the configuration itself accepts it ...
    split = make_blobs(n=12, features=64, classes=10)
    meta = {"task": "classification", "num_classes": 10, "input_shape": [64]}
    with pytest.raises(ConfigError, match=r"compare.methods: unknown methods \['jmdss'\]"):
        nodes.dense_runs(split, split, split, meta, parameters)  # ... the comparison not
    assert trained == []
    parameters = {"dataset": "digits", "compare": {"paired": [["jmds", "phasd"]]}}
    with pytest.raises(ConfigError, match=r"compare.paired: unknown methods \['phasd'\]"):
        nodes.dense_runs(split, split, split, meta, parameters)
    assert trained == []
    assert "jmds" in METHODS
