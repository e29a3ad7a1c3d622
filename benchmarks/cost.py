"""Cost of the evidence machinery in training epochs, measured side by side in one run.

    nice -n 10 python benchmarks/cost.py             # writes benchmarks/results/cost.json
    nice -n 10 python benchmarks/cost.py --masked    # reruns only its ``masked`` entry
    nice -n 10 python benchmarks/cost.py --phases    # reruns only its ``phases`` entry

Per model (1-D CNN on MNIST-1D, the issue's target; MLP on digits): brief training so θ is
near a mode, then ``REPEATS`` interleaved rounds of: one training epoch (AdamW, batch 64),
``estimate_evidence`` with every contribution (weights and samples) for the MC and the
exact Fisher and both per-sample leverage modes (``exact``, ``kron``), and laplace-torch's
``kron`` fit + ``log_marginal_likelihood``. Ratios are of medians over the rounds, so a
load spike on the shared machine hits one round, not one method; they are given for wall
time and for the process's CPU time (``time.process_time``, all threads), which other jobs
on a shared machine disturb far less than wall time. Also: the error of the
``kron`` leverage against the exact per-sample leverage (the same Fisher and P), and the
peak extra resident memory of the evidence pass against one training epoch, each measured
in a fresh process so that neither inherits the other's freed heap.

Masked layers (``masked``, one thread): the 1-D CNN above and the pipeline's ``cnn1d`` (the
default ``kedro run``'s model, output layer unmasked as in JMDS's default scope, 3600 rows
as that run) with random masks keeping 50 % and 20 % of each masked layer's weights
(biases kept), MC Fisher (JMDS's default), ``estimate_evidence`` with the sample terms and
no weight scores (JMDS's phase C) for each ``masked_leverage`` route (``dense``: the former
exact route; ``sparse``: the exact default; ``diag``: the opt-in approximation),
interleaved with training epochs as above (``MASKED_REPEATS`` rounds); the leverage's
multiply-adds per sample of each route (the engine's cost model on the real masks); the
"samples" stage and the whole call in training epochs, the speed-ups over ``dense``, the
largest relative difference of ``sparse`` from ``dense`` (float32 rounding) and the error
of ``diag`` against the exact leverage and contributions.

Phases (``phases``, one thread, ``benchmarks/phase_costs.py``): wall time, training samples
and FLOPs of every phase (pretraining, rounds, evidence, scoring retrains, final retrain)
of whole dense, IMP, phased and JMDS-default runs on MNIST-1D at the default budget.
Kedro's overhead against a plain loop: ``benchmarks/kedro_overhead.py``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import platform
import statistics
import sys
import time
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).parent))
from evidence import (
    PeakRSS,
    conv2d_twin,
    digits_mlp,
    laplace_torch,
    mnist1d_cnn,
    train_epochs,
)

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.evidence.checks import canonical_names
from jmds_pipeline.evidence.curvature.capture import build_handlers, capturing
from jmds_pipeline.evidence.curvature.kfac import KronBlock
from jmds_pipeline.evidence.curvature.layerwise import _mask_matrix

OUT = Path(__file__).parent / "results" / "cost.json"
THREADS = 2
REPEATS = 3
CASES = {"cnn1d_mnist1d": (mnist1d_cnn, conv2d_twin), "mlp_digits": (digits_mlp, lambda m: m)}
VARIANTS = {
    "mc_exact_leverage": EvidenceConfig(fisher="mc"),
    "mc_kron_leverage": EvidenceConfig(fisher="mc", leverage="kron"),
    "exact_exact_leverage": EvidenceConfig(fisher="exact"),
    "exact_kron_leverage": EvidenceConfig(fisher="exact", leverage="kron"),
    # opt-in approximation: A's top 32 eigenvectors, the mean eigenvalue for the rest
    "mc_lowrank_leverage": EvidenceConfig(fisher="mc", leverage="lowrank", leverage_rank=32),
    "exact_lowrank_leverage": EvidenceConfig(fisher="exact", leverage="lowrank",
                                             leverage_rank=32),
}


MASK_KEEPS = {"pruned_50pct": 0.5, "pruned_80pct": 0.2}
MASKED_REPEATS = 7  # short calls: more rounds for the medians on the loaded machine
# "lowrank": leverage="lowrank" (rank 32), which takes its masked route where cheaper
MASKED_ROUTES = ("dense", "sparse", "diag", "lowrank")


def _masked_route(route: str) -> tuple[str, str]:
    """(leverage, masked_leverage) settings of a masked route's label."""
    return ("lowrank", "sparse") if route == "lowrank" else ("exact", route)


