"""Project hooks: everything a run checks before and around its nodes.

- before the run: every parameter validated (short errors, see ``errors``); the
  dataset's run lock taken (``runlock``); every input read from disk rather than
  produced by this run checked against its provenance record and loaded or hashed, so
  a resumed run refuses stale or corrupted inputs before it writes anything;
- before each node: mask sets checked against the model, states read with masks
  evaluated as θ ⊙ m (``integrity``), and the digests of the node's inputs noted;
- after each save: the file's provenance sidecar written (``provenance``);
- after each node: a training history that ended at chance-level loss is reported.

Under torchrun (``torchrun --nproc-per-node=N -m kedro run``) the process group is joined
before the run; rank 0 alone takes the run lock and writes provenance records (and, via
``rank_catalog``, every file); the other ranks wait for it at a barrier before any node.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from kedro.framework.hooks import hook_impl
from kedro.io import DatasetError

from jmds_pipeline import distributed
from jmds_pipeline.config import ConfigError, RunConfig, validate_parameters
from jmds_pipeline.errors import RunError, install_short_errors
from jmds_pipeline.guards import warn_if_not_learned
from jmds_pipeline.integrity import check_masks_fit, masked_state
from jmds_pipeline.pipeline_registry import configured_rounds, rounds_source
from jmds_pipeline.provenance import (
    ProvenanceError,
    current_digest,
    file_digest,
    flat_parameters,
    make_record,
    relevant_parameters,
    verify_input,
    write_record,
)
from jmds_pipeline.runlock import RunLock, lock_path

logger = logging.getLogger(__name__)


def filepath_of(catalog: Any, name: str) -> Path | None:
    """The local file behind a catalog entry; ``None`` for in-memory or remote data."""
    if name == "parameters" or name.startswith("params:"):
        return None
    try:
        dataset = catalog.get(name)
    except Exception:  # a name no pattern resolves: nothing on disk to check
        return None
    filepath = getattr(dataset, "_filepath", None)
    protocol = getattr(dataset, "_protocol", "file")
    if filepath is None or protocol not in ("file", None):
        return None
    return Path(str(filepath))


def _is_masks(name: str) -> bool:
    return name.rsplit(".", 1)[-1].endswith("masks")


def _is_state(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last.endswith("state") and last != "rewind_state"


def _rounds_check(config: RunConfig, run_params: dict[str, Any], pipeline: Any) -> None:
    runs_rounds = any((n.namespace or "").startswith("round_") for n in pipeline.nodes)
    built = configured_rounds()
    if not runs_rounds or built == config.jmds.rounds:
        return
    given = ((run_params.get("runtime_params") or {}).get("jmds") or {}).get("rounds")
    if given is not None:
        where = ("it was given with --params, which cannot change it (the pipeline's shape "
                 "is fixed before --params is read)")
    else:
        where = (f"it comes from conf/{run_params.get('env')}, which the pipeline builder did "
                 f"not read (it read {rounds_source()}); run with KEDRO_ENV="
                 f"{run_params.get('env')} so both see the same value")
    raise ConfigError(
        f"jmds.rounds = {config.jmds.rounds} but the pipeline was built with {built} rounds: "
        f"{where}; set jmds.rounds in conf/base/parameters_jmds.yml or conf/local"
    )


def _runner_check(run_params: dict[str, Any]) -> None:
    """Under torchrun every save is a barrier that all ranks reach in the same order: only
    the sequential runner saves in a fixed order (Kedro records the runner as its str;
    "None" when the session chose its default, the sequential one)."""
    runner = str(run_params.get("runner"))
    if distributed.is_distributed() and runner != "None" and "SequentialRunner" not in runner:
        raise ConfigError(
            f"runner = {runner} under torchrun; accepted: the default SequentialRunner "
            "(each rank saves through a barrier, in the pipeline's order)"
        )


class RunSetupHooks:
    def __init__(self) -> None:
        self._lock: RunLock | None = None
        self._flat: dict[str, Any] = {}
        self._catalog: Any = None
        self._node_inputs: dict[str, dict[str, str | None]] = {}
        self._digests: dict[tuple[str, int, int], str] = {}
        self._joined = False  # whether this run joined torchrun's process group

    # -- the run ------------------------------------------------------------------------

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        install_short_errors()

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """Fail fast: a bad key, a busy dataset or a stale input stops the run here."""
        install_short_errors()
        parameters = catalog.load("parameters")
        config = validate_parameters(parameters)
        device = config.resolved_device()  # raises if CUDA is asked for but absent
        self._joined = distributed.init_from_env(device)
        _runner_check(run_params)
        _rounds_check(config, run_params, pipeline)
        if config.torch_threads is not None:
            torch.set_num_threads(config.torch_threads)
        self._flat = flat_parameters(config)
        self._catalog = catalog
        self._node_inputs = {}
        root = Path(run_params.get("project_path") or Path.cwd())
        # The lock guards the files, which only rank 0 writes: ranks 1.. must not take it
        # (they would refuse their own job), and wait below until rank 0 holds it.
        if distributed.is_rank_zero():
            self._lock = RunLock(lock_path(root, config.dataset))
            self._lock.acquire()
        try:
            self._verify_persisted_inputs(pipeline, catalog, parameters)
        except BaseException:
            self._release()
            raise
        distributed.barrier()
        logger.info(
            "dataset=%s model=%s device=%s seed=%d", config.dataset, config.model, device,
            config.seed,
        )

    def _verify_persisted_inputs(self, pipeline: Any, catalog: Any, parameters: Any) -> None:
        """Every input this run reads but does not write: recorded, intact, current.

        All inputs are checked and every problem reported (one line each), so a resume
        that needs several stages redone says so at once.
        """
        problems: list[Exception] = []
        for name in sorted(pipeline.inputs()):
            path = filepath_of(catalog, name)
            if path is None or not path.exists():
                continue  # in memory, or missing: Kedro's load names the missing file
            try:
                recorded = verify_input(name, path, self._flat,
                                        lambda source: filepath_of(catalog, source))
                if _is_masks(name):
                    self._check_masks(name, catalog.load(name), parameters, catalog, {})
                elif not recorded:
                    catalog.load(name)  # no record (older run): at least prove it readable
            except (RunError, DatasetError) as error:
                problems.append(error)
        if len(problems) == 1:
            raise problems[0]
        if problems:
            raise ProvenanceError(
                f"{len(problems)} inputs of this run cannot be used:\n  "
                + "\n  ".join(str(problem) for problem in problems)
            )

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._release()
        if self._joined:
            distributed.teardown()
            self._joined = False

    @hook_impl
    def on_pipeline_error(self) -> None:
        # no teardown barrier: the other ranks may never reach it; torchrun stops them
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- each node ----------------------------------------------------------------------

    def _digest(self, path: Path) -> str | None:
        """Content digest of ``path``, hashed at most once per version of the file."""
        if not path.exists():
            return None
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in self._digests:
            self._digests[key] = current_digest(path) or file_digest(path)
        return self._digests[key]

    def _check_masks(self, name: str, masks: Any, parameters: Any, catalog: Any,
                     inputs: dict[str, Any]) -> None:
        from jmds_pipeline.data.types import DatasetMeta
        from jmds_pipeline.runtime import mask_names, run_config_of, seeded_model

        meta = inputs.get("dataset_meta")
        if meta is None:
            path = filepath_of(catalog, "dataset_meta")
            if path is None or not path.exists():
                return
            meta = catalog.load("dataset_meta")
        config = run_config_of(parameters)
        meta = DatasetMeta.from_dict(meta)
        with torch.random.fork_rng(devices=[]):  # the node's own seeding stays unaffected
            model = seeded_model(config, meta)
        prunable = mask_names(config, meta, model)  # channel mode: biases of units too
        check_masks_fit(masks, model, prunable, name)

    @hook_impl
    def before_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any]) -> dict | None:
        self._node_inputs[node.name] = {}
        for name in node.inputs:
            path = filepath_of(catalog, name)
            # the digests go into provenance records, which rank 0 alone writes
            if path is not None and distributed.is_rank_zero():
                self._node_inputs[node.name][name] = self._digest(path)
        mask_names = [name for name in node.inputs if _is_masks(name)]
        parameters = inputs.get("parameters")
        if not mask_names or parameters is None:
            return None
        replaced: dict[str, Any] = {}
        for mask_name in mask_names:
            self._check_masks(mask_name, inputs[mask_name], parameters, catalog, inputs)
        # A state read with one mask set is evaluated as θ ⊙ m. Training nodes (they read
        # the rewind point) apply the mask themselves, to whichever state they start from.
        if len(mask_names) == 1 and "rewind_state" not in node.inputs:
            masks = inputs[mask_names[0]]
            for name in node.inputs:
                if _is_state(name) and isinstance(inputs.get(name), dict):
                    fixed = masked_state(inputs[name], masks, name)
                    if fixed is not None:
                        replaced[name] = fixed
        return replaced or None

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, node: Any) -> None:
        if self._catalog is None or not distributed.is_rank_zero():
            return
        path = filepath_of(self._catalog, dataset_name)
        if path is None or not path.exists():
            return
        parameters = relevant_parameters(self._flat, node.name)
        inputs = self._node_inputs.get(node.name, {})
        write_record(path, make_record(node.name, parameters, inputs, path))

    @hook_impl
    def after_node_run(self, node: Any, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        meta = inputs.get("dataset_meta")
        if not isinstance(meta, dict) or meta.get("task") != "classification":
            return
        for name, value in outputs.items():
            history = (isinstance(value, pd.DataFrame) and len(value) > 0
                       and {"phase", "train_loss"} <= set(value.columns))
            if history:
                with contextlib.suppress(KeyError, ValueError, TypeError):
                    warn_if_not_learned(float(value["train_loss"].iloc[-1]),
                                        int(meta["num_classes"]), name)
