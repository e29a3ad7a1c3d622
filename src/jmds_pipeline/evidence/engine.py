"""``estimate_evidence``: curvature pass, prior, log evidence, weight and sample scores.

Passes over the data (batches of ``config.batch_size``):

1. curvature, on the (sub)sampled kept samples with rescaled weights: one forward, then one
   backward per Λ-vector (C for the exact Fisher, S for MC) taking gradients w.r.t. the
   recorded layer outputs only; K-FAC factors or diagonal GGN accumulate as sums (so they
   can be all-reduced across ranks later);
2. α by Newton on log α (``prior``), then the log evidence (``laplace``);
3. samples: the same forward/backward on all N samples (weight 0 included), giving ℓ_i and
   tr(P⁻¹H_i) at the current θ; skipped with ``score_samples=False`` (then one forward only);
4. weights: Δ_j from diag(P⁻¹) / P_jj (``scores``).

The model runs in eval mode (BatchNorm uses running statistics) and is restored afterwards.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .checks import (
    canonical_names,
    check_data,
    check_finite_weights,
    check_masks,
    resolve_prunable,
)
from .config import EvidenceConfig, EvidenceResult
from .curvature.capture import Handler, build_handlers, capturing
from .curvature.diag import DiagBlock
from .curvature.full import FullCurvature, jacobian_fn
from .curvature.kfac import KronBlock
from .laplace import alpha_objective, evidence_terms
from .likelihood import backward_vectors, output_hessian, per_sample_nll
from .prior import optimise_prior
from .scores import weight_scores
from .subsample import select_subsample


def to_logits(out: object) -> Tensor:
    """Model output -> logits tensor (accepts HF ``ModelOutput`` and tuples)."""
    if isinstance(out, Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)):
        return out[0]
    raise TypeError(f"cannot read logits from a model output of type {type(out).__name__}")


def _group_of(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


class _State:
    """Everything one call needs; keeps ``estimate_evidence`` readable."""

    def __init__(self, model, x, y, config, device, names, masks):
        self.model, self.x, self.y, self.cfg, self.device = model, x, y, config, device
        self.names = names  # id -> canonical name
        self.params = {n: p for n, p in model.named_parameters() if id(p) in names}
        self.masks = masks
        self.gen = torch.Generator(device=device).manual_seed(config.seed)
        self.dtype = next(iter(self.params.values())).dtype
        self.groups: list[str] = []

    def group_index(self, name: str) -> int:
        if self.cfg.prior_mode == "scalar":
            if not self.groups:
                self.groups.append("all")
            return 0
        g = _group_of(name)
        if g not in self.groups:
            self.groups.append(g)
        return self.groups.index(g)

    def batches(self, idx: Tensor, weights: Tensor | None):
        for s in range(0, idx.numel(), self.cfg.batch_size):
            bi = idx[s : s + self.cfg.batch_size]
            xb = self.x[bi].to(self.device)
            yb = self.y[bi].to(self.device)
            wb = None if weights is None else weights[s : s + self.cfg.batch_size]
            yield bi, xb, yb, wb


def _chunk(h: Handler, n_pos: int, limit: int) -> int:
    per = (
        n_pos * (h.d_in + h.d_out) + h.d_in * h.d_out if h.kind in ("linear", "conv", "gpt2") else 0
    )
    return max(1, limit // max(per, 1))


def _sweep(
    st: _State,
    handlers: list[Handler],
    idx: Tensor,
    weights: Tensor | None,
    on_forward,
    on_kron,
    on_diag,
    on_logits=None,
) -> None:
    """One pass: forward with capture, then one backward per Λ-vector; calls the consumers.

    on_forward(h, a, w, r_total); on_kron(h, a, [(g_k, w·ω_k)], idx); on_diag(name, psi, w·ω_k,
    idx), with idx the dataset indices of the chunk and w the per-sample weights.
    """
    bsz = [0]
    kron = [h for h in handlers if h.kron]
    diag = [h for h in handlers if not h.kron]
    count: dict[str, int] = {}
    for h in diag:
        for n in h.params.values():
            count[n] = count.get(n, 0) + 1
    lim = st.cfg.chunk_elements
    with capturing(handlers, bsz):
        for bi, xb, yb, wb in st.batches(idx, weights):
            bsz[0] = xb.shape[0]
            b = xb.shape[0]
            w = (
                torch.ones(b, dtype=st.dtype, device=st.device)
                if wb is None
                else wb.to(st.device, st.dtype)
            )
            with torch.enable_grad():
                logits = to_logits(st.model(xb))
            if on_logits is not None:
                on_logits(bi, logits.detach(), yb)
            if on_forward is not None:
                for h in kron:
                    r_total = sum(h.kron_inputs(inp[:1]).shape[1] for inp, _ in h.calls)
                    for inp, _ in h.calls:
                        c = _chunk(h, r_total, lim)
                        for s in range(0, b, c):
                            on_forward(h, h.kron_inputs(inp[s : s + c]), w[s : s + c], r_total)
            outs = [o for h in handlers for _, o in h.calls]
            # all backward vectors first, so each layer's inputs are unfolded (and, for the
            # leverage, rotated) once per batch rather than once per vector
            per_vector = []
            for v, omega in backward_vectors(logits, yb, st.cfg, st.gen):
                grads = torch.autograd.grad(logits, outs, v, retain_graph=True, allow_unused=True)
                it = iter(grads)
                per_vector.append(({id(h): [next(it) for _ in h.calls] for h in handlers}, omega))
            for h in kron:
                for ci, (inp, _) in enumerate(h.calls):
                    gl = [(gm[id(h)][ci], om) for gm, om in per_vector]
                    gl = [(g, om) for g, om in gl if g is not None]
                    if not gl:
                        continue
                    c = _chunk(h, h.kron_grads(gl[0][0][:1]).shape[1], lim)
                    for s in range(0, b, c):
                        sl = slice(s, s + c)
                        gs = [(h.kron_grads(g[sl]), w[sl] * om) for g, om in gl]
                        on_kron(h, h.kron_inputs(inp[sl]), gs, bi[sl])
            for gmap, omega in per_vector:
                wk = w * omega
                _diag_psi(
                    diag,
                    gmap,
                    count,
                    b,
                    lim,
                    lambda n, p, sl, wk=wk, bi=bi: on_diag(n, p, wk[sl], bi[sl]),
                )
            del per_vector
            del logits, outs
            for h in handlers:
                h.calls.clear()


def _diag_psi(diag, gmap, count, b, lim, consume) -> None:
    """Per-sample gradients of the diagonal parameters, summed over calls and tied modules."""
    if not diag:
        return
    biggest = max(p.numel() for h in diag for p in h.module.parameters(recurse=False))
    c = max(1, lim // max(biggest, 1))
    for s in range(0, b, c):
        sl = slice(s, s + c)
        shared: dict[str, Tensor] = {}
        for h in diag:
            own: dict[str, Tensor] = {}
            for (inp, _), g in zip(h.calls, gmap[id(h)], strict=False):
                if g is None:
                    continue
                for n, p in h.psi(inp[sl], g[sl]).items():
                    own[n] = own[n] + p if n in own else p
            for n, p in own.items():
                if count[n] > 1:
                    shared[n] = shared[n] + p if n in shared else p
                else:
                    consume(n, p, sl)
        for n, p in shared.items():
            consume(n, p, sl)


def _mask_matrix(h: Handler, masks: dict[str, Tensor], device) -> Tensor | None:
    mw = masks.get(h.params["weight"])
    mb = masks.get(h.params["bias"]) if h.has_bias else None
    if mw is None and mb is None:
        return None
    w = h.module.weight
    mw = torch.ones(w.shape, dtype=torch.bool) if mw is None else mw
    mb = torch.ones(h.d_out, dtype=torch.bool) if (h.has_bias and mb is None) else mb
    return h.to_matrix(mw, mb).to(device)


def estimate_evidence(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    sample_weights: Tensor | None = None,
    masks: dict[str, Tensor] | None = None,
    prunable: Sequence[str] | None = None,
    config: EvidenceConfig = EvidenceConfig(),  # noqa: B008 - frozen dataclass
    device: str | torch.device = "cpu",
    score_samples: bool = True,
    score_weights: bool = True,
) -> EvidenceResult:
    """Laplace log evidence of ``model`` at its current weights under masks and sample weights.

    See ``laplace`` for the formula, ``curvature.kfac`` for the K-FAC maths (masked log det,
    peak memory), ``scores`` for Δ_j and ``subsample`` for the NTK subsample. Sample terms:
    c_i = −ℓ_i − ½ tr(P⁻¹H_i) = ∂ log Z/∂s_i, for every sample (weight 0 too). For masked
    K-FAC layers tr(P⁻¹H_i) uses (P⁻¹)_SS for (P_S)⁻¹ (an upper bound); diag and full are exact.
    With ``score_samples=False`` only ℓ_i of samples with s_i > 0 are computed; the other
    sample tensors are NaN. The prior α is a function of the data and the mask only.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    cfg = config
    device = torch.device(device)
    s = check_data(x, y, sample_weights, cfg)
    names = canonical_names(model)
    if not names:
        raise ValueError("model has no parameters that require grad")
    masks_c = check_masks(model, names, masks)
    check_finite_weights(model)
    prunable_l = resolve_prunable(model, names, masks_c, prunable)
    first = next(iter(model.parameters()))
    orig_device, was_training = first.device, model.training
    model.eval()
    model.to(device)
    try:
        st = _State(model, x, y, cfg, device, names, masks_c)
        labels = y if cfg.likelihood == "classification" else None
        cidx, cw = select_subsample(s, labels, cfg.subsample_size, cfg.class_balanced, cfg.seed)
        n_s = float(s.sum())
        t = time.perf_counter()
        if cfg.structure == "full":
            blocks, full = [], _full_curvature(st, cidx, cw)
        else:
            handlers = build_handlers(model, names, cfg.structure == "kfac", cfg.kfac_max_dim)
            blocks, full = _curvature(st, handlers, cidx, cw), None
        timings["curvature"] = time.perf_counter() - t

        t = time.perf_counter()
        n_groups = max(len(st.groups), 1)
        if cfg.prior_precision is not None:
            alpha = torch.full((n_groups,), float(cfg.prior_precision), dtype=torch.float64)
        else:
            init = torch.full((n_groups,), float(cfg.prior_init), dtype=torch.float64)
            alpha = optimise_prior(
                alpha_objective(blocks, full, n_groups),
                init,
                steps=cfg.prior_steps,
                separable=full is None,
            )
        timings["prior"] = time.perf_counter() - t

        t = time.perf_counter()
        n = x.shape[0]
        loss = torch.full((n,), math.nan, dtype=torch.float64)
        lev = torch.full((n,), math.nan, dtype=torch.float64)
        all_idx = torch.arange(n)
        if score_samples:
            lev.zero_()
            if full is not None:
                _full_samples(st, full, alpha, all_idx, loss, lev)
            else:
                _sample_pass(st, handlers, blocks, alpha, all_idx, loss, lev)
        else:
            kept = (s > 0).nonzero().squeeze(1)
            with torch.no_grad():
                for bi, xb, yb, _ in st.batches(kept, None):
                    loss[bi] = per_sample_nll(to_logits(model(xb)), yb, cfg).double().cpu()
        timings["samples"] = time.perf_counter() - t
        kept = s > 0
        log_lik = -float((s[kept] * loss[kept]).sum())
        terms = evidence_terms(blocks, full, alpha, log_lik)

        t = time.perf_counter()
        scores, parts = {}, {}
        if score_weights and prunable_l:
            scores, parts = _weight_scores(st, blocks, full, alpha, prunable_l, n_s)
        timings["weights"] = time.perf_counter() - t
    finally:
        model.to(orig_device)
        model.train(was_training)
    timings["total"] = time.perf_counter() - t_start
    leverage = 0.5 * lev
    if cfg.prior_mode == "scalar":
        prior_out: float | dict[str, float] = float(alpha[0])
    else:
        prior_out = {g: float(a) for g, a in zip(st.groups, alpha, strict=False)}
    return EvidenceResult(
        log_evidence=terms.log_evidence,
        log_likelihood=terms.log_likelihood,
        log_det_ratio=terms.log_det_ratio,
        prior_term=terms.prior_term,
        prior_precision=prior_out,
        num_active=terms.num_active,
        weight_scores=scores,
        weight_score_parts=parts or None,
        sample_contribution=-loss - leverage,
        sample_loss=loss,
        sample_leverage=leverage,
        timings=timings,
    )


