"""Under torchrun only the sequential runner is accepted (saves are ordered barriers)."""

from __future__ import annotations

import pytest

from jmds_pipeline import distributed, hooks
from jmds_pipeline.config import ConfigError


@pytest.mark.parametrize("joined", [True, False])
def test_a_thread_runner_is_refused_only_under_torchrun(monkeypatch, joined):
    monkeypatch.setattr(distributed, "is_distributed", lambda: joined)
    threads = {"runner": "<kedro.runner.thread_runner.ThreadRunner object at 0x1>"}
    if joined:
        expected = "ThreadRunner object at 0x1> under torchrun; accepted"
        with pytest.raises(ConfigError, match=expected):
            hooks._runner_check(threads)
    else:
        hooks._runner_check(threads)
    for fine in ("None", "<kedro.runner.sequential_runner.SequentialRunner object at 0x1>"):
        hooks._runner_check({"runner": fine})
