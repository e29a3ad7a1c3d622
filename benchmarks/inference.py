"""Inference cost of dense, element-sparse (dense kernels with zeros; CSR kernels) and
channel-pruned (physically smaller) models on this CPU, side by side in one run.

    nice -n 5 python benchmarks/inference.py     # writes benchmarks/results/inference.json

Models: MNIST-1D's 1-D CNN (the default model, ~5k parameters) and LeNet-300-100 on
784-dim inputs (~266k parameters), random weights (timing does not depend on training).
Element masks: global magnitude at 80 % / 90 % of the prunable weights; channel masks:
whole units by group L2 norm (Torch-Pruning's ``GroupMagnitudeImportance``) to the same
masked fraction, then removed with Torch-Pruning and also exported with torch.export.

For each variant: median latency at batch 1 and batch 256 over interleaved repeats (every
variant timed in each round, so a load spike on the shared machine hits one round, not
one variant), throughput at batch 256, parameter count (non-zero for the element-sparse
ones), file size. Ratios are against the dense model of the same run.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.export import export_structured, load_sparse, physically_prune, save_sparse
from jmds_pipeline.export.sparse_inference import csr_model
from jmds_pipeline.models import build_model, prunable_parameter_names
from jmds_pipeline.sparsity.channels import (
    channel_groups,
    channel_mask_names,
    magnitude_group_scores,
    prune_channels_to_target,
)
from jmds_pipeline.sparsity.masks import apply_masks
from jmds_pipeline.sparsity.weight_selection import magnitude_scores, prune_to_target

OUT = Path(__file__).parent / "results" / "inference.json"
THREADS = 1  # 2 threads on a shared 2-core machine: OpenMP barriers stall when a core is busy
ROUNDS = 11
SPARSITIES = (0.8, 0.9)
MODELS = {
    "cnn1d_mnist1d": ("cnn1d", DatasetMeta("mnist1d", "classification", 10, (1, 40)), {}),
    "mlp_784": ("mlp", DatasetMeta("mnist", "classification", 10, (784,)), {}),
}


def _latency(model: nn.Module, x: torch.Tensor, calls: int) -> float:
    """Median seconds per call over ``calls`` calls (after one warm-up)."""
    with torch.inference_mode():
        model(x)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _loadavg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else path.stat().st_size


def _channel_masks(model: nn.Module, meta: DatasetMeta, sparsity: float):
    """Channel masks by Torch-Pruning's group magnitude importance, to ``sparsity``."""
    weights = prunable_parameter_names(model)
    example = torch.zeros(2, *meta.input_shape)
    groups = channel_groups(model, weights, example)
    names = channel_mask_names(groups, weights)
    params = dict(model.named_parameters())
    masks = {n: torch.ones_like(params[n], dtype=torch.bool) for n in names}
    scores = magnitude_group_scores(model, groups, example)
    chosen = prune_channels_to_target(scores, groups, masks, sparsity)
    return chosen, groups, example


def _variants(name: str, sparsity: float, tmp: Path) -> dict[str, dict]:
    kind, meta, options = MODELS[name]
    torch.manual_seed(0)
    dense = build_model(kind, meta, options).eval()
    out: dict[str, dict] = {}
    dense_path = tmp / f"{name}_dense.safetensors"
    save_file({k: v.contiguous() for k, v in dense.state_dict().items()}, str(dense_path))
    out["dense"] = {
        "model": dense,
        "params": sum(p.numel() for p in dense.parameters()),
        "file_bytes": _size(dense_path),
    }
    # element-sparse: the same masks, dense kernels on zeros and CSR kernels
    masks = {
        n: torch.ones_like(p, dtype=torch.bool)
        for n, p in dense.named_parameters()
        if n in prunable_parameter_names(dense)
    }
    masks = prune_to_target(magnitude_scores(dense, masks), masks, sparsity)
    zeros = build_model(kind, meta, options).eval()
    zeros.load_state_dict(dense.state_dict())
    apply_masks(zeros, masks)
    nonzero = sum(int(torch.count_nonzero(p)) for p in zeros.parameters())
    zeros_path = tmp / f"{name}_zeros.safetensors"
    save_file({k: v.contiguous() for k, v in zeros.state_dict().items()}, str(zeros_path))
    out["dense_with_zeros"] = {"model": zeros, "params": nonzero, "file_bytes": _size(zeros_path)}
    csr_path = tmp / f"{name}_csr.safetensors"
    save_sparse(zeros.state_dict(), masks, csr_path)
    out["csr"] = {
        "model": csr_model(zeros, load_sparse(csr_path, layout="csr")),
        "params": nonzero,
        "file_bytes": _size(csr_path),
    }
    # structured: whole units by group magnitude, removed physically, and exported
    chan_masks, groups, example = _channel_masks(dense, meta, sparsity)
    small = physically_prune(dense, chan_masks, groups, example)
    export_dir = tmp / f"{name}_structured"
    config = export_structured(small, export_dir, example)
    out["structured"] = {
        "model": small,
        "params": config["parameter_count"],
        "file_bytes": _size(export_dir / "weights.safetensors"),
        "masked_fraction": 1
        - sum(int(m.sum()) for m in chan_masks.values())
        / sum(m.numel() for m in chan_masks.values()),
    }
    from jmds_pipeline.export import load_structured

    out["structured_export"] = {
        "model": load_structured(export_dir),
        "params": config["parameter_count"],
        "file_bytes": _size(export_dir),
    }
    return out


