"""Typed, validated run configuration.

Kedro hands nodes plain dictionaries; this module turns the merged ``parameters`` into
small pydantic models (OpenLTH-style hyper-parameter groups) and rejects bad input with
one message naming the key, the value and what is accepted, before any work starts.

A run's training recipe is ``recipes.<dataset>`` overlaid with the user's ``training``
section, so ``--params dataset=cifar10`` picks the CIFAR recipe and
``--params training.epochs=5`` still wins over it.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from jmds_pipeline.errors import RunError


class ConfigError(RunError):
    """A parameter is invalid; the message names the key, its value and what is accepted."""


def _leaf_types(annotation: Any) -> set[Any]:
    """The plain types an annotation accepts (``int | None`` → {int, NoneType})."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return set().union(*(_leaf_types(arg) for arg in typing.get_args(annotation)))
    return {annotation}


class _Section(BaseModel):
    # Finite floats only: `training.lr=inf` is a typo, never a setting.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads `epochs: true` as 1; a boolean is never a count.
        if isinstance(value, bool) and info.field_name is not None:
            leaves = _leaf_types(cls.model_fields[info.field_name].annotation)
            if bool not in leaves and leaves & {int, float}:
                kind = "an integer" if int in leaves else "a number"
                raise ValueError(f"a boolean is not a number; accepted: {kind}")
        return value


class TrainingConfig(_Section):
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1024, ge=1)
    lr_schedule: Literal["cosine", "step", "constant"] = "cosine"
    step_milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of the epochs
    step_gamma: float = Field(0.1, gt=0, le=1)
    warmup_epochs: int = Field(0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)
    augment: Literal["none", "crop_flip", "shift"] = "none"  # shift: 1-D signals (MNIST-1D)
    max_shift: int = Field(4, ge=1)  # augment: shift moves a signal by up to this many steps
    # Gaussian prior N(0, α⁻¹I) in the training loss, α/(2·N) Σθ² on the mean loss (N: the
    # kept rows' total weight), so that training finds the MAP whose Laplace evidence JMDS
    # estimates. null: no prior term (weight_decay still applies).
    prior_precision: float | None = Field(None, gt=0)
    # bf16 autocast / NHWC image batches on the run's device (CPU too: there bf16 is only
    # faster with AMX/AVX-512-BF16, so conf/base leaves both off; conf/gpu turns them on)
    mixed_precision: bool = False
    channels_last: bool = False
    num_workers: int = Field(0, ge=0)
    progress: bool = True


class EvidenceSettings(_Section):
    """How the Laplace evidence and the contributions are computed (see evidence/)."""

    structure: Literal["full", "diag", "kfac"] = "kfac"
    subsample_size: int | None = Field(1024, ge=1)  # M of the NTK subsampling
    class_balanced: bool = True
    prior_precision: float | None = Field(None, gt=0)  # None: maximise the evidence
    prior_mode: Literal["scalar", "layerwise"] = "scalar"
    weight_score: Literal["obs", "diag", "first_order"] = "diag"
    fisher: Literal["exact", "mc"] = "mc"
    # per-sample tr(P⁻¹H_i) of K-FAC layers: exact, or kron (the per-sample Kronecker
    # analogue: the same for Linear layers, cheaper for convolutions; evidence/curvature/kfac)
    # lowrank: opt-in approximation, only A's top leverage_rank eigenvectors projected on
    leverage: Literal["exact", "kron", "lowrank"] | None = Field(None, validate_default=True)
    leverage_rank: int = Field(32, ge=1)
    # tr(P⁻¹H_i) of partly pruned K-FAC layers: sparse (exact, default), dense (exact, the
    # former route) or diag (opt-in approximation, (1 − ρ) Σ_{j∈S} (P⁻¹)_jj ψ_j² on layers
    # with at most 60 % of their weights active; errors in benchmarks/results/cost.json)
    masked_leverage: Literal["sparse", "dense", "diag"] = "sparse"
    batch_size: int = Field(256, ge=1)
    # bf16 autocast of the evidence's forward passes (factors stay float64; kfac/diag only)
    mixed_precision: bool = False

    @field_validator("leverage")
    @classmethod
    def _default_leverage(cls, value: str | None) -> str:
        return "exact" if value is None else value