# ---------------------------------------------------------------- kfac / diag
def _curvature(
    st: _State, handlers: list[Handler], idx: Tensor, weights: Tensor
) -> list[KronBlock | DiagBlock]:
    dev = st.device
    kron: dict[int, KronBlock] = {}
    diag: dict[str, DiagBlock] = {}
    for h in handlers:
        if h.kron:
            blk = KronBlock(
                h,
                A=torch.zeros(h.d_in, h.d_in, dtype=torch.float64, device=dev),
                G=torch.zeros(h.d_out, h.d_out, dtype=torch.float64, device=dev),
            )
            blk.mask = _mask_matrix(h, st.masks, dev)
            m = blk.mask
            bias = h.module.bias.detach() if h.has_bias else None
            blk.theta = h.to_matrix(h.module.weight.detach(), bias).double()
            blk.theta = blk.theta if m is None else blk.theta * m
            blk.group = st.group_index(h.params["weight"])
            kron[id(h)] = blk
        else:
            for n in h.params.values():
                if n in diag:
                    continue
                p = st.params[n].detach()
                m = st.masks.get(n)
                m = None if m is None else m.to(dev)
                th = p.double() if m is None else p.double() * m
                diag[n] = DiagBlock(
                    n,
                    torch.zeros(p.shape, dtype=torch.float64, device=dev),
                    th,
                    m,
                    st.group_index(n),
                )

    def on_forward(h, a, w, r_total):
        kron[id(h)].accumulate_a(a * math.sqrt(a.shape[1] / r_total), w)

    def on_kron(h, a, gs, bi):
        for g, w in gs:
            kron[id(h)].accumulate_g(g, w)

    def on_diag(name, psi, w, bi):
        diag[name].accumulate(psi, w)

    _sweep(st, handlers, idx, weights, on_forward, on_kron, on_diag)
    total = float(weights.sum())
    for blk in kron.values():
        blk.finalise(total)
    return [*kron.values(), *diag.values()]


