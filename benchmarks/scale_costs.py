"""FLOPs of a whole JMDS run for one model, counted on the meta device (no memory, no data).

``profile_model`` counts, with ``torch.utils.flop_counter.FlopCounterMode``, a forward pass,
a training step (forward + backward to weights and activations) and the evidence's
backward to the layer outputs only, and records the weight-sharing positions R of every
call of every layer the engine hooks. ``evidence.footprint`` supplies the engine's K-FAC /
diagonal choice and its per-sample leverage method. ``run_costs`` then walks the JMDS
schedule of a run configuration (dense training, rounds, evidence passes, final retrain,
the evaluation's evidence) and returns FLOPs per phase and per kind of work, because each
kind runs at a different rate on a GPU:

- ``tensor``: forward and backward passes (bf16 under ``--env gpu``);
- ``fp32``: factor accumulation and per-sample leverage products (the captured tensors
  are cast back to float32 before any product);
- ``eigh``: float64 eigendecompositions of the factors, ``EIGH_FLOPS_PER_D3`` · d³ each;
- ``fp64``: float64 products of the prior's Newton steps on masked layers (diag P⁻¹);
- ``elementwise``: per-sample diagonal-GGN work (norm layers, embeddings, fallbacks),
  memory-bound, counted in element operations.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from unittest import mock

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from jmds_pipeline.config import RunConfig
from jmds_pipeline.evidence.checks import canonical_names
from jmds_pipeline.evidence.curvature.capture import KRON_KINDS, build_handlers
from jmds_pipeline.evidence.footprint import LayerFootprint, layer_footprints, leverage_method
from jmds_pipeline.models import prunable_parameter_names
from jmds_pipeline.sparsity.schedules import round_targets

KINDS = ("tensor", "fp32", "eigh", "fp64", "elementwise")
# Log det evaluations per evidence call (the prior's Newton steps and the final log Z): the
# CPU validation of benchmarks/scale.py counts KronBlock.logdet calls per layer
# (scale.json: 13 on GPT-2 tiny). With a partial mask each K-FAC call forms diag(P⁻¹) and
# the steps backpropagate twice through it (gradient and Hessian in log α): ~3 evaluations
# of its products per call. A masked diagonal block's log det gathers its active entries
# (nonzero, index, add, log, sum: ~6 element operations each) on every call, even when the
# mask is all ones (only the K-FAC blocks take a shortcut then).
PRIOR_EVALS_PER_CALL = 3
DEFAULT_PRIOR_CALLS = 13
DIAG_LOGDET_OPS = 6


@dataclass
class ModelProfile:
    forward: float  # FLOPs per sample, eval-mode forward
    train_step: float  # FLOPs per sample, forward + full backward
    backward_to_outputs: float  # FLOPs per sample per backward vector (activations only)
    footprints: list[LayerFootprint]
    positions: dict[str, list[int]]  # module -> R of each call, per sample
    prunable: set[str]  # modules whose weight JMDS masks
    parameters: int
    # module -> (parameters it holds, tied ones included; width of its weight's last dim)
    sizes: dict[str, tuple[int, int]]


@contextlib.contextmanager
def _meta_friendly_masks() -> Iterator[None]:
    """transformers' causal-mask builder checks for packed sequences with a data-dependent
    ``.all()``, which a meta tensor cannot answer; under tracing it skips the check (and
    builds the same plain causal mask: the FLOPs are those of a CPU run, 22.4 GFLOPs for
    GPT-2 small on 128 tokens either way)."""
    masking = sys.modules.get("transformers.masking_utils")
    if masking is None or not hasattr(masking, "is_tracing"):
        yield
        return
    with mock.patch.object(masking, "is_tracing", lambda *_a, **_k: True):
        yield


def _count(fn: Callable[[], None]) -> int:
    # the math backend spells attention out as matmuls, which the counter knows
    with (
        _meta_friendly_masks(),
        sdpa_kernel([SDPBackend.MATH]),
        FlopCounterMode(display=False) as counter,
    ):
        fn()
    return counter.get_total_flops()


def _logits(out: object) -> Tensor:
    return out if isinstance(out, Tensor) else out.logits  # type: ignore[attr-defined]


def profile_model(model: nn.Module, example: Tensor, kfac_max_dim: int = 8192) -> ModelProfile:
    """Counts per sample for ``model`` on a batch ``example`` (both may be on ``meta``)."""
    batch = example.shape[0]
    names = canonical_names(model)
    handlers = build_handlers(model, names, True, kfac_max_dim)
    positions: dict[str, list[int]] = {h.module_name: [] for h in handlers}
    order: list[str] = []

    def recorder(h):  # type: ignore[no-untyped-def]
        def hook(_m: nn.Module, _inputs: tuple, out: Tensor) -> None:
            order.append(h.module_name)
            shape = out.shape[2:] if h.kind == "conv" else out.shape[1:-1]
            positions[h.module_name].append(math.prod(shape) if len(shape) else 1)

        return hook

    model.eval()
    removers = [h.module.register_forward_hook(recorder(h)) for h in handlers]
    try:
        with torch.no_grad():
            forward = _count(lambda: model(example))
    finally:
        for r in removers:
            r.remove()
    first = dict(model.named_modules())[order[0]]

    model.train()
    train_step = _count(lambda: _logits(model(example)).float().sum().backward())
    model.zero_grad(set_to_none=True)

    # the evidence backpropagates to the recorded layer outputs, never to the weights
    model.eval()
    grads = {p: p.requires_grad for p in model.parameters()}
    for p in grads:
        p.requires_grad_(False)
    leaf = first.register_forward_hook(lambda _m, _i, out: out.detach().requires_grad_(True))
    try:
        backward = _count(lambda: _logits(model(example)).float().sum().backward()) - forward
    finally:
        leaf.remove()
        for p, flag in grads.items():
            p.requires_grad_(flag)
    sizes = {}
    for h in handlers:
        own = list(h.module.parameters(recurse=False))
        sizes[h.module_name] = (sum(q.numel() for q in own), h.module.weight.shape[-1])
    prunable_weights = set(prunable_parameter_names(model))
    prunable = {h.module_name for h in handlers if h.params.get("weight") in prunable_weights}
    return ModelProfile(
        forward=forward / batch,
        train_step=train_step / batch,
        backward_to_outputs=backward / batch,
        footprints=layer_footprints(model, kfac_max_dim),
        positions={m: [r for r in rs] for m, rs in positions.items()},
        prunable=prunable,
        parameters=sum(p.numel() for p in model.parameters()),
        sizes=sizes,
    )


@dataclass
class Costs:
    """FLOPs (element operations for ``elementwise``) by kind of work."""

    flops: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KINDS, 0.0))

    def add(self, kind: str, amount: float) -> None:
        self.flops[kind] += float(amount)

    def merge(self, other: Costs, times: float = 1.0) -> None:
        for kind, amount in other.flops.items():
            self.flops[kind] += times * amount

    @property
    def total(self) -> float:
        return sum(self.flops.values())


def _diag_psi(p: ModelProfile, f: LayerFootprint, vectors: int) -> tuple[float, float]:
    """(fp32 FLOPs, element ops) of one sample's ψ and its GGN/leverage update for a
    diagonal module (a tied one too: its ψ is computed, then added to the owner's)."""
    numel, width = p.sizes[f.module]
    matmul, elements = 0.0, 3.0 * numel * vectors  # square, weight, add
    for r in p.positions[f.module]:
        if f.kind in KRON_KINDS:  # a fallback Linear/Conv: ψ = Σ_r g aᵀ
            matmul += 2.0 * r * f.d_in * f.d_out * vectors
        elif f.kind == "embedding":  # zeroed per-sample table, then a scatter of R rows
            elements += vectors * (numel + r * width)
        else:  # norm layers: (g · x̂) summed over positions
            elements += 2.0 * r * numel * vectors
    return matmul, elements


def curvature_pass(p: ModelProfile, samples: float, vectors: int) -> Costs:
    """Pass 1 on ``samples`` curvature samples, then the eigendecompositions."""
    c = Costs()
    c.add("tensor", samples * (p.forward + vectors * p.backward_to_outputs))
    for f in p.footprints:
        rs = p.positions[f.module]
        if f.kron:
            c.add("fp32", samples * sum(2.0 * r * (f.d_in**2 + vectors * f.d_out**2) for r in rs))
            c.add("eigh", f.eigh_flops)
        else:
            matmul, elements = _diag_psi(p, f, vectors)
            c.add("fp32", samples * matmul)
            c.add("elementwise", samples * elements)
    return c


def sample_pass(p: ModelProfile, samples: float, vectors: int, masked: bool) -> Costs:
    """Pass 3: ℓ_i and tr(P⁻¹H_i) for ``samples`` samples (the leverage method per layer
    is the engine's; prunable layers carry a mask from round 1 on)."""
    c = Costs()
    c.add("tensor", samples * (p.forward + vectors * p.backward_to_outputs))
    for f in p.footprints:
        rs = p.positions[f.module]
        if f.kron:
            is_masked = masked and f.module in p.prunable
            macs = sum(leverage_method(f.d_in, f.d_out, r, vectors, is_masked)[1] for r in rs)
            c.add("fp32", samples * 2.0 * macs)
        else:
            matmul, elements = _diag_psi(p, f, vectors)
            c.add("fp32", samples * matmul)
            c.add("elementwise", samples * elements)
    return c


def prior_pass(p: ModelProfile, calls: int, partial: bool = True) -> Costs:
    """``calls`` log det evaluations of the masked layers: diag(P⁻¹) = (U∘U) W (V∘V)ᵀ per
    K-FAC layer when its mask is ``partial`` (an all-ones mask takes the eigenvalue
    shortcut), the gathered log det of each masked diagonal block in any case."""
    c = Costs()
    for f in p.footprints:
        if f.module not in p.prunable:
            continue
        if f.kron and partial:
            c.add(
                "fp64",
                calls * PRIOR_EVALS_PER_CALL * 2.0 * (f.d_out**2 * f.d_in + f.d_out * f.d_in**2),
            )
        elif f.params:
            c.add("elementwise", calls * DIAG_LOGDET_OPS * f.params)
    return c


@dataclass
class RunPlan:
    """Sample counts of one JMDS run, from its configuration."""

    n_train: int
    n_val: int
    dense_epochs: int
    rounds: int
    round_epochs: int
    final_epochs: int
    kept_after: list[float]  # kept samples after round r (index 0: before round 1)
    subsample: int
    vectors: int  # backward vectors per sample (1 for the MC Fisher)


def plan_of(
    config: RunConfig, n_train: int, n_val: int, num_classes: int, language: bool
) -> RunPlan:
    jmds = config.jmds
    ev = jmds.evidence
    targets = (
        round_targets(jmds.target_data_sparsity, jmds.rounds, jmds.schedule)
        if jmds.prune_data
        else [0.0] * jmds.rounds
    )
    kept = [float(n_train)] + [n_train * (1.0 - s) for s in targets]
    exact = ev.fisher == "exact" and not language and num_classes <= 32
    return RunPlan(
        n_train=n_train,
        n_val=n_val,
        dense_epochs=config.training.epochs,
        rounds=jmds.rounds,
        round_epochs=jmds.round_epochs,
        final_epochs=jmds.final_epochs or config.training.epochs,
        kept_after=kept,
        subsample=ev.subsample_size or n_train,
        vectors=num_classes if exact else 1,
    )


def run_costs(
    p: ModelProfile, plan: RunPlan, prior_calls: int = DEFAULT_PRIOR_CALLS
) -> dict[str, Costs]:
    """FLOPs of each phase of the run: dense, rounds' training, evidence, final retrain."""
    k = plan.vectors
    phases = {name: Costs() for name in ("dense", "round_training", "evidence", "retrain")}
    phases["dense"].add("tensor", plan.dense_epochs * plan.n_train * p.train_step)
    phases["dense"].add("tensor", plan.dense_epochs * plan.n_val * p.forward)
    for r in range(1, plan.rounds + 1):
        kept_in = plan.kept_after[r - 1]
        if r > 1:
            phases["round_training"].add("tensor", plan.round_epochs * kept_in * p.train_step)
            phases["round_training"].add("tensor", plan.n_val * p.forward)
        m = min(plan.subsample, kept_in)
        ev = phases["evidence"]
        # phase B: curvature, ℓ_i of the kept samples, stationarity, prior, weight scores
        ev.merge(curvature_pass(p, m, k))
        ev.add("tensor", kept_in * (p.forward + p.train_step))
        ev.merge(prior_pass(p, prior_calls, partial=r > 1))  # round 1: all-ones masks
        # phase C under the new mask: curvature again, every sample's c_i
        ev.merge(curvature_pass(p, m, k))
        ev.merge(sample_pass(p, plan.n_train, k, masked=True))
        ev.merge(prior_pass(p, prior_calls))
    final_kept = plan.kept_after[-1]
    phases["retrain"].add("tensor", plan.final_epochs * final_kept * p.train_step)
    phases["retrain"].add("tensor", plan.final_epochs * plan.n_val * p.forward)
    # the evaluation node's evidence of the final model (no sample or weight scores)
    phases["evidence"].merge(curvature_pass(p, min(plan.subsample, final_kept), k))
    phases["evidence"].add("tensor", final_kept * p.forward)
    phases["evidence"].merge(prior_pass(p, prior_calls))
    return phases
