"""The computations the distributed tests run twice: in one process, and under torchrun.

Each case builds its own seeded data and model, so a rank and the single process start
from the same bits; ``worker`` runs a case on every rank and saves each rank's result.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from jmds_pipeline.config import TrainingConfig
from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.evidence.engine import kron_factors
from jmds_pipeline.evidence.stationarity import log_joint_stationarity
from jmds_pipeline.training.loop import cpu_state, train_model
from tests.conftest import make_blobs

# 203 samples, batches of 32: 7 batches, so the two ranks get 4 and 3 (and, in training,
# the last global batch of 11 rows splits 6 / 5).
N_SAMPLES, EVIDENCE_BATCH = 203, 32


def _blobs() -> dict[str, torch.Tensor]:
    return make_blobs(n=N_SAMPLES, features=6, classes=3, seed=0)


def _signals(n: int = 150) -> dict[str, torch.Tensor]:
    """Four classes of noisy 1-D templates, (N, 2, 16), for a model with weight sharing."""
    gen = torch.Generator().manual_seed(1)
    templates = torch.randn(4, 2, 16, generator=gen)
    y = torch.arange(n) % 4
    x = templates[y] + 0.5 * torch.randn(n, 2, 16, generator=gen)
    return {"x": x, "y": y, "id": torch.arange(n) + 5000}


def _mlp() -> nn.Module:
    torch.manual_seed(0)  # LayerNorm gives the kfac backend a diagonal block too
    return nn.Sequential(nn.Linear(6, 12), nn.LayerNorm(12), nn.ReLU(), nn.Linear(12, 3))


def _conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 4))


def _masks(model: nn.Module) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return {
        n: torch.rand(p.shape, generator=gen) > 0.3
        for n, p in model.named_parameters()
        if n.endswith("weight") and p.dim() > 1
    }


EVIDENCE_CASES: dict[str, tuple[str, dict[str, Any], bool]] = {
    # name: (model, evidence settings, masked)
    "kfac_exact": ("mlp", {"structure": "kfac", "fisher": "exact"}, True),
    "kfac_mc": ("mlp", {"structure": "kfac", "fisher": "mc", "mc_samples": 2}, False),
    "kfac_conv_mc": ("conv", {"structure": "kfac", "fisher": "mc", "mc_samples": 3}, True),
    "diag_layerwise": ("mlp", {"structure": "diag", "prior_mode": "layerwise"}, False),
    "full": ("mlp", {"structure": "full"}, True),
}


def evidence_case(name: str) -> dict[str, Any]:
    """Evidence, factors, α, per-sample terms and weight scores of one case (CPU tensors)."""
    kind, settings, masked = EVIDENCE_CASES[name]
    data = _blobs() if kind == "mlp" else _signals()
    model = _mlp() if kind == "mlp" else _conv()
    n = data["y"].numel()
    weights = torch.ones(n)
    weights[::7] = 0.0  # dropped samples: scored, but outside the curvature and likelihood
    config = EvidenceConfig(
        batch_size=EVIDENCE_BATCH, subsample_size=n // 2, seed=3, weight_score="diag", **settings
    )
    masks = _masks(model) if masked else None
    rows_seen = [0]  # samples this process's model ran on: proves the work was shared
    model.register_forward_pre_hook(
        lambda _m, args: rows_seen.__setitem__(0, rows_seen[0] + args[0].shape[0])
    )
    result = estimate_evidence(
        model, data["x"], data["y"], sample_weights=weights, masks=masks, config=config
    )
    out: dict[str, Any] = {
        "log_evidence": result.log_evidence,
        "log_likelihood": result.log_likelihood,
        "log_det_ratio": result.log_det_ratio,
        "prior_precision": result.prior_precision,
        "sample_contribution": result.sample_contribution,
        "sample_loss": result.sample_loss,
        "sample_leverage": result.sample_leverage,
        "weight_scores": dict(result.weight_scores),
        "rows_seen": rows_seen[0],
    }
    if settings["structure"] == "kfac":
        out["factors"] = kron_factors(
            model, data["x"], data["y"], sample_weights=weights, config=config
        )
    alpha = result.prior_precision
    out["stationarity"] = log_joint_stationarity(
        model,
        data["x"],
        data["y"],
        sample_weights=weights,
        masks=masks,
        batch_size=EVIDENCE_BATCH,
        alpha=alpha if isinstance(alpha, float) else 1.0,
    ).as_dict()
    # what a round decides from them: the half of the samples and weights with top scores
    out["kept_ids"] = data["id"][result.sample_contribution.topk(n // 2).indices].sort().values
    out["masks"] = {
        k: v >= v.flatten().kthvalue(max(1, v.numel() // 2)).values
        for k, v in result.weight_scores.items()
    }
    return out


TRAIN_CASES: dict[str, dict[str, Any]] = {
    # SGD + momentum + weight decay + clipping, masks, a kept subset and the prior term
    "mlp_sgd": {"model": "mlp", "optimizer": "sgd", "lr": 0.05, "grad_clip": 1.0, "prior": 3.0},
    # AdamW with the random-shift augmentation on a conv net
    "conv_adamw_shift": {
        "model": "conv",
        "optimizer": "adamw",
        "lr": 0.01,
        "augment": "shift",
        "max_shift": 3,
    },
}


def train_case(name: str) -> dict[str, Any]:
    """Weights, history and the ids drawn after a short masked training run."""
    spec = dict(TRAIN_CASES[name])
    kind, prior = spec.pop("model"), spec.pop("prior", None)
    data = _blobs() if kind == "mlp" else _signals()
    model = _mlp() if kind == "mlp" else _conv()
    kept = torch.ones(data["y"].numel(), dtype=torch.bool)
    kept[::5] = False
    config = TrainingConfig(epochs=3, batch_size=16, progress=False, weight_decay=1e-3, **spec)
    drawn: list[torch.Tensor] = []
    outcome = train_model(
        model,
        data,
        config,
        seed=4,
        masks=_masks(model),
        kept=kept,
        prior_precision=prior,
        on_batch=lambda batch, logits: drawn.append(
            torch.cat([batch["id"][:, None].double(), logits.double()], 1)
        ),
    )
    return {
        "state": cpu_state(model),
        "history": outcome.history,
        "drawn": torch.cat(drawn),
        "samples_seen": outcome.samples_seen,
    }
