"""The leaf registry of method names agrees with the methods the comparison runs."""

from __future__ import annotations

import pytest

from jmds_pipeline.comparison.methods import METHODS
from jmds_pipeline.comparison.names import METHOD_KINDS
from jmds_pipeline.config import CompareConfig


def test_registry_names_and_kinds_match_the_runners() -> None:
    assert {name: kind for name, (_, kind) in METHODS.items()} == METHOD_KINDS


def test_config_rejects_an_unknown_method_by_name() -> None:
    with pytest.raises(ValueError, match=r"unknown methods \['jmdss'\]; accepted: .*'phased'"):
        CompareConfig(methods=("jmds", "jmdss"))
    assert CompareConfig(methods=("jmds", "phased")).methods == ("jmds", "phased")