def _trained(build):
    torch.manual_seed(0)
    model, x, y, epochs = build()
    train_epochs(model, x, y, max(epochs - 1, 0))
    return model, x, y


class _Clock:
    """Wall and CPU seconds of a ``with`` block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def _timed_evidence(model, x, y, cfg, **kw):
    with _Clock() as clock:
        res = estimate_evidence(model, x, y, config=cfg, **kw)
    return clock, res


def _rank(t: torch.Tensor) -> torch.Tensor:
    return t.argsort().argsort().double()


def kron_error(exact: torch.Tensor, kron: torch.Tensor) -> dict[str, float]:
    """How far the ``kron`` contributions are from the exact ones, in the terms JMDS uses."""
    n = exact.numel()
    low = max(1, int(0.3 * n))  # the 30 % with the lowest c_i: what a data budget drops
    drop_exact = set(exact.argsort()[:low].tolist())
    drop_kron = set(kron.argsort()[:low].tolist())
    return {
        "relative_l2_error": float((kron - exact).norm() / exact.norm()),
        "spearman": float(torch.corrcoef(torch.stack([_rank(exact), _rank(kron)]))[0, 1]),
        "lowest_30pct_overlap": len(drop_exact & drop_kron) / low,
    }


def measure_case(name: str) -> dict:
    build, laplace_model = CASES[name]
    model, x, y = _trained(build)
    keys = ["epoch", *VARIANTS, "laplace_torch", "ours_evidence_only"]
    rounds = {c: {k: [] for k in keys} for c in ("wall", "cpu")}

    def put(key: str, clock: _Clock) -> None:
        rounds["wall"][key].append(clock.wall)
        rounds["cpu"][key].append(clock.cpu)

    results = {}
    laplace_error = None
    for rep in range(REPEATS):
        with _Clock() as clock:
            train_epochs(model, x, y, 1, seed=rep)
        put("epoch", clock)
        for key, cfg in VARIANTS.items():
            clock, results[key] = _timed_evidence(model, x, y, cfg)
            put(key, clock)
        alpha = results["mc_exact_leverage"].prior_precision
        with _Clock() as clock:
            lt = laplace_torch(laplace_model(model), x, y, alpha, bs=len(x))
        if "seconds" not in lt:
            laplace_error = lt["error"]
        else:
            put("laplace_torch", clock)
            same = EvidenceConfig(fisher="mc", prior_precision=alpha, subsample_size=None)
            clock, _ = _timed_evidence(model, x, y, same, score_samples=False, score_weights=False)
            put("ours_evidence_only", clock)
        print(
            f"  round {rep} (cpu s): "
            + ", ".join(f"{k} {v[-1]:.2f}" for k, v in rounds["cpu"].items() if v),
            flush=True,
        )
    med = {c: {k: statistics.median(v) for k, v in r.items() if v} for c, r in rounds.items()}
    out = {
        "n_samples": len(x),
        "num_params": sum(p.numel() for p in model.parameters()),
        "median_seconds": med,
        "all_seconds": rounds,
        "evidence_in_epochs": {c: {k: m[k] / m["epoch"] for k in VARIANTS} for c, m in med.items()},
        "exact_over_mc": {
            c: {
                lev: m[f"exact_{lev}_leverage"] / m[f"mc_{lev}_leverage"]
                for lev in ("exact", "kron", "lowrank")
            }
            for c, m in med.items()
        },
        "stage_seconds_last_round": {k: r.timings for k, r in results.items()},
        "kron_leverage_vs_exact": {
            "exact_fisher": kron_error(
                results["exact_exact_leverage"].sample_contribution,
                results["exact_kron_leverage"].sample_contribution,
            ),
            "mc_fisher": kron_error(
                results["mc_exact_leverage"].sample_contribution,
                results["mc_kron_leverage"].sample_contribution,
            ),
        },
        "lowrank_leverage_vs_exact": {
            fisher: {
                "contribution": kron_error(
                    results[f"{fisher}_exact_leverage"].sample_contribution,
                    results[f"{fisher}_lowrank_leverage"].sample_contribution,
                ),
                "leverage": leverage_error(
                    results[f"{fisher}_exact_leverage"].sample_leverage,
                    results[f"{fisher}_lowrank_leverage"].sample_leverage,
                ),
            }
            for fisher in ("mc", "exact")
        },
    }
    if laplace_error is None:
        out["laplace_torch"] = {
            "recipe": "kron (CurvlinopsGGN), all N samples in one batch, + log marglik",
            "speedup_with_contributions": {
                c: {k: m["laplace_torch"] / m[k] for k in VARIANTS} for c, m in med.items()
            },
            "speedup_evidence_only": {
                c: m["laplace_torch"] / m["ours_evidence_only"] for c, m in med.items()
            },
        }
    else:
        out["laplace_torch"] = {"error": laplace_error}
    out["peak_extra_rss_mib"] = memory(name)
    return out


def pipeline_cnn1d():
    """The pipeline's ``cnn1d`` (25 channels, strides 2; the default ``kedro run``'s model)
    on the same MNIST-1D data, inputs as (channels, length)."""
    from jmds_pipeline.data.types import DatasetMeta
    from jmds_pipeline.models.small import CNN1DOptions, build_cnn1d

    _, x, y, epochs = mnist1d_cnn()
    torch.manual_seed(0)
    meta = DatasetMeta("mnist1d", "classification", 10, (1, x.shape[1]))
    return build_cnn1d(meta, CNN1DOptions()), x[:, None], y, epochs


# name -> (model builder, weight tensors left unmasked, torch threads, rows)
MASKED_CASES = {
    # one thread: CPU time stays meaningful when other jobs load the 2 cores (with two,
    # OpenMP's waiting threads inflated a training epoch's CPU time 20-fold in one run)
    "cnn1d_mnist1d": (mnist1d_cnn, (), 1, None),
    # as the default `kedro run` scores: JMDS's scope leaves the output layer unpruned
    # (include_output_layer: false), one thread (torch_threads: 1), 3600 training rows
    "pipeline_cnn1d_mnist1d": (pipeline_cnn1d, ("net.out.weight",), 1, 3600),
}


def random_masks(
    model: torch.nn.Module, keep: float, skip: tuple[str, ...] = (), seed: int = 0
) -> dict[str, torch.Tensor]:
    """Every weight tensor but ``skip`` kept with probability ``keep`` (biases unmasked)."""
    gen = torch.Generator().manual_seed(seed)
    return {
        n: torch.rand(p.shape, generator=gen) < keep
        for n, p in model.named_parameters()
        if n.endswith("weight") and n not in skip
    }


def leverage_error(exact: torch.Tensor, approx: torch.Tensor) -> dict[str, float]:
    """Relative L2 error, Spearman correlation and mean ratio of an approximate leverage."""
    return {
        "relative_l2_error": float((approx - exact).norm() / exact.norm()),
        "spearman": float(torch.corrcoef(torch.stack([_rank(exact), _rank(approx)]))[0, 1]),
        "sum_ratio": float(approx.sum() / exact.sum()),
    }


def leverage_multiply_adds(
    model: torch.nn.Module, x: torch.Tensor, masks: dict[str, torch.Tensor]
) -> dict[str, int]:
    """Multiply-adds per sample (MC Fisher: one backward vector) of the K-FAC leverage of
    each masked route, from the engine's own cost model (``KronBlock.leverage_cost``)."""
    names = canonical_names(model)
    handlers = build_handlers(model, names, True, EvidenceConfig().kfac_max_dim)
    with torch.no_grad(), capturing(handlers, [1]):
        model(x[:1])
        positions = {
            id(h): [h.kron_inputs(inp).shape[1] for inp, _ in h.calls] for h in handlers if h.kron
        }
    out = {}
    for route in MASKED_ROUTES:
        total = 0
        for h in handlers:
            if not h.kron:
                continue
            block = KronBlock(
                h,
                A=torch.zeros(h.d_in, h.d_in),
                G=torch.zeros(h.d_out, h.d_out),
                theta=torch.zeros(h.d_out, h.d_in),
                mask=_mask_matrix(h, masks, torch.device("cpu")),
            )
            mode, masked = _masked_route(route)
            total += sum(block.leverage_cost(r, 1, mode, masked, rank=32)[1]
                         for r in positions[id(h)])
        out[route] = total
    return out


