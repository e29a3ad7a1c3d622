"""Tiny contexts, dense runs and call recorders for the unit tests of comparison.methods.

The model is the registry's MLP with one hidden layer of 4 units on 6 features and 3
classes: parameters ``net.fc1.weight`` (4×6, the only prunable weight by default),
``net.fc1.bias`` (4), ``net.out.weight`` (3×4), ``net.out.bias`` (3).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from jmds_pipeline.comparison import methods
from jmds_pipeline.comparison.methods import Context, DenseRun
from jmds_pipeline.config import build_run_config, deep_merge
from jmds_pipeline.data.types import DatasetMeta
from tests.conftest import make_blobs

META = DatasetMeta("blobs", "classification", 3, (6,))
FC1 = "net.fc1.weight"

# the signature of the real retrain, to read a fake's recorded call by parameter name
RETRAIN_SIGNATURE = inspect.signature(methods._retrain_and_measure)


def tiny_config(**sections: Any):  # type: ignore[no-untyped-def]
    parameters: dict[str, Any] = {
        "dataset": "digits", "model": "mlp", "model_options": {"hidden_sizes": [4]},
        "training": {"epochs": 2, "batch_size": 4, "eval_batch_size": 5, "progress": False},
    }
    return build_run_config(deep_merge(parameters, sections))


def tiny_context(n: int = 8, device: str = "cpu", config=None, **kwargs: Any) -> Context:  # type: ignore[no-untyped-def]
    return Context(config if config is not None else tiny_config(), META,
                   make_blobs(n, seed=0), make_blobs(6, seed=1), make_blobs(6, seed=2),
                   device=device, **kwargs)


def shifted_state(context: Context, seed: int, shift: float) -> dict[str, torch.Tensor]:
    return {k: v + shift for k, v in context.build(seed).state_dict().items()}


def tiny_dense(context: Context, seed: int = 3, forgetting: torch.Tensor | None = None
               ) -> DenseRun:
    """A dense run with distinct, hand-chosen numbers: 4 s and 40 samples in all, 1 s and
    10 samples until the rewind point; its final and rewind states differ from the init."""
    n = context.train["id"].numel()
    return DenseRun(seed, shifted_state(context, seed, 1.0), shifted_state(context, seed, -1.0),
                    torch.zeros(n, dtype=torch.long) if forgetting is None else forgetting,
                    seconds=4.0, samples_seen=40, rewind_seconds=1.0, rewind_samples=10)


def same_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    own = model.state_dict()
    return own.keys() == state.keys() and all(torch.equal(own[k], state[k]) for k in state)


class Recorder:
    """Stands in for a function: records every call, answers ``result`` (or
    ``result(*args, **kwargs)`` when it is callable)."""

    def __init__(self, result: Any = None) -> None:
        self.calls: list[tuple[tuple, dict]] = []
        self.result = result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        return self.result(*args, **kwargs) if callable(self.result) else self.result


def retrain_calls(recorder: Recorder, context: Context | None = None,
                  dense: DenseRun | None = None) -> list[dict[str, Any]]:
    """The recorded calls of a fake ``_retrain_and_measure``, by parameter name (defaults
    filled in); each must have been given ``context`` and ``dense`` when they are named."""
    out = []
    for args, kwargs in recorder.calls:
        bound = RETRAIN_SIGNATURE.bind(*args, **kwargs)
        bound.apply_defaults()
        call = dict(bound.arguments)
        assert context is None or call["context"] is context
        assert dense is None or call["dense"] is dense
        out.append(call)
    return out


def fake_retrain(row: dict[str, Any] | None = None) -> Recorder:
    """A fake ``_retrain_and_measure`` answering ({method, **row}, None)."""
    return Recorder(lambda context, dense, masks, kept, extra, method, budget, **kw:
                    ({"method": method, **(row or {})}, None))
