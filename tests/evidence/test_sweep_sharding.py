"""A sharded sweep's MC draws, in one process: rank 1 of 2 simulated by patching the rank.

Under torchrun each rank runs every W-th batch and must advance the MC generator past the
batches the other ranks run, so each batch gets the backward vectors (and therefore the
output gradients) it gets in a single process (``sweep._draw_skipper``). The reference is
the unsharded sweep itself; ``tests/distributed`` checks the same with real processes,
which mutation testing cannot attribute.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jmds_pipeline import distributed
from jmds_pipeline.evidence import EvidenceConfig
from jmds_pipeline.evidence.checks import canonical_names
from jmds_pipeline.evidence.context import Context
from jmds_pipeline.evidence.curvature.capture import build_handlers
from jmds_pipeline.evidence.curvature.sweep import sweep

N = 7


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).eval()
    x = torch.randn(N, 3)
    y = torch.randint(0, 3, (N,))
    cfg = EvidenceConfig(fisher="mc", batch_size=2, seed=11)
    ctx = Context(model, x, y, cfg, torch.device("cpu"), canonical_names(model), {})
    handlers = build_handlers(model, ctx.names, True, cfg.kfac_max_dim)
    return ctx, handlers


def _grads(ctx, handlers, idx) -> dict[int, torch.Tensor]:
    """First row of each batch → the last layer's output gradients of that batch."""
    last = handlers[-1]
    return {int(b.idx[0]): b.calls[id(last)][0][1].clone() for b in sweep(ctx, handlers, idx, None)}


def _as_rank_one(monkeypatch) -> None:
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "group_rank", lambda: 1)


def test_rank_one_gets_the_single_process_draws_of_its_batches(monkeypatch):
    ctx, handlers = _setup()
    single = _grads(ctx, handlers, torch.arange(N))
    assert sorted(single) == [0, 2, 4, 6]  # batches of 2: 0-1, 2-3, 4-5, 6
    ctx, handlers = _setup()
    _as_rank_one(monkeypatch)
    sharded = _grads(ctx, handlers, torch.arange(N))
    assert sorted(sharded) == [2, 6]  # batches 1 and 3
    for first, grads in sharded.items():
        assert torch.equal(grads, single[first])
    # without the skipper (the rank's batches, no generator advance) the draws differ, so
    # the equality above is not automatic
    ctx, handlers = _setup()
    monkeypatch.setattr(distributed, "is_distributed", lambda: False)
    unskipped = _grads(ctx, handlers, torch.arange(N))
    assert sorted(unskipped) == [2, 6]
    assert not torch.equal(unskipped[2], single[2])


@pytest.mark.parametrize("first_pass", [1, 3])
def test_a_later_sweep_continues_the_single_process_stream(monkeypatch, first_pass):
    """The engine sweeps twice with one generator (curvature, then samples): batches of an
    earlier pass that rank 1 did not run (a one-sample pass included) still advance it."""
    ctx, handlers = _setup(seed=1)
    _grads(ctx, handlers, torch.arange(first_pass))
    single = _grads(ctx, handlers, torch.arange(N))
    ctx, handlers = _setup(seed=1)
    _as_rank_one(monkeypatch)
    _grads(ctx, handlers, torch.arange(first_pass))
    sharded = _grads(ctx, handlers, torch.arange(N))
    assert sorted(sharded) == [2, 6]
    for first, grads in sharded.items():
        assert torch.equal(grads, single[first])


def test_no_skipper_for_an_empty_pass(monkeypatch):
    """An empty index set runs no batch and draws nothing, sharded or not."""
    ctx, handlers = _setup()
    _as_rank_one(monkeypatch)
    before = ctx.gen.get_state().clone()
    assert _grads(ctx, handlers, torch.arange(0)) == {}
    assert torch.equal(ctx.gen.get_state(), before)