def _sample_pass(st, handlers, blocks, alpha, idx, loss, lev) -> None:
    kron = {id(b.handler): b for b in blocks if isinstance(b, KronBlock)}
    diag = {b.name: b for b in blocks if isinstance(b, DiagBlock)}
    a_of = {id(b): float(alpha[b.group]) for b in blocks}
    lim = st.cfg.chunk_elements

    def on_logits(bi, logits, yb):
        loss[bi] = per_sample_nll(logits, yb, st.cfg).double().cpu()

    def on_kron(h, a, gs, bi):
        b = kron[id(h)]
        c = max(1, lim // (h.d_in * h.d_out))
        lev[bi] += b.leverage(a, gs, a_of[id(b)], c).double().cpu()

    def on_diag(name, psi, w, bi):
        b = diag[name]
        lev[bi] += (w * b.leverage(psi, a_of[id(b)])).double().cpu()

    _sweep(st, handlers, idx, None, None, on_kron, on_diag, on_logits)


def _weight_scores(st, blocks, full, alpha, prunable, n_s):
    kind = st.cfg.weight_score
    want = set(prunable)
    scores: dict[str, Tensor] = {}
    parts: dict[str, dict[str, Tensor]] = {}

    def put(name, sc, pt):
        if name in want:
            scores[name] = sc.float().cpu()
            parts[name] = {k: v.float().cpu() for k, v in pt.items()}

    if full is not None:
        a = float(alpha[0]) if len(alpha) == 1 else None
        d = full.theta.numel()
        dinv = torch.full((d,), math.nan, dtype=torch.float64, device=full.h.device)
        dinv[full.idx] = torch.diagonal(full.inverse(alpha.to(full.h.device)))
        hdiag = torch.diagonal(full.h)
        alpha_c = alpha.to(full.h.device)[full.coord_group]
        off = 0
        for name, p in st.params.items():
            k = p.numel()
            sl = slice(off, off + k)
            off += k
            if name not in want:
                continue
            a = float(alpha_c[sl][0])
            m = full.active[sl].reshape(p.shape)
            sc, pt = weight_scores(
                kind,
                full.theta[sl].reshape(p.shape),
                a,
                m,
                diag_inv=dinv[sl].reshape(p.shape),
                diag_p=(hdiag[sl] + alpha_c[sl]).reshape(p.shape),
                diag_h=hdiag[sl].reshape(p.shape),
                num_data=n_s,
            )
            put(name, sc, pt)
        return scores, parts

    for b in blocks:
        a = float(alpha[b.group])
        names = b.handler.params.values() if isinstance(b, KronBlock) else [b.name]
        if not want.intersection(names):
            continue
        alpha_t = torch.tensor(a, dtype=torch.float64, device=b.theta.device)
        dh = b.diag_h()
        sc, pt = weight_scores(
            kind,
            b.theta,
            a,
            b.mask,
            diag_inv=b.diag_inv(alpha_t) if kind == "obs" else None,
            diag_p=dh + a,
            diag_h=dh,
            num_data=n_s,
        )
        if isinstance(b, KronBlock):
            sc_p = b.handler.from_matrix(sc)
            pt_p = {k: b.handler.from_matrix(v) for k, v in pt.items()}
            for name in names:
                put(name, sc_p[name], {k: v[name] for k, v in pt_p.items()})
        else:
            put(b.name, sc, pt)
    return scores, parts


# ---------------------------------------------------------------- full
def _full_curvature(st: _State, idx: Tensor, weights: Tensor) -> FullCurvature:
    names = list(st.params)
    params = {n: p.detach() for n, p in st.params.items()}
    jac = jacobian_fn(st.model, names, to_logits)
    d = sum(p.numel() for p in params.values())
    h = torch.zeros(d, d, dtype=torch.float64, device=st.device)
    for _, xb, yb, wb in st.batches(idx, weights):
        j = jac(params, xb).double()
        with torch.no_grad():
            logits = to_logits(st.model(xb)).double()
        lam = output_hessian(logits, yb, st.cfg)
        lj = lam @ j * wb.to(st.device).reshape(-1, 1, 1)
        h += torch.einsum("bkd,bke->de", j, lj)
    theta = torch.cat([p.reshape(-1) for p in params.values()]).double()
    active = torch.cat(
        [
            st.masks[n].reshape(-1) if n in st.masks else torch.ones(p.numel(), dtype=torch.bool)
            for n, p in params.items()
        ]
    ).to(st.device)
    groups = torch.cat(
        [torch.full((p.numel(),), st.group_index(n), dtype=torch.long) for n, p in params.items()]
    ).to(st.device)
    return FullCurvature(h, theta * active, active, groups)


def _full_samples(st, full: FullCurvature, alpha, idx, loss, lev) -> None:
    names = list(st.params)
    params = {n: p.detach() for n, p in st.params.items()}
    jac = jacobian_fn(st.model, names, to_logits)
    pinv = full.inverse(alpha.to(full.h.device))
    for bi, xb, yb, _ in st.batches(idx, None):
        j = jac(params, xb).double()[:, :, full.idx]
        with torch.no_grad():
            logits = to_logits(st.model(xb))
        loss[bi] = per_sample_nll(logits, yb, st.cfg).double().cpu()
        lam = output_hessian(logits.double(), yb, st.cfg)
        jpj = j @ pinv @ j.transpose(1, 2)
        lev[bi] = (jpj * lam).sum((1, 2)).cpu()


def kron_factors(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    sample_weights: Tensor | None = None,
    config: EvidenceConfig = EvidenceConfig(),  # noqa: B008
    device: str | torch.device = "cpu",
) -> dict[str, tuple[Tensor, Tensor]]:
    """K-FAC factors (A, G) per K-FAC module name (float64, CPU); for tests and inspection."""
    s = check_data(x, y, sample_weights, config)
    names = canonical_names(model)
    was_training = model.training
    model.eval()
    try:
        st = _State(model, x, y, config, torch.device(device), names, {})
        labels = y if config.likelihood == "classification" else None
        idx, w = select_subsample(
            s, labels, config.subsample_size, config.class_balanced, config.seed
        )
        handlers = build_handlers(model, names, True, config.kfac_max_dim)
        blocks = _curvature(st, handlers, idx, w)
    finally:
        model.train(was_training)
    return {
        b.handler.module_name: (b.A.cpu(), b.G.cpu()) for b in blocks if isinstance(b, KronBlock)
    }