class JMDSConfig(_Section):
    """The alternating rounds: targets or penalties, selection rules, round training."""

    rounds: int = Field(3, ge=1)
    mode: Literal["target", "penalty"] = "target"
    target_model_sparsity: float = Field(0.8, ge=0, lt=1)
    target_data_sparsity: float = Field(0.5, ge=0, lt=1)
    schedule: Literal["geometric", "cubic"] = "geometric"
    lambda_model: float = Field(0.0, ge=0)  # λ1, penalty mode
    # λ2, penalty mode. Sample contributions are ≤ 0 for classification, so λ2 ≥ 0 drops
    # samples up to max_data_sparsity; λ2 < 0 is a reward of |λ2| nats per kept sample.
    lambda_data: float = 0.0
    max_model_sparsity: float = Field(0.99, ge=0, lt=1)  # penalty-mode safety caps
    max_data_sparsity: float = Field(0.95, ge=0, lt=1)
    round_epochs: int | None = Field(None, ge=1, validate_default=True)  # None: 30
    rewind: bool = True  # each round trains from the rewind point (else continues)
    final_epochs: int | None = Field(None, ge=1)  # None: training.epochs
    weight_scope: Literal["global", "layerwise"] = "global"
    include_output_layer: bool = False
    include_embeddings: bool = False
    sample_selection: Literal["class_balanced", "topk", "stratified"] = "class_balanced"
    # high: keep the samples with the highest contribution c_i = ∂log Z/∂s_i (the paper's
    # objective); low: keep the hard, high-leverage ones (a named variant, target mode only)
    keep: Literal["high", "low"] = "high"
    strata: int = Field(50, ge=1)  # sample_selection: stratified (CCS), number of bins
    hard_cutoff: float = Field(0.0, ge=0, lt=1)  # stratified: first drop this fraction at
                                                 # the end the keep direction values least
    # Phase C scores the samples under the mask phase B has just chosen (the paper's order);
    # false: reuse the contributions computed before the mask changed (the old behaviour).
    rescore_samples: bool = True
    # contribution: c_i of this round; contribution_mean: c_i averaged over the rounds so
    # far (scores along training rather than at one converged θ)
    sample_score: Literal["contribution", "contribution_mean"] = "contribution"
    # Phase A trains the MAP of the objective whose evidence is estimated: the loss carries
    # the prior α/(2N) Σθ², α re-estimated by each round's evidence (Immer et al. 2021).
    tie_prior: bool = True
    # dense: round 1 scores the fully trained dense model; rewind: it scores the rewind
    # point instead (early scoring, as "data diet" pruning scores early in training, Paul
    # et al. 2021), so the JMDS run needs the dense schedule only up to the rewind epoch.
    score_from: Literal["dense", "rewind"] | None = Field(None, validate_default=True)
    rescale_kept: bool = True  # weight the K kept samples by N/K inside the evidence
    prune_model: bool = True  # ablations: model-only / data-only
    prune_data: bool = True
    # weight: element masks; channel: whole output units (weight rows + biases, and the
    # columns that read them) scored by the evidence change of the whole unit
    granularity: Literal["weight", "channel"] = "weight"
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)

    @field_validator("round_epochs")
    @classmethod
    def _default_round_epochs(cls, epochs: int | None) -> int:
        return 30 if epochs is None else epochs

    @field_validator("score_from")
    @classmethod
    def _default_score_from(cls, value: str | None) -> str:
        return "dense" if value is None else value

    @field_validator("lambda_data")
    @classmethod
    def _finite_lambda(cls, value: float) -> float:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
        return value

    @model_validator(mode="after")
    def _penalty_keeps_high(self) -> JMDSConfig:
        if self.mode == "penalty" and self.keep == "low":
            raise ValueError(
                "jmds.keep = 'low' with jmds.mode = 'penalty': the penalty objective "
                "log Z − λ2‖s‖₀ always keeps the highest contributions; accepted: keep: high "
                "in penalty mode, or mode: target for the keep-hard variant"
            )
        if self.granularity == "channel":
            _check_channel_settings(self)
        if self.tie_prior and self.evidence.prior_mode != "scalar":
            raise ValueError(
                "jmds.tie_prior = true needs jmds.evidence.prior_mode = 'scalar' (one α "
                "for the training loss); accepted: prior_mode: scalar, or tie_prior: false"
            )
        return self


