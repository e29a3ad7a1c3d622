"""Every method of the comparison, with one training recipe and the same budgets.

Each method turns (dense run of a seed, budget) into one result row. The dense run of a
seed is shared: its final weights start IMP and JMDS, its rewind point is where every
retrain starts, and the forgetting events it records are the forgetting baseline's
scores (Toneva et al. 2019 count them during ordinary training).

Budgets are (ρ_m, ρ_s). Model-only methods prune weights to ρ_m and keep all data;
data-only methods keep all weights and drop ρ_s of the data; joint methods do both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from jmds_pipeline.baselines.el2n import el2n_scores, grand_scores
from jmds_pipeline.baselines.forgetting import ForgettingTracker
from jmds_pipeline.baselines.random_baselines import random_sample_scores, random_weight_scores
from jmds_pipeline.config import JMDSConfig, RunConfig
from jmds_pipeline.data.types import DatasetMeta, Split
from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.models import prunable_parameter_names
from jmds_pipeline.runtime import evidence_config, mask_names, run_channel_groups, seeded_model
from jmds_pipeline.sparsity.channels import (
    ChannelGroup,
    example_input,
    magnitude_group_scores,
    spread_group_scores,
    taylor_group_scores,
)
from jmds_pipeline.sparsity.jmds_scoring import (
    channel_scores,
    kept_weights,
    prior_count,
    scalar_alpha,
    score_samples,
    score_weights,
)
from jmds_pipeline.sparsity.rounds import RoundScores, run_rounds
from jmds_pipeline.sparsity.sample_selection import select_samples
from jmds_pipeline.sparsity.weight_selection import magnitude_scores, prune_to_target
from jmds_pipeline.training.evaluate import evaluate
from jmds_pipeline.training.loop import cpu_state, train_model
from jmds_pipeline.training.metrics import run_metrics

Masks = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Budget:
    model_sparsity: float
    data_sparsity: float


@dataclass
class DenseRun:
    seed: int
    state: dict[str, torch.Tensor]
    rewind_state: dict[str, torch.Tensor]
    forgetting: torch.Tensor  # forgetting events per training row
    seconds: float
    samples_seen: int
    rewind_seconds: float = 0.0  # the dense run's time until its rewind point
    rewind_samples: int = 0  # ...and the training samples it drew until then


@dataclass
class Context:
    """Everything a method needs besides the seed's dense run and the budget."""

    config: RunConfig
    meta: DatasetMeta
    train: Split
    val: Split
    test: Split
    device: str = "cpu"
    el2n_models: int = 2  # Paul et al. average over 10 runs; 2 keeps the benchmark in budget
    el2n_epoch_fraction: float = 0.1  # they score at epoch 20 of 200

    def for_seed(self, seed: int) -> RunConfig:
        return self.config.model_copy(update={"seed": seed})

    def build(self, seed: int, state: dict[str, torch.Tensor] | None = None) -> nn.Module:
        """The model initialised from ``seed``, with ``state`` loaded when given."""
        model = seeded_model(self.for_seed(seed), self.meta)
        if state is not None:
            model.load_state_dict(state)
        return model

    def prunable(self, model: nn.Module) -> list[str]:
        jmds = self.config.jmds
        return prunable_parameter_names(model, include_output_layer=jmds.include_output_layer,
                                        include_embeddings=jmds.include_embeddings)

    def full_masks(self, model: nn.Module) -> Masks:
        params = dict(model.named_parameters())
        return {name: torch.ones_like(params[name], dtype=torch.bool)
                for name in self.prunable(model)}

    def evidence_config(self, seed: int, structure: str | None = None) -> EvidenceConfig:
        return evidence_config(self.config, self.meta, seed=seed, structure=structure)


def dense_run(context: Context, seed: int) -> DenseRun:
    """Dense training of one seed, recording forgetting events along the way."""
    config = context.for_seed(seed)
    model = context.build(seed)
    tracker = ForgettingTracker(context.train["id"])
    outcome = train_model(model, context.train, config.training, device=context.device,
                          seed=seed, rewind_epoch=config.rewind_epoch,
                          on_batch=tracker.callback(), description=f"dense seed {seed}")
    assert outcome.rewind_state is not None
    return DenseRun(seed, cpu_state(model), outcome.rewind_state, tracker.scores(),
                    outcome.seconds, outcome.samples_seen, outcome.rewind_seconds,
                    outcome.rewind_samples)


