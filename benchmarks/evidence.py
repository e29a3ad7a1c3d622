"""Speed and agreement benchmark of the evidence engine (not a test).

    python benchmarks/evidence.py            # writes benchmarks/results/evidence.json

Per model: brief training (so θ is near a mode), the time of one training epoch on the same
data (Adam, batch 64), the time of ``estimate_evidence`` with K-FAC and every contribution
(weights and samples), their ratio, laplace-torch's ``kron`` fit + ``log_marginal_likelihood``
on the same model and data where it runs, and the peak extra resident memory of each call.
Models are built here (MLP on digits, 1-D CNN on MNIST-1D, ResNet-18 with CIFAR stem on
random CIFAR-shaped data, tiny GPT-2 on ``pydoc_data.topics`` bytes). CPU, 2 threads.
"""

from __future__ import annotations

import json
import math
import os
import platform
import threading
import time
import warnings
from pathlib import Path

import psutil
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence

OUT = Path(__file__).parent / "results" / "evidence.json"
THREADS = 2


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 5 ms (MiB)."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.stop = False
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self):
        while not self.stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()
        self.mib = (self.peak - self.base) / 2**20


def train_epochs(model, x, y, epochs, lm=False, lr=1e-3, bs=64, seed=0):
    """Adam with weight decay; returns the seconds of the last epoch."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    model.train()
    secs = 0.0
    for _ in range(epochs):
        t = time.perf_counter()
        perm = torch.randperm(len(x))
        for s in range(0, len(x), bs):
            i = perm[s : s + bs]
            out = model(x[i])
            if lm:
                loss = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y[i].reshape(-1))
            else:
                loss = nn.functional.cross_entropy(out, y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        secs = time.perf_counter() - t
    model.eval()
    return secs


def laplace_torch(model, x, y, alpha, bs=256):
    """laplace-torch kron (CurvlinopsGGN) fit + log marglik; (seconds, value, MiB) or error."""
    try:
        from laplace import Laplace
        from laplace.curvature import CurvlinopsGGN
    except ImportError as err:  # pragma: no cover
        return {"error": f"laplace-torch not importable: {err}"}
    try:
        with warnings.catch_warnings(), PeakRSS() as mem:
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            la = Laplace(
                model,
                "classification",
                subset_of_weights="all",
                hessian_structure="kron",
                backend=CurvlinopsGGN,
            )
            la.fit(DataLoader(TensorDataset(x, y), batch_size=bs))
            value = float(la.log_marginal_likelihood(torch.tensor(alpha)))
            secs = time.perf_counter() - t
        return {"seconds": secs, "log_evidence": value, "peak_mib": mem.mib}
    except Exception as err:  # record why it does not run
        return {"error": f"{type(err).__name__}: {str(err)[:200]}"}


def evidence(model, x, y, cfg, bs=256):
    with PeakRSS() as mem:
        t = time.perf_counter()
        res = estimate_evidence(model, x, y, config=cfg)
        secs = time.perf_counter() - t
    finite = bool(torch.isfinite(res.sample_contribution).all())
    return res, {
        "seconds": secs,
        "log_evidence": res.log_evidence,
        "log_likelihood": res.log_likelihood,
        "log_det_ratio": res.log_det_ratio,
        "prior_precision": res.prior_precision,
        "num_active": res.num_active,
        "peak_mib": mem.mib,
        "timings": res.timings,
        "sample_contributions_finite": finite,
        "config": {
            "structure": cfg.structure,
            "fisher": cfg.fisher,
            "subsample_size": cfg.subsample_size,
            "likelihood": cfg.likelihood,
            "batch_size": cfg.batch_size,
        },
    }


def lowrank_error(approx, exact) -> dict:
    """How far ``leverage="lowrank"`` is from the exact leverage of the same configuration
    (same MC draws: the seed is the same), and whether anything else moved."""
    from scipy.stats import spearmanr

    rel = ((approx.sample_leverage - exact.sample_leverage).abs()
           / exact.sample_leverage.abs().clamp_min(1e-300))
    return {
        "leverage_rel_error_median": float(rel.median()),
        "leverage_rel_error_p95": float(rel.quantile(0.95)),
        "leverage_rel_error_max": float(rel.max()),
        "contribution_spearman": float(
            spearmanr(approx.sample_contribution, exact.sample_contribution).correlation
        ),
        "log_evidence_equal": approx.log_evidence == exact.log_evidence,
    }


# ------------------------------------------------------------------ models and data
def digits_mlp():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10)
    )
    return model, x, y, 20


class CNN1d(nn.Module):
    def __init__(self, conv=nn.Conv1d, channels=32):
        super().__init__()
        k = (1, 5) if conv is nn.Conv2d else 5
        p = (0, 2) if conv is nn.Conv2d else 2
        s = (1, 2) if conv is nn.Conv2d else 2
        self.is2d = conv is nn.Conv2d
        self.body = nn.Sequential(
            conv(1, channels, k, padding=p),
            nn.ReLU(),
            conv(channels, channels, k, stride=s, padding=p),
            nn.ReLU(),
            conv(channels, channels, k, stride=s, padding=p),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(channels * 10, 10),
        )

    def forward(self, x):
        x = x.unsqueeze(1)
        return self.body(x.unsqueeze(2) if self.is2d else x)


def mnist1d_cnn():
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    x = torch.tensor(d["x"], dtype=torch.float32)
    y = torch.tensor(d["y"], dtype=torch.long)
    torch.manual_seed(0)
    return CNN1d(), x, y, 15


def conv2d_twin(model: CNN1d) -> CNN1d:
    """The same network with Conv2d (height 1), which curvlinops/laplace-torch support."""
    twin = CNN1d(conv=nn.Conv2d)
    sd = {k: (v.unsqueeze(2) if v.dim() == 3 else v) for k, v in model.state_dict().items()}
    twin.load_state_dict(sd)
    return twin.eval()


def resnet18_cifar(n=128):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return model, x, y, 1


class GPT2Logits(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).logits


def gpt2_tiny(n=256, seq=64):
    from pydoc_data.topics import topics

    from transformers import GPT2Config, GPT2LMHeadModel

    text = "\n".join(topics[k] for k in sorted(topics)).encode("utf-8")
    ids = torch.tensor(list(text[: n * (seq + 1)]), dtype=torch.long).reshape(n, seq + 1)
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=64,
        vocab_size=257,
        n_positions=seq,
        bos_token_id=256,
        eos_token_id=256,
    )
    return GPT2Logits(GPT2LMHeadModel(cfg)), ids[:, :-1], ids[:, 1:].contiguous(), 3


# ------------------------------------------------------------------ main
def run_case(name, build, cfgs, laplace_model=None, lm=False):
    print(f"== {name}", flush=True)
    model, x, y, epochs = build()
    train_epochs(model, x, y, max(epochs - 1, 0), lm=lm)
    epoch = train_epochs(model, x, y, 1, lm=lm)
    out = {
        "n_samples": len(x),
        "num_params": sum(p.numel() for p in model.parameters()),
        "epoch_seconds": epoch,
        "epoch_recipe": "AdamW, batch 64, one pass",
    }
    scored = {}
    for label, cfg in cfgs.items():
        res, info = evidence(model, x, y, cfg)
        info["ratio_to_epoch"] = info["seconds"] / epoch
        if label.endswith("_lowrank") and label.removesuffix("_lowrank") in scored:
            info["vs_exact_leverage"] = lowrank_error(res, scored[label.removesuffix("_lowrank")])
            info["config"]["leverage_rank"] = cfg.leverage_rank
        scored[label] = res
        out[f"evidence_{label}"] = info
        print(
            f"  {label}: {info['seconds']:.2f}s (epoch {epoch:.2f}s), log Z {res.log_evidence:.1f}",
            flush=True,
        )
    main = next(iter(cfgs))
    alpha = out[f"evidence_{main}"]["prior_precision"]
    if laplace_model is not None:
        # agreement at the same α on all samples (no subsample), laplace-torch in one batch
        # (its per-batch factor sums otherwise differ from the full-data K-FAC)
        lt = laplace_torch(laplace_model(model), x, y, alpha, bs=len(x))
        out["laplace_torch"] = lt
        if "seconds" in lt:
            same = EvidenceConfig(
                **{**cfgs[main].__dict__, "prior_precision": alpha, "subsample_size": None}
            )
            t = time.perf_counter()
            quick = estimate_evidence(
                model, x, y, config=same, score_samples=False, score_weights=False
            )
            quick_s = time.perf_counter() - t
            lt["ours_evidence_only_seconds"] = quick_s
            lt["speedup_vs_laplace_torch"] = lt["seconds"] / out[f"evidence_{main}"]["seconds"]
            lt["speedup_vs_laplace_torch_evidence_only"] = lt["seconds"] / quick_s
            lt["ours_same_alpha_log_evidence"] = quick.log_evidence
            lt["relative_difference"] = abs(quick.log_evidence - lt["log_evidence"]) / abs(
                lt["log_evidence"]
            )
            print(
                f"  laplace-torch {lt['seconds']:.2f}s, log Z {lt['log_evidence']:.1f} vs "
                f"ours {quick.log_evidence:.1f} ({quick_s:.2f}s evidence only)",
                flush=True,
            )
        else:
            print(f"  laplace-torch: {lt['error']}", flush=True)
    return out


def main() -> None:
    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    kfac = EvidenceConfig(structure="kfac")
    mc = EvidenceConfig(structure="kfac", fisher="mc")
    # the per-sample Kronecker leverage (``curvature.kfac``): cheaper on conv layers
    kfac_kron = EvidenceConfig(structure="kfac", leverage="kron")
    mc_kron = EvidenceConfig(structure="kfac", fisher="mc", leverage="kron")
    # opt-in approximation: only A's top 32 eigenvectors projected on (``curvature.kfac``)
    lowrank = EvidenceConfig(structure="kfac", leverage="lowrank", leverage_rank=32)
    mc_lowrank = EvidenceConfig(
        structure="kfac", fisher="mc", leverage="lowrank", leverage_rank=32
    )
    # kfac_max_dim=2304: the three 4608-input convs of ResNet-18's layer4 fall back to diag
    # (a float64 eigh of 4608² takes ~30 s on this 2-core CPU)
    resnet = dict(structure="kfac", fisher="mc", batch_size=64, kfac_max_dim=2304)
    gpt2 = dict(structure="kfac", likelihood="language_modeling", fisher="mc", batch_size=64)
    both = {
        "kfac_exact": kfac,
        "kfac_mc": mc,
        "kfac_exact_kron": kfac_kron,
        "kfac_mc_kron": mc_kron,
        "kfac_exact_lowrank": lowrank,
        "kfac_mc_lowrank": mc_lowrank,
    }
    results = {
        "meta": {
            "torch": torch.__version__,
            "threads": THREADS,
            "machine": platform.machine(),
            "cpu_count": psutil.cpu_count(),
            "note": "CPU; peak_mib = extra RSS during call",
            "load_average_at_start": list(os.getloadavg()),
        },
        "mlp_digits": run_case(
            "mlp_digits",
            digits_mlp,
            both,
            laplace_model=lambda m: m,
        ),
        "cnn1d_mnist1d": run_case(
            "cnn1d_mnist1d",
            mnist1d_cnn,
            both,
            laplace_model=conv2d_twin,
        ),
        "resnet18_cifar_random": run_case(
            "resnet18",
            resnet18_cifar,
            {
                "kfac_mc": EvidenceConfig(**resnet),
                "kfac_mc_kron": EvidenceConfig(**resnet, leverage="kron"),
                "kfac_mc_lowrank": EvidenceConfig(**resnet, leverage="lowrank", leverage_rank=32),
            },
            laplace_model=lambda m: m,
        ),
        "gpt2_tiny_pydoc": run_case(
            "gpt2_tiny",
            gpt2_tiny,
            {
                "kfac_mc": EvidenceConfig(**gpt2),
                "kfac_mc_lowrank": EvidenceConfig(**gpt2, leverage="lowrank", leverage_rank=32),
            },
            laplace_model=None,
            lm=True,
        ),
    }
    results["meta"]["total_seconds"] = time.perf_counter() - t0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            results,
            indent=2,
            default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o),
        )
    )
    print(f"wrote {OUT} in {results['meta']['total_seconds']:.0f}s")


if __name__ == "__main__":
    main()