def main() -> None:
    torch.set_num_threads(THREADS)
    load_before = _loadavg()
    started = time.perf_counter()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        for name, (_kind, meta, _options) in MODELS.items():
            for sparsity in SPARSITIES:
                variants = _variants(name, sparsity, Path(tmp_dir))
                inputs = {
                    b: torch.randn(b, *meta.input_shape, generator=torch.Generator().manual_seed(b))
                    for b in (1, 256)
                }
                timings = {v: {1: [], 256: []} for v in variants}
                for _ in range(ROUNDS):
                    for v, entry in variants.items():
                        timings[v][1].append(_latency(entry["model"], inputs[1], 50))
                        timings[v][256].append(_latency(entry["model"], inputs[256], 5))
                with torch.inference_mode():
                    reference = variants["dense_with_zeros"]["model"](inputs[256])
                    csr_error = float(
                        (variants["csr"]["model"](inputs[256]) - reference).abs().max()
                    )
                base = variants["dense"]
                base_1 = statistics.median(timings["dense"][1])
                base_256 = statistics.median(timings["dense"][256])
                rows = {}
                for v, entry in variants.items():
                    lat1 = statistics.median(timings[v][1])
                    lat256 = statistics.median(timings[v][256])
                    rows[v] = {
                        "latency_batch1_ms": 1e3 * lat1,
                        "latency_batch256_ms": 1e3 * lat256,
                        "throughput_per_s": 256 / lat256,
                        "parameters": entry["params"],
                        "file_bytes": entry["file_bytes"],
                        "latency_batch1_vs_dense": lat1 / base_1,
                        "latency_batch256_vs_dense": lat256 / base_256,
                        "parameters_vs_dense": entry["params"] / base["params"],
                        "file_vs_dense": entry["file_bytes"] / base["file_bytes"],
                        **(
                            {"masked_fraction": entry["masked_fraction"]}
                            if "masked_fraction" in entry
                            else {}
                        ),
                    }
                rows["csr"]["max_abs_diff_vs_dense_with_zeros"] = csr_error
                results[f"{name}@{sparsity}"] = rows
                print(
                    name,
                    sparsity,
                    json.dumps(
                        {
                            v: {k: round(x, 4) for k, x in r.items() if k.endswith("vs_dense")}
                            for v, r in rows.items()
                        }
                    ),
                    flush=True,
                )
    payload = {
        "command": "nice -n 5 python benchmarks/inference.py",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "loadavg_before": load_before,
            "loadavg_after": _loadavg(),
            "threads": THREADS,
        },
        "rounds": ROUNDS,
        "calls_per_round": {"batch1": 50, "batch256": 5},
        "seconds": time.perf_counter() - started,
        "notes": [
            "dense_with_zeros: element masks applied, ordinary dense kernels",
            "csr: the same masks, weights as torch.sparse_csr, torch.sparse.mm (convs via unfold)",
            "structured: channel masks by group L2 norm to the same masked fraction, removed "
            "by Torch-Pruning (eager nn.Module); structured_export: the torch.export program "
            "loaded with torch.export.load",
            "file_bytes of structured_export: model.pt2 + weights.safetensors + config.json",
        ],
        "results": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {OUT} in {payload['seconds']:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