def _retrain_and_measure(
    context: Context, dense: DenseRun, masks: Masks | None, kept: torch.Tensor | None,
    extra_seconds: float, method: str, budget: Budget,
    on_batch: Callable | None = None, prior_precision: float | None = None,
    trace: list[dict[str, Any]] | None = None, pretraining_seconds: float | None = None,
    epochs: int | None = None, extra_samples: int = 0, pretraining_samples: int | None = None,
) -> tuple[dict[str, Any], nn.Module]:
    """Final retrain from the rewind point on (m, s) (with the evidence's prior α in the
    loss when given), then the row of metrics: test *and validation* accuracy, since
    defaults are chosen on validation data only (benchmarks/PROTOCOL.md).

    ``pretraining_seconds`` / ``pretraining_samples``: the part of the dense run the method
    needs (default: all of it; a method that scores at the rewind point needs only the run
    up to there). ``extra_samples``: training samples its other training drew (rounds,
    scoring runs), for the load-independent cost ``total_samples_vs_dense``.
    ``epochs``: the retrain's length (default: the recipe's ``training.epochs``)."""
    config = context.for_seed(dense.seed)
    model = context.build(dense.seed, dense.rewind_state)
    everything = torch.ones_like(context.train["id"], dtype=torch.bool)
    outcome = train_model(model, context.train, config.training, device=context.device,
                          seed=dense.seed, masks=masks, kept=kept, on_batch=on_batch,
                          epochs=epochs, description=method, prior_precision=prior_precision,
                          prior_count=prior_count(context.train,
                                                  everything if kept is None else kept,
                                                  context.config.jmds.rescale_kept))
    kept_fraction = 1.0 if kept is None else float(kept.float().mean())
    metrics = run_metrics(
        model, context.test, context.meta, masks=masks, kept_fraction=kept_fraction,
        train_seconds=outcome.seconds, samples_seen=outcome.samples_seen,
        dense_train_seconds=dense.seconds, device=context.device,
        batch_size=config.training.eval_batch_size,
    )
    weights = kept_weights(everything if kept is None else kept,
                           context.config.jmds.rescale_kept)
    evidence = estimate_evidence(
        model, context.train["x"], context.train["y"], sample_weights=weights, masks=masks,
        config=context.evidence_config(dense.seed), device=context.device,
        score_samples=False, score_weights=False,
    )
    row = {
        "method": method,
        "seed": dense.seed,
        "target_model_sparsity": budget.model_sparsity,
        "target_data_sparsity": budget.data_sparsity,
        "model_sparsity": metrics["model_sparsity"],
        "data_sparsity": metrics["data_sparsity"],
        "test_accuracy": metrics["test_accuracy"],
        "val_accuracy": evaluate(model, context.val, task=context.meta.task,
                                 device=context.device,
                                 batch_size=config.training.eval_batch_size)["accuracy"],
        "test_loss": metrics["test_loss"],
        "train_seconds": metrics["train_seconds"],
        "time_vs_dense": metrics["time_vs_dense"],
        # Everything the method costs, dense pretraining included.
        "total_vs_dense": (
            (dense.seconds if pretraining_seconds is None else pretraining_seconds)
            + extra_seconds + outcome.seconds
        ) / dense.seconds,
        # The same in training samples drawn (no scoring passes): immune to machine load.
        "total_samples_vs_dense": (
            (dense.samples_seen if pretraining_samples is None else pretraining_samples)
            + extra_samples + outcome.samples_seen
        ) / dense.samples_seen,
        "inference_flops_vs_dense": metrics["inference_flops_vs_dense"],
        "training_flops": metrics["training_flops"],
        "log_evidence": evidence.log_evidence,
    }
    if "test_perplexity" in metrics:
        row["test_perplexity"] = metrics["test_perplexity"]
    for entry in trace or []:  # the evidence round by round, for the correlation analysis
        for key in ("log_evidence", "val_accuracy", "stationarity"):
            if entry.get(key) is not None:
                row[f"round{entry['round']}_{key}"] = entry[key]
    return row, model


def _select(context: Context, scores: torch.Tensor, sparsity: float, *, keep: str,
            mode: str) -> torch.Tensor:
    everything = torch.ones_like(context.train["id"], dtype=torch.bool)
    return select_samples(scores, context.train["y"], everything, sparsity, mode=mode,
                          keep=keep)