def measure_masked(name: str) -> dict:
    """Phase C (sample terms, no weight scores) under random masks, per masked route."""
    build, skip, threads, rows = MASKED_CASES[name]
    torch.set_num_threads(threads)
    model, x, y = _trained(build)
    x, y = x[:rows], y[:rows]
    masks = {label: random_masks(model, keep, skip) for label, keep in MASK_KEEPS.items()}
    keys = ["epoch"] + [f"{label}_{route}" for label in masks for route in MASKED_ROUTES]
    rounds = {c: {k: [] for k in keys} for c in ("wall", "cpu", "samples_stage_wall")}
    results = {}
    for rep in range(MASKED_REPEATS):
        with _Clock() as clock:
            train_epochs(model, x, y, 1, seed=rep)
        rounds["wall"]["epoch"].append(clock.wall)
        rounds["cpu"]["epoch"].append(clock.cpu)
        for label, mask in masks.items():
            for route in MASKED_ROUTES:
                key = f"{label}_{route}"
                mode, masked = _masked_route(route)
                cfg = EvidenceConfig(fisher="mc", leverage=mode, leverage_rank=32,
                                     masked_leverage=masked)
                clock, results[key] = _timed_evidence(
                    model, x, y, cfg, masks=mask, score_weights=False
                )
                rounds["wall"][key].append(clock.wall)
                rounds["cpu"][key].append(clock.cpu)
                rounds["samples_stage_wall"][key].append(results[key].timings["samples"])
        print(
            f"  masked round {rep} (cpu s): "
            + ", ".join(f"{k} {v[-1]:.2f}" for k, v in rounds["cpu"].items()),
            flush=True,
        )
    med = {c: {k: statistics.median(v) for k, v in r.items() if v} for c, r in rounds.items()}
    epoch = {
        "wall": med["wall"]["epoch"],
        "cpu": med["cpu"]["epoch"],
        "samples_stage_wall": med["wall"]["epoch"],
    }
    out = {
        "fisher": "mc",
        "n_samples": len(x),
        "num_params": sum(p.numel() for p in model.parameters()),
        "threads": threads,
        "repeats": MASKED_REPEATS,
        "masks": {
            label: f"random, keep {keep} of every weight tensor but {list(skip)}"
            for label, keep in MASK_KEEPS.items()
        },
        "median_seconds": med,
        "all_seconds": rounds,
        "in_epochs": {
            c: {k: v / epoch[c] for k, v in m.items() if k != "epoch"} for c, m in med.items()
        },
        "speedup_over_dense": {
            c: {
                f"{label}_{route}": m[f"{label}_dense"] / m[f"{label}_{route}"]
                for label in masks
                for route in MASKED_ROUTES
                if route != "dense"
            }
            for c, m in med.items()
        },
        "leverage_multiply_adds_per_sample": {
            label: leverage_multiply_adds(model, x, mask) for label, mask in masks.items()
        },
        "sparse_vs_dense_max_relative_difference": {},
        "diag_vs_exact": {},
        "lowrank_vs_exact": {},
    }
    torch.set_num_threads(THREADS)
    for label in masks:
        dense = results[f"{label}_dense"]
        sparse = results[f"{label}_sparse"]
        diag = results[f"{label}_diag"]
        rel = (sparse.sample_leverage - dense.sample_leverage).abs() / dense.sample_leverage
        out["sparse_vs_dense_max_relative_difference"][label] = float(rel.max())
        out["diag_vs_exact"][label] = {
            "leverage": leverage_error(sparse.sample_leverage, diag.sample_leverage),
            "contribution": kron_error(sparse.sample_contribution, diag.sample_contribution),
        }
        low = results[f"{label}_lowrank"]
        out["lowrank_vs_exact"][label] = {
            "leverage": leverage_error(sparse.sample_leverage, low.sample_leverage),
            "contribution": kron_error(sparse.sample_contribution, low.sample_contribution),
        }
    return out


