"""Fixed tiny models, data and configs whose evidence numbers are pinned in
``data/engine_reference.pt`` (written by ``python -m tests.evidence.reference_cases`` from the
engine as it was before the curvature-protocol refactor, commit 4317ee5; ``reg_kfac`` was
recomputed after the fix of multi-output regression's backward vectors, one per output).

Models are float64 and their weights and data are stored in the file, so the reference does
not depend on initialisation or training being reproducible across machines.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence

REFERENCE = Path(__file__).parent / "data" / "engine_reference.pt"
FIELDS = ("log_evidence", "log_likelihood", "log_det_ratio", "prior_term", "num_active")


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 4)).double()


def cnn1d() -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv1d(4, 5, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 5, 3),
    ).double()


def cnn2d() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Conv2d(3, 4, 2, stride=2, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, 3),
    ).double()


def reg_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).double()


BUILDERS = {"mlp": mlp, "cnn1d": cnn1d, "cnn2d": cnn2d, "reg_mlp": reg_mlp}


def _data(name: str, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if name == "mlp":
        x = torch.randn(40, 6, generator=g, dtype=torch.float64)
        return x, torch.randint(0, 4, (40,), generator=g)
    if name == "cnn1d":
        x = torch.randn(30, 2, 11, generator=g, dtype=torch.float64)
        return x, torch.randint(0, 3, (30,), generator=g)
    if name == "cnn2d":
        x = torch.randn(24, 2, 4, 4, generator=g, dtype=torch.float64)
        return x, torch.randint(0, 3, (24,), generator=g)
    x = torch.randn(30, 3, generator=g, dtype=torch.float64)
    return x, torch.randn(30, 2, generator=g, dtype=torch.float64)


def _masks(name: str, model: nn.Module) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    params = dict(model.named_parameters())
    keys = {"mlp": ["0.weight", "2.bias"], "cnn1d": ["2.weight"], "cnn2d": ["3.weight"]}[name]
    return {k: torch.rand(params[k].shape, generator=g) > 0.3 for k in keys}


# (case name, model, config kwargs, call kwargs: "masks" / "weights" / "score_samples")
CASES: list[tuple[str, str, dict, dict]] = [
    ("mlp_kfac_exact", "mlp", {"prior_precision": 1.0}, {}),
    ("mlp_kfac_mc", "mlp", {"fisher": "mc", "mc_samples": 3}, {}),
    ("mlp_kfac_masked", "mlp", {}, {"masks": True}),
    ("mlp_kfac_weighted_sub", "mlp", {"subsample_size": 16}, {"weights": True}),
    ("mlp_kfac_layerwise", "mlp", {"prior_mode": "layerwise", "weight_score": "diag"}, {}),
    ("mlp_diag", "mlp", {"structure": "diag", "weight_score": "first_order"}, {"masks": True}),
    ("mlp_full", "mlp", {"structure": "full"}, {}),
    ("mlp_full_masked", "mlp", {"structure": "full", "prior_mode": "layerwise"}, {"masks": True}),
    ("mlp_no_samples", "mlp", {}, {"score_samples": False}),
    ("cnn1d_kfac_exact", "cnn1d", {}, {}),
    ("cnn1d_kfac_mc", "cnn1d", {"fisher": "mc", "mc_samples": 2}, {}),
    ("cnn1d_kfac_masked", "cnn1d", {"chunk_elements": 64}, {"masks": True}),
    ("cnn1d_diag", "cnn1d", {"structure": "diag"}, {}),
    ("cnn2d_kfac_exact", "cnn2d", {"batch_size": 7}, {}),
    ("cnn2d_kfac_masked", "cnn2d", {"fisher": "mc"}, {"masks": True}),
    ("reg_kfac", "reg_mlp", {"likelihood": "regression", "sigma_noise": 0.7}, {}),
    ("reg_full", "reg_mlp", {"likelihood": "regression", "structure": "full"}, {}),
]


def build(name: str, state: dict[str, torch.Tensor]) -> nn.Module:
    model = BUILDERS[name]()
    model.load_state_dict(state)
    return model.eval()


def run_case(ref_models: dict, case: tuple[str, str, dict, dict]):
    """The evidence result of one case, from the stored weights and data."""
    _, model_name, cfg_kw, call = case
    stored = ref_models[model_name]
    model = build(model_name, stored["state"])
    x, y = stored["x"], stored["y"]
    kwargs = {}
    if call.get("masks"):
        kwargs["masks"] = stored["masks"]
    if call.get("weights"):
        kwargs["sample_weights"] = stored["weights"]
    return estimate_evidence(
        model,
        x,
        y,
        config=EvidenceConfig(**cfg_kw),
        score_samples=call.get("score_samples", True),
        **kwargs,
    )


def summarise(res) -> dict:
    out = {f: getattr(res, f) for f in FIELDS}
    out["prior_precision"] = res.prior_precision
    out["sample_loss"] = res.sample_loss.clone()
    out["sample_leverage"] = res.sample_leverage.clone()
    out["sample_contribution"] = res.sample_contribution.clone()
    out["weight_scores"] = {k: v.clone() for k, v in res.weight_scores.items()}
    out["weight_score_parts"] = {
        k: {p: t.clone() for p, t in v.items()} for k, v in (res.weight_score_parts or {}).items()
    }
    return out


def make_models() -> dict:
    g = torch.Generator().manual_seed(2026)
    models = {}
    for name, builder in BUILDERS.items():
        torch.manual_seed(len(name))
        model = builder()
        x, y = _data(name, g)
        if name == "cnn2d":  # non-trivial BatchNorm running statistics
            model.train()
            with torch.no_grad():
                model(x)
        entry = {"state": {k: v.clone() for k, v in model.state_dict().items()}, "x": x, "y": y}
        if name != "reg_mlp":
            entry["masks"] = _masks(name, model)
        w = torch.rand(x.shape[0], generator=g, dtype=torch.float64) * 2
        w[::5] = 0.0
        entry["weights"] = w
        models[name] = entry
    return models


def main() -> None:
    models = make_models()
    results = {case[0]: summarise(run_case(models, case)) for case in CASES}
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"models": models, "results": results}, REFERENCE)
    print(f"wrote {REFERENCE} ({len(results)} cases)")


if __name__ == "__main__":
    main()