# --- model-only -----------------------------------------------------------------------


def _imp_masks(context: Context, dense: DenseRun, sparsity: float
               ) -> tuple[Masks, float, int]:
    """IMP (Frankle et al. 2019/2020): R equal-ratio rounds of global magnitude pruning,
    each retraining from the rewind point."""
    config = context.for_seed(dense.seed)
    round_epochs = config.compare.imp_round_epochs or config.jmds.round_epochs
    jmds = config.jmds.model_copy(update={"target_model_sparsity": sparsity,
                                          "prune_data": False, "schedule": "geometric",
                                          "round_epochs": round_epochs})
    model = context.build(dense.seed, dense.state)

    def magnitude(model: nn.Module, masks: Masks, kept: torch.Tensor, *, weights: bool,
                  samples: bool) -> RoundScores:
        return RoundScores(weight_scores=magnitude_scores(model, masks))

    outcome = run_rounds(lambda state: context.build(dense.seed, state), dense.state,
                         dense.rewind_state, context.train, context.val, config, jmds,
                         context.full_masks(model), magnitude, task=context.meta.task,
                         device=context.device)
    return outcome.masks, outcome.seconds, outcome.samples_seen


def run_imp(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
    masks, seconds, samples = _imp_masks(context, dense, budget.model_sparsity)
    return _retrain_and_measure(context, dense, masks, None, seconds, "imp", budget,
                                extra_samples=samples)[0]


def run_random_pruning(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
    model = context.build(dense.seed, dense.state)
    masks = context.full_masks(model)
    generator = torch.Generator().manual_seed(dense.seed)
    masks = prune_to_target(random_weight_scores(masks, generator), masks,
                            budget.model_sparsity, scope="global")
    return _retrain_and_measure(context, dense, masks, None, 0.0, "random_pruning", budget)[0]


# --- data-only --------------------------------------------------------------------------


def run_forgetting(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
    """Keep the most-forgotten samples (drop the unforgettable ones), as Toneva et al."""
    kept = _select(context, dense.forgetting.double(), budget.data_sparsity, keep="high",
                   mode="topk")
    return _retrain_and_measure(context, dense, None, kept, 0.0, "forgetting", budget)[0]


def _early_models(context: Context, dense: DenseRun
                  ) -> tuple[list[nn.Module], float, int]:
    """Models trained for a fraction of the schedule from independent inits (Paul et al.)."""
    config = context.for_seed(dense.seed)
    epochs = max(1, round(config.training.epochs * context.el2n_epoch_fraction))
    started = time.perf_counter()
    models, samples = [], 0
    for offset in range(context.el2n_models):
        seed = 1000 * (dense.seed + 1) + offset
        model = context.build(seed)
        samples += train_model(model, context.train, config.training, device=context.device,
                               seed=seed, epochs=epochs, description="el2n").samples_seen
        models.append(model)
    return models, time.perf_counter() - started, samples


def run_el2n(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
    models, seconds, samples = _early_models(context, dense)
    scores = el2n_scores(models, context.train["x"], context.train["y"], device=context.device)
    kept = _select(context, scores, budget.data_sparsity, keep="high", mode="topk")
    return _retrain_and_measure(context, dense, None, kept, seconds, "el2n", budget,
                                extra_samples=samples)[0]


def run_grand(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
    models, seconds, samples = _early_models(context, dense)
    started = time.perf_counter()
    scores = grand_scores(models, context.train["x"], context.train["y"], device=context.device)
    seconds += time.perf_counter() - started
    kept = _select(context, scores, budget.data_sparsity, keep="high", mode="topk")
    return _retrain_and_measure(context, dense, None, kept, seconds, "grand", budget,
                                extra_samples=samples)[0]


def run_random_data(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(dense.seed)
    scores = random_sample_scores(context.train["id"].numel(), generator)
    kept = _select(context, scores, budget.data_sparsity, keep="high", mode="topk")
    return _retrain_and_measure(context, dense, None, kept, 0.0, "random_data", budget)[0]


# --- joint --------------------------------------------------------------------------------


def run_phased(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
    """IMP to ρ_m, then forgetting scores of the pruned network (counted while it
    retrains on all data), then retrain on (m_IMP, s_forgetting)."""
    masks, seconds, samples = _imp_masks(context, dense, budget.model_sparsity)
    tracker = ForgettingTracker(context.train["id"])
    imp_row, _ = _retrain_and_measure(context, dense, masks, None, seconds, "imp",
                                      budget, on_batch=tracker.callback())
    samples += dense.samples_seen  # that retrain draws every row for the dense epochs
    kept = _select(context, tracker.scores().double(), budget.data_sparsity, keep="high",
                   mode="topk")
    spent = seconds + imp_row["train_seconds"]
    return _retrain_and_measure(context, dense, masks, kept, spent, "phased", budget,
                                extra_samples=samples)[0]


def _jmds(context: Context, dense: DenseRun, budget: Budget, method: str,
          jmds: JMDSConfig, structure: str | None = None) -> dict[str, Any]:
    config = context.for_seed(dense.seed).model_copy(update={"jmds": jmds})
    # from this method's JMDS settings: a variant's jmds.evidence changes reach the evidence
    evidence_settings = evidence_config(config, context.meta, seed=dense.seed,
                                        structure=structure)
    model = context.build(dense.seed, dense.state)
    masks, groups = _initial_masks(context, config, model)

    def evidence(model: nn.Module, masks: Masks, kept: torch.Tensor, *, weights: bool,
                 samples: bool) -> RoundScores:
        if not weights:  # phase C under the mask phase B has just chosen
            result = score_samples(model, masks, kept, context.train, jmds, evidence_settings,
                                   context.device)
            return RoundScores(sample_scores=result.sample_contribution)
        phase_b = score_weights(model, masks, kept, context.train, jmds, evidence_settings,
                                context.device, with_samples=samples)
        result = phase_b.evidence
        weight_scores = dict(result.weight_scores)
        if groups is not None:
            weight_scores = channel_scores(groups, result, masks)
        return RoundScores(
            weight_scores=weight_scores if jmds.prune_model else None,
            sample_scores=result.sample_contribution if samples else None,
            log_evidence=result.log_evidence,
            prior_precision=scalar_alpha(result.prior_precision),
            extra={"stationarity": phase_b.stationarity.relative},
        )

    early = jmds.score_from == "rewind"
    outcome = run_rounds(lambda state: context.build(dense.seed, state),
                         dense.rewind_state if early else dense.state,
                         dense.rewind_state, context.train, context.val, config, jmds,
                         masks, evidence, task=context.meta.task,
                         device=context.device, groups=groups)
    kept = outcome.kept if jmds.prune_data else None
    return _retrain_and_measure(
        context, dense, outcome.masks, kept, outcome.seconds, method, budget,
        prior_precision=outcome.prior_precision if jmds.tie_prior else None,
        trace=outcome.trace, pretraining_seconds=dense.rewind_seconds if early else None,
        epochs=jmds.final_epochs, extra_samples=outcome.samples_seen,
        pretraining_samples=dense.rewind_samples if early else None,
    )[0]


def _initial_masks(context: Context, config: RunConfig, model: nn.Module
                   ) -> tuple[Masks, list[ChannelGroup] | None]:
    """All-active masks for the run's granularity, and the channel groups in channel mode."""
    if config.jmds.granularity == "weight":
        return context.full_masks(model), None
    groups = run_channel_groups(config, context.meta, model)
    params = dict(model.named_parameters())
    names = mask_names(config, context.meta, model)
    return {n: torch.ones_like(params[n], dtype=torch.bool) for n in names}, groups


def _tp_magnitude_masks(context: Context, dense: DenseRun, sparsity: float,
                        importance: str = "magnitude") -> tuple[Masks, float, int]:
    """Torch-Pruning's group magnitude (L2 over every coupled slice; or group Taylor,
    |θ·∂L/∂θ| on 1024 training rows) on whole channels, in IMP's schedule: R equal-ratio
    rounds, each retraining from the rewind point, to the same masked fraction as the
    channel JMDS."""
    config = context.for_seed(dense.seed)
    jmds = config.jmds.model_copy(update={"target_model_sparsity": sparsity,
                                          "prune_data": False, "schedule": "geometric",
                                          "granularity": "channel", "mode": "target"})
    config = config.model_copy(update={"jmds": jmds})
    model = context.build(dense.seed, dense.state)
    masks, groups = _initial_masks(context, config, model)
    example = example_input(context.meta.input_shape)

    def magnitude(model: nn.Module, masks: Masks, kept: torch.Tensor, *, weights: bool,
                  samples: bool) -> RoundScores:
        if importance == "taylor":
            rows = torch.randperm(len(context.train["y"]),
                                  generator=torch.Generator().manual_seed(dense.seed))[:1024]
            rows = rows[kept[rows]]
            scores = taylor_group_scores(model, groups, example, context.train["x"][rows],
                                         context.train["y"][rows])
        else:
            scores = magnitude_group_scores(model, groups, example)
        return RoundScores(weight_scores=spread_group_scores(groups, scores, masks))

    outcome = run_rounds(lambda state: context.build(dense.seed, state), dense.state,
                         dense.rewind_state, context.train, context.val, config, jmds,
                         masks, magnitude, task=context.meta.task, device=context.device,
                         groups=groups)
    return outcome.masks, outcome.seconds, outcome.samples_seen


def run_tp_magnitude(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
    masks, seconds, samples = _tp_magnitude_masks(context, dense, budget.model_sparsity)
    return _retrain_and_measure(context, dense, masks, None, seconds, "tp_magnitude",
                                budget, extra_samples=samples)[0]


def run_tp_taylor(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
    masks, seconds, samples = _tp_magnitude_masks(context, dense, budget.model_sparsity,
                                                  "taylor")
    return _retrain_and_measure(context, dense, masks, None, seconds, "tp_taylor", budget,
                                extra_samples=samples)[0]


def run_tp_phased(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
    """Structured phased: Torch-Pruning group magnitude to ρ_m, then forgetting scores of
    the pruned network (counted while it retrains on all data), then retrain on both."""
    masks, seconds, samples = _tp_magnitude_masks(context, dense, budget.model_sparsity)
    tracker = ForgettingTracker(context.train["id"])
    first, _ = _retrain_and_measure(context, dense, masks, None, seconds, "tp_magnitude",
                                    budget, on_batch=tracker.callback())
    samples += dense.samples_seen  # that retrain draws every row for the dense epochs
    kept = _select(context, tracker.scores().double(), budget.data_sparsity, keep="high",
                   mode="topk")
    spent = seconds + first["train_seconds"]
    return _retrain_and_measure(context, dense, masks, kept, spent, "tp_phased", budget,
                                extra_samples=samples)[0]


def _jmds_config(context: Context, budget: Budget, **changes: Any) -> JMDSConfig:
    return context.config.jmds.model_copy(update={
        "target_model_sparsity": budget.model_sparsity,
        "target_data_sparsity": budget.data_sparsity, "mode": "target", **changes})


def run_jmds(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
    """The paper's method as it states it (see PAPER)."""
    return _jmds(context, dense, budget, "jmds", _jmds_config(context, budget, **PAPER))


def run_jmds_default(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
    """JMDS with the project's configured defaults (conf/base/parameters_jmds.yml)."""
    return _jmds(context, dense, budget, "jmds_default", _jmds_config(context, budget))


def run_jmds_default_data_only(context: Context, dense: DenseRun, budget: Budget
                               ) -> dict[str, Any]:
    """The configured default's data step alone (all weights kept)."""
    return _jmds(context, dense, budget, "jmds_default_data_only",
                 _jmds_config(context, budget, prune_model=False))


def run_jmds_model_only(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
    return _jmds(context, dense, budget, "jmds_model_only",
                 _jmds_config(context, budget, **PAPER, prune_data=False))


def run_jmds_data_only(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
    return _jmds(context, dense, budget, "jmds_data_only",
                 _jmds_config(context, budget, **PAPER, prune_model=False))


def _variant(name: str, **changes: Any) -> Method:
    """A named deviation from the paper's JMDS: the same rounds with ``changes``."""

    def run(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
        return _jmds(context, dense, budget, name, _jmds_config(context, budget, **changes))

    run.__name__ = f"run_{name}"
    return run


# The paper's JMDS as stated runs as `jmds` (whatever parameters_jmds.yml says, these
# keys are forced to the paper's choices); the variants below each change one thing.
PAPER = {"keep": "high", "sample_selection": "class_balanced", "rescore_samples": True,
         "sample_score": "contribution", "tie_prior": True}
VARIANTS: dict[str, dict[str, Any]] = {
    "jmds_keep_hard": {"keep": "low"},  # the previous default: keep low c_i
    "jmds_ccs_trim": {"sample_selection": "stratified", "hard_cutoff": 0.1},  # CCS with β
    "jmds_coverage": {"sample_selection": "stratified"},  # CCS coverage over c_i, no trim
    # drop the 5 % lowest c_i of the candidates each round, the rest uniformly at random
    "jmds_trim_random": {"sample_selection": "stratified", "strata": 1, "hard_cutoff": 0.05},
    "jmds_mean_score": {"sample_score": "contribution_mean"},  # c_i averaged over rounds
    "jmds_untied": {"tie_prior": False},  # rounds trained without the evidence's prior
    "jmds_stale_scores": {"rescore_samples": False},  # phase C before the mask changed
    # Cost-aware schedules (issue 13) on the default's coverage selection: round 1 scores
    # the rewind point instead of the dense model (no full dense run), rounds of 10 or 5
    # epochs instead of 30.
    "jmds_coverage_early": {"sample_selection": "stratified", "score_from": "rewind",
                            "round_epochs": 10},
    "jmds_coverage_early5": {"sample_selection": "stratified", "score_from": "rewind",
                             "round_epochs": 5},
    "jmds_coverage_short": {"sample_selection": "stratified", "round_epochs": 10},
    # the default's selection with the schedule before issue 13: round 1 scores the trained
    # dense model, 30-epoch rounds, a full-length retrain (costs the dense run and more)
    "jmds_scored_dense": {"sample_selection": "stratified", "score_from": "dense",
                          "round_epochs": 30, "final_epochs": None},
}


def run_jmds_channel(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
    """The configured default JMDS on whole channels (``granularity: channel``)."""
    return _jmds(context, dense, budget, "jmds_channel",
                 _jmds_config(context, budget, granularity="channel"))


def run_jmds_channel_model_only(context: Context, dense: DenseRun, budget: Budget
                                ) -> dict[str, Any]:
    return _jmds(context, dense, budget, "jmds_channel_model_only",
                 _jmds_config(context, budget, granularity="channel", prune_data=False))


def run_jmds_diag(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
    return _jmds(context, dense, budget, "jmds_diag", _jmds_config(context, budget, **PAPER),
                 structure="diag")


def run_dense(context: Context, dense: DenseRun, budget: Budget) -> dict[str, Any]:
    """The dense model itself (its retrain from the rewind point is the dense run)."""
    return _retrain_and_measure(context, dense, None, None, 0.0, "dense", budget)[0]


Method = Callable[[Context, DenseRun, Budget], dict[str, Any]]

METHODS: dict[str, tuple[Method, str]] = {
    # name: (runner, which sparsities it uses: model, data or joint)
    "dense": (run_dense, "none"),
    "imp": (run_imp, "model"),
    "random_pruning": (run_random_pruning, "model"),
    "jmds_model_only": (run_jmds_model_only, "model"),
    "forgetting": (run_forgetting, "data"),
    "el2n": (run_el2n, "data"),
    "grand": (run_grand, "data"),
    "random_data": (run_random_data, "data"),
    "jmds_data_only": (run_jmds_data_only, "data"),
    "phased": (run_phased, "joint"),
    "jmds": (run_jmds, "joint"),
    "jmds_diag": (run_jmds_diag, "joint"),
    "jmds_default": (run_jmds_default, "joint"),
    "jmds_default_data_only": (run_jmds_default_data_only, "data"),
    # structured (whole channels): JMDS against Torch-Pruning's group magnitude
    "tp_magnitude": (run_tp_magnitude, "model"),
    "tp_taylor": (run_tp_taylor, "model"),
    "jmds_channel_model_only": (run_jmds_channel_model_only, "model"),
    "tp_phased": (run_tp_phased, "joint"),
    "jmds_channel": (run_jmds_channel, "joint"),
    **{name: (_variant(name, **PAPER | changes), "joint") for name, changes in VARIANTS.items()},
    **{f"{name}_data_only": (_variant(f"{name}_data_only", **PAPER | changes,
                                      prune_model=False), "data")
       for name, changes in VARIANTS.items() if name != "jmds_untied"},
}


def effective_budget(method: str, budget: Budget) -> Budget:
    """The part of the budget a method uses: model-only methods keep all data, etc."""
    kind = METHODS[method][1]
    if kind == "none":
        return Budget(0.0, 0.0)
    if kind == "model":
        return replace(budget, data_sparsity=0.0)
    if kind == "data":
        return replace(budget, model_sparsity=0.0)
    return budget