def _memory_child(name: str, what: str, queue) -> None:
    torch.set_num_threads(THREADS)
    build, _ = CASES[name]
    torch.manual_seed(0)
    model, x, y, _ = build()
    model(x[:2])  # lazy initialisation outside the measured region
    with PeakRSS() as mem:
        if what == "training_epoch":
            train_epochs(model, x, y, 1)
        else:
            estimate_evidence(model, x, y, config=VARIANTS[what])
    queue.put(mem.mib)


def memory(name: str) -> dict[str, float]:
    """Peak extra RSS (MiB) of one training epoch and of each evidence variant, fresh processes."""
    ctx = mp.get_context("spawn")
    out = {}
    for what in ("training_epoch", *VARIANTS):
        queue = ctx.Queue()
        proc = ctx.Process(target=_memory_child, args=(name, what, queue))
        proc.start()
        out[what] = queue.get()
        proc.join()
    out["ratio_to_training_epoch"] = {
        k: out[k] / max(out["training_epoch"], 1e-9) for k in VARIANTS
    }
    return out


def masked_results() -> dict:
    """The ``masked`` entry: every masked case, with the load it ran under."""
    out = {"load_average_at_start": list(psutil.getloadavg())}
    for name in MASKED_CASES:
        print(f"== {name}, masked layers", flush=True)
        out[name] = measure_masked(name)
        print(json.dumps(out[name]["in_epochs"], indent=1), flush=True)
    out["load_average_at_end"] = list(psutil.getloadavg())
    return out