def _check_channel_settings(config: JMDSConfig) -> None:
    """Channel granularity: target mode, global budget, hidden layers only."""
    wrong = {"mode": (config.mode, "target"), "weight_scope": (config.weight_scope, "global"),
             "include_output_layer": (config.include_output_layer, False),
             "include_embeddings": (config.include_embeddings, False)}
    for key, (value, accepted) in wrong.items():
        if value != accepted:
            raise ValueError(
                f"jmds.{key} = {value!r} with jmds.granularity = 'channel'; accepted there: "
                f"{accepted!r} (channels are removed to one global target, and the output "
                "layer's units are the classes)"
            )
    if config.evidence.structure == "full":
        raise ValueError("jmds.evidence.structure = 'full' with jmds.granularity = 'channel'; "
                         "accepted there: 'kfac' or 'diag'")


class GridConfig(_Section):
    """The JMDS accuracy heat map over model × data sparsity."""

    model_sparsities: tuple[float, ...] = (0.5, 0.8, 0.9)
    data_sparsities: tuple[float, ...] = (0.3, 0.5, 0.7)
    seeds: tuple[int, ...] = (0,)

    @field_validator("model_sparsities", "data_sparsities")
    @classmethod
    def _fractions(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        bad = [v for v in values if not 0 <= v < 1]
        if bad:
            raise ValueError(f"sparsities {bad} are outside [0, 1)")
        return values


class CompareConfig(_Section):
    """Methods × seeds × budgets of the comparison (the paper's main table)."""

    methods: tuple[str, ...] = (
        "dense", "imp", "random_pruning", "jmds_model_only", "forgetting", "el2n", "grand",
        "random_data", "jmds_data_only", "phased", "jmds", "jmds_diag",
    )
    seeds: tuple[int, ...] = Field((0, 1, 2), min_length=1)
    budgets: tuple[tuple[float, float], ...] = Field(((0.8, 0.5), (0.9, 0.7)), min_length=1)
    # paired differences (a − b, per budget, over the seeds both ran) in the summary
    paired: tuple[tuple[str, str], ...] = (
        ("jmds", "phased"), ("jmds_default", "phased"), ("jmds", "imp"),
        ("jmds_data_only", "random_data"), ("jmds_default_data_only", "random_data"),
    )
    el2n_models: int = Field(2, ge=1)
    # IMP's epochs per round (IMP and phased); None: jmds.round_epochs, the JMDS rounds'
    imp_round_epochs: int | None = Field(None, ge=1)
    el2n_epoch_fraction: float = Field(0.1, gt=0, le=1)
    grid: GridConfig = Field(default_factory=GridConfig)

    # Method names are checked by comparison.runner.check_methods when the compare
    # pipeline starts, before any training: the methods import this module, so checking
    # them here made an import cycle (config → comparison.methods → config).

    @field_validator("budgets")
    @classmethod
    def _fractions(cls, budgets: tuple[tuple[float, float], ...]) -> tuple:
        bad = [b for b in budgets if not all(0 <= v < 1 for v in b)]
        if bad:
            raise ValueError(f"budgets {bad} have a sparsity outside [0, 1)")
        return budgets



class RunConfig(_Section):
    dataset: str
    model: str
    seed: int = 0
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    torch_threads: int | None = Field(None, ge=1)
    raw_dir: str = "data/01_raw"
    dataset_options: dict[str, Any] = Field(default_factory=dict)
    model_options: dict[str, Any] = Field(default_factory=dict)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    rewind_epoch: int = Field(1, ge=0)
    dvclive: bool = True  # per-epoch and per-round DVCLive series (see tracking.py)
    jmds: JMDSConfig = Field(default_factory=JMDSConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        from jmds_pipeline.data import DATASETS

        if name not in DATASETS:
            raise ValueError(f"not a known dataset; accepted: {sorted(DATASETS)}")
        return name

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str) -> str:
        from jmds_pipeline.models import MODELS

        if name not in MODELS:
            raise ValueError(f"not a known model; accepted: {sorted(MODELS)}")
        return name

    @model_validator(mode="after")
    def _rewind_within_training(self) -> RunConfig:
        if self.rewind_epoch > self.training.epochs:
            raise ValueError(
                f"rewind_epoch = {self.rewind_epoch} exceeds training.epochs = "
                f"{self.training.epochs}; accepted: 0 .. training.epochs"
            )
        return self

    def resolved_device(self) -> str:
        """The torch device to use; fails with a clear message if CUDA is asked but absent."""
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                "device = 'cuda' but this machine has no CUDA device; "
                "accepted here: 'cpu' or 'auto' (run without --env gpu)"
            )
        return self.device


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in key by key (nested mappings recurse).

    A ``None`` in ``override`` defers to ``base`` when ``base`` sets the key: ``null`` in a
    parameters file means "the recipe's value" (or the field's default when no recipe
    sets it).
    """
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        elif value is not None or key not in merged:
            merged[key] = value
    return merged


TOP_LEVEL_EXTRAS = frozenset({"recipes"})
"""Top-level parameter keys that are not :class:`RunConfig` fields but are read."""


def _section_at(model: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The section model that the dotted ``path`` (without its last key) lands in."""
    for part in path:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        nested = [t for t in _leaf_types(field.annotation)
                  if isinstance(t, type) and issubclass(t, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return model


def suggestion(key: str, candidates: typing.Iterable[str]) -> str:
    """``"; did you mean 'training'?"`` for the closest candidate, else ``""``."""
    close = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_key_line(path: tuple[Any, ...], candidates: typing.Iterable[str]) -> str:
    key = ".".join(str(part) for part in path)
    return f"{key}: unknown key{suggestion(str(path[-1]), candidates)}"


def format_validation_error(error: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``key = value: reason``; unknown keys get a "did you mean"."""
    problems = error.errors()
    dataset_is_bad = any(p["loc"][:1] == ("dataset",) for p in problems)
    lines = []
    for problem in problems:
        key = ".".join(str(part) for part in problem["loc"])
        value = problem.get("input")
        message = problem["msg"].removeprefix("Value error, ")
        if not key:  # a cross-field check: its message already names the keys
            lines.append(message)
        elif problem["type"] == "missing":
            if key == "model" and dataset_is_bad:
                continue  # the model follows from the dataset, whose line says what's wrong
            lines.append(f"{key}: required but not set")
        elif problem["type"] == "extra_forbidden":
            section = _section_at(model, problem["loc"][:-1]) if model else None
            candidates = section.model_fields if section else ()
            lines.append(unknown_key_line(problem["loc"], candidates))
        else:
            lines.append(f"{key} = {value!r}: {message}")
    return lines_error(lines)


def lines_error(lines: list[str]) -> str:
    return "invalid parameters:\n  " + "\n  ".join(lines)


def unknown_top_level_keys(parameters: Mapping[str, Any]) -> list[str]:
    """One line per top-level key (or recipe key) that nothing reads."""
    fields = set(RunConfig.model_fields)
    known = fields | TOP_LEVEL_EXTRAS
    lines = [unknown_key_line((key,), known) for key in parameters if key not in known]
    recipes = parameters.get("recipes") or {}
    if isinstance(recipes, Mapping):
        from jmds_pipeline.data import DATASETS

        for name, recipe in recipes.items():
            if name not in DATASETS:
                lines.append(unknown_key_line(("recipes", name), DATASETS))
            elif isinstance(recipe, Mapping):
                lines += [unknown_key_line(("recipes", name, key), fields - {"dataset"})
                          for key in recipe if key not in fields - {"dataset"}]
    return lines


def recipe_for(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset's recipe merged under the user's top-level sections."""
    dataset = parameters.get("dataset")
    recipes = parameters.get("recipes", {}) or {}
    recipe = recipes.get(dataset, {}) if isinstance(dataset, str) else {}
    return dict(recipe or {})


def build_run_config(parameters: Mapping[str, Any]) -> RunConfig:
    """Validate the run-level parameters (dataset, model, training...)."""
    recipe = recipe_for(parameters)
    fields = set(RunConfig.model_fields)
    payload: dict[str, Any] = {k: v for k, v in recipe.items() if k in fields}
    for key in fields:
        if key in parameters and parameters[key] is not None:
            value = parameters[key]
            if isinstance(value, Mapping) and isinstance(payload.get(key), Mapping):
                payload[key] = deep_merge(payload[key], value)
            else:
                payload[key] = value
    if payload.get("model") is None and isinstance(payload.get("dataset"), str):
        from jmds_pipeline.models import default_model_for

        try:
            payload["model"] = default_model_for(payload["dataset"])
        except (KeyError, ValueError):
            payload.pop("model", None)  # the dataset's own error says what is wrong
    unknown = unknown_top_level_keys(parameters)
    try:
        config = RunConfig.model_validate(payload)
    except ValidationError as error:
        lines = format_validation_error(error, RunConfig).splitlines()[1:]
        raise ConfigError(lines_error(unknown + [line.strip() for line in lines])) from None
    if unknown:
        raise ConfigError(lines_error(unknown))
    return config


def validate_parameters(parameters: Mapping[str, Any]) -> RunConfig:
    """Validate every parameter section the pipelines read; return the run config.

    Each section's model raises :class:`ConfigError` naming the bad key and value.
    """
    return build_run_config(parameters)
