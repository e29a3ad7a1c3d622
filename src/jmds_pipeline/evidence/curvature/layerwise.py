"""The ``kfac`` and ``diag`` backends: one block per layer (K-FAC) or per parameter (diag).

Both data passes are ``sweep``s: a forward with capture and one batched backward of the
Λ-vectors per batch. The curvature pass adds the K-FAC factors (A from layer inputs, G from
output gradients) and the diagonal GGN (from per-sample gradients ψ) as sums, so they can
be all-reduced across ranks later; the sample pass turns the same captured tensors into ℓ_i
and tr(P⁻¹H_i) with each block's ``leverage``.

Chunking: a layer's per-sample tensors (unfolded conv patches, per-sample matrices of the
exact leverage, per-sample gradients) are processed a chunk of samples at a time so that
no chunk exceeds ``chunk_elements`` elements.
"""

from __future__ import annotations

import torch
from torch import Tensor

from jmds_pipeline import distributed

from ..context import Context
from ..likelihood import per_sample_nll
from .capture import Handler, build_handlers
from .diag import DiagBlock
from .kfac import KronBlock
from .sweep import CapturedBatch, sweep


class LayerwiseCurvature:
    """K-FAC layers (``kron=True``) and diagonal blocks for everything K-FAC does not cover."""

    separable_prior = True  # each block belongs to one prior group

    def __init__(self, ctx: Context, kron: bool) -> None:
        self.ctx = ctx
        self.handlers = build_handlers(ctx.model, ctx.names, kron, ctx.cfg.kfac_max_dim)
        self.kron: dict[int, KronBlock] = {}  # id(handler) -> block
        self.diag: dict[str, DiagBlock] = {}  # canonical name -> block
        self._build_blocks()
        # a parameter shared by several diagonal handlers (tied embeddings) sums their ψ first
        self._owners: dict[str, int] = {}
        for h in self.handlers:
            if not h.kron:
                for n in h.params.values():
                    self._owners[n] = self._owners.get(n, 0) + 1

    @property
    def blocks(self) -> list[KronBlock | DiagBlock]:
        return [*self.kron.values(), *self.diag.values()]

    def _build_blocks(self) -> None:
        ctx, dev = self.ctx, self.ctx.device
        for h in self.handlers:
            if h.kron:
                mask = _mask_matrix(h, ctx.masks, dev)
                bias = h.module.bias.detach() if h.has_bias else None
                theta = h.to_matrix(h.module.weight.detach(), bias).double()
                self.kron[id(h)] = KronBlock(
                    h,
                    A=torch.zeros(h.d_in, h.d_in, dtype=torch.float64, device=dev),
                    G=torch.zeros(h.d_out, h.d_out, dtype=torch.float64, device=dev),
                    theta=theta if mask is None else theta * mask,
                    mask=mask,
                    group=ctx.groups.index(h.params["weight"]),
                )
                continue
            for n in h.params.values():
                if n in self.diag:
                    continue
                p = ctx.params[n].detach()
                m = ctx.masks.get(n)
                m = None if m is None else m.to(dev)
                th = p.double() if m is None else p.double() * m
                h_sum = torch.zeros(p.shape, dtype=torch.float64, device=dev)
                self.diag[n] = DiagBlock(n, h_sum, th, m, ctx.groups.index(n))

    # ---------------------------------------------------------------- pass 1
    def fit(self, idx: Tensor, weights: Tensor) -> None:
        """Pass 1: K-FAC factors and GGN diagonals on the curvature samples."""
        lim = self.ctx.cfg.chunk_elements
        for batch in sweep(self.ctx, self.handlers, idx, weights):
            w = batch.weights.to(self.ctx.dtype)
            wk = torch.tensor(batch.omega, dtype=w.dtype, device=w.device)[:, None] * w
            for h in self.handlers:
                if not h.kron:
                    continue
                blk = self.kron[id(h)]
                calls = batch.calls[id(h)]
                r_total = sum(h.kron_inputs(inp[:1]).shape[1] for inp, _ in calls)
                for inp, g in calls:
                    c = _chunk(h, r_total, 1, lim)
                    for s in range(0, inp.shape[0], c):
                        a = h.kron_inputs(inp[s : s + c])
                        # Σ_r a aᵀ / R_total over all calls of a layer applied several times
                        blk.accumulate_a(a, w[s : s + c], a.shape[1] / r_total)
                    if g is not None:
                        blk.accumulate_g(_kron_grads(h, g), wk)
            for name, psi, sl, k in self._diag_psi(batch):
                self.diag[name].accumulate(psi, wk[k, sl])
        # each rank summed its own batches (Context.batches): the factors are sums over
        # samples, so adding the ranks' sums gives the single-process factors
        sums = [t for blk in self.kron.values() for t in (blk.A, blk.G)]
        distributed.all_reduce_sum_(sums + [blk.h for blk in self.diag.values()])
        total = float(weights.sum())
        for blk in self.kron.values():
            blk.finalise(total)

    # ---------------------------------------------------------------- pass 3
    def score_samples(self, alpha: Tensor, idx: Tensor, loss: Tensor, leverage: Tensor) -> None:
        """Pass 3: ℓ_i and tr(P⁻¹H_i) for the samples ``idx``, written into the outputs."""
        ctx = self.ctx
        lim, mode, masked = ctx.cfg.chunk_elements, ctx.cfg.leverage, ctx.cfg.masked_leverage
        rank = ctx.cfg.leverage_rank
        for batch in sweep(ctx, self.handlers, idx, None):
            rows = batch.idx
            loss[rows] = per_sample_nll(batch.logits, batch.y, ctx.cfg).double().cpu()
            wk = torch.tensor(batch.omega, dtype=ctx.dtype, device=ctx.device)
            wk = wk[:, None].expand(-1, rows.numel())
            trace = torch.zeros(rows.numel(), dtype=torch.float64, device=ctx.device)
            for h in self.handlers:
                if not h.kron:
                    continue
                blk = self.kron[id(h)]
                for inp, g in batch.calls[id(h)]:
                    if g is None:
                        continue
                    g = _kron_grads(h, g)
                    k, _, r, _ = g.shape
                    method, _ = blk.leverage_cost(r, k, mode, masked, rank)
                    # the exact methods hold K per-sample d_out×d_in matrices per chunk
                    per = r * (h.d_in + k * h.d_out)
                    per += 0 if method == "kron" else k * h.d_in * h.d_out
                    c = max(1, lim // max(per, 1))
                    for s in range(0, inp.shape[0], c):
                        sl = slice(s, s + c)
                        a = h.kron_inputs(inp[sl])
                        trace[sl] += blk.leverage(
                            a, g[:, sl], wk[:, sl], alpha, method, rank
                        ).double()
            for name, psi, sl, k in self._diag_psi(batch):
                trace[sl] += (wk[k, sl] * self.diag[name].leverage(psi, alpha)).double()
            leverage[rows] = trace.cpu()

    # ---------------------------------------------------------------- helpers
    def _diag_psi(self, batch: CapturedBatch):
        """Yield (name, ψ chunk, sample slice, k): per-sample gradients of the diagonal
        parameters for backward vector k, summed over calls and over tied modules."""
        diag = [h for h in self.handlers if not h.kron]
        if not diag:
            return
        biggest = max(p.numel() for h in diag for p in h.module.parameters(recurse=False))
        c = max(1, self.ctx.cfg.chunk_elements // max(biggest, 1))
        b = batch.idx.numel()
        for k in range(len(batch.omega)):
            for s in range(0, b, c):
                sl = slice(s, s + c)
                shared: dict[str, Tensor] = {}
                for h in diag:
                    own: dict[str, Tensor] = {}
                    for inp, g in batch.calls[id(h)]:
                        if g is None:
                            continue
                        for n, p in h.psi(inp[sl], g[k, sl]).items():
                            own[n] = own[n] + p if n in own else p
                    for n, p in own.items():
                        if self._owners[n] > 1:
                            shared[n] = shared[n] + p if n in shared else p
                        else:
                            yield n, p, sl, k
                for n, p in shared.items():
                    yield n, p, sl, k


def _kron_grads(h: Handler, g: Tensor) -> Tensor:
    """(K, b, *out) output gradients -> (K, b, R, d_out)."""
    k, b = g.shape[:2]
    flat = h.kron_grads(g.reshape(k * b, *g.shape[2:]))
    return flat.reshape(k, b, *flat.shape[1:])


def _chunk(h: Handler, n_pos: int, k: int, limit: int) -> int:
    """Samples per chunk so that unfolded inputs and gradients stay within ``limit``."""
    per = n_pos * (h.d_in + k * h.d_out) + h.d_in * h.d_out
    return max(1, limit // max(per, 1))


def _mask_matrix(h: Handler, masks: dict[str, Tensor], device: torch.device) -> Tensor | None:
    mw = masks.get(h.params["weight"])
    mb = masks.get(h.params["bias"]) if h.has_bias else None
    if mw is None and mb is None:
        return None
    w = h.module.weight
    mw = torch.ones(w.shape, dtype=torch.bool) if mw is None else mw
    mb = torch.ones(h.d_out, dtype=torch.bool) if (h.has_bias and mb is None) else mb
    return h.to_matrix(mw, mb).to(device)