def phases_results() -> dict:
    """The ``phases`` entry (one thread, as the pipeline's ``torch_threads: 1``)."""
    from phase_costs import measure_phases

    sys.path.insert(0, str(Path(__file__).parent / "research"))
    from common import make_context

    out = {"load_average_at_start": list(psutil.getloadavg())}
    started = time.perf_counter()
    out.update(measure_phases(make_context(42)))  # sets one torch thread
    out["load_average_at_end"] = list(psutil.getloadavg())
    out["seconds"] = time.perf_counter() - started
    out["command"] = "nice -n 10 python benchmarks/cost.py --phases"
    torch.set_num_threads(THREADS)
    return out


def main() -> None:
    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    if "--phases" in sys.argv[1:]:
        results = json.loads(OUT.read_text())
        results["phases"] = phases_results()
        OUT.write_text(json.dumps(results, indent=2))
        print(f"updated {OUT} ('phases') in {time.perf_counter() - t0:.0f}s")
        return
    if "--masked" in sys.argv[1:]:
        # only the masked case, into the existing file (the other cases keep their run)
        results = json.loads(OUT.read_text())
        results["masked"] = masked_results()
        results["masked"]["command"] = "nice -n 10 python benchmarks/cost.py --masked"
        OUT.write_text(json.dumps(results, indent=2))
        print(f"updated {OUT} ('masked') in {time.perf_counter() - t0:.0f}s")
        return
    results = {
        "meta": {
            "command": "nice -n 10 python benchmarks/cost.py",
            "torch": torch.__version__,
            "threads": THREADS,
            "repeats": REPEATS,
            "machine": platform.machine(),
            "cpu_count": psutil.cpu_count(),
            "load_average_at_start": list(psutil.getloadavg()),
            "note": "shared 2-core CPU (other jobs running): compare ratios, not seconds",
        }
    }
    for name in CASES:
        print(f"== {name}", flush=True)
        results[name] = measure_case(name)
        print(json.dumps(results[name]["evidence_in_epochs"], indent=1), flush=True)
    results["masked"] = masked_results()
    results["phases"] = phases_results()
    results["meta"]["load_average_at_end"] = list(psutil.getloadavg())
    results["meta"]["total_seconds"] = time.perf_counter() - t0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    print(f"wrote {OUT} in {results['meta']['total_seconds']:.0f}s")


if __name__ == "__main__":
    main()
