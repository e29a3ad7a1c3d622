"""Provenance of persisted artefacts, so a resumed run never mixes stale inputs.

Every file a node writes gets a sidecar ``<file>.provenance.json``:

- ``node``: the node that wrote it;
- ``parameters``: the validated parameters that node depends on (flattened, see
  :func:`relevant_parameters`), and their hash;
- ``inputs``: for each file input, the content digest it had when it was read;
- ``content``: the digest of the file itself, taken right after it was written.

A resumed run (``kedro run --from-nodes=round_3.train``) reads some inputs from disk
instead of producing them. :func:`verify_input` checks each such input before any node
runs: its bytes are the ones recorded (not truncated or edited since), it was made with
the parameters of this run (else the differing key is named), and the inputs it was made
from have not been rewritten since (a stale round). Files without a sidecar (written
before this existed) are loaded once instead, which at least proves them readable.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jmds_pipeline.config import RunConfig
from jmds_pipeline.errors import RunError

SUFFIX = ".provenance.json"

IGNORED = ("device", "torch_threads", "raw_dir", "training.progress", "training.num_workers")
"""Parameters that cannot change a result (where it runs, how it reports progress)."""

_DATA = ("dataset", "seed", "dataset_options")
_DENSE = (*_DATA, "model", "model_options", "training", "rewind_epoch")
_ROUNDS = (*_DENSE, "jmds")
SCOPES: dict[str, tuple[str, ...]] = {
    "load_splits": _DATA,
    "pretrain_dense": _DENSE,
    # All weights active, all samples kept: only which layers are prunable matters.
    "jmds.initial_sparsity": (*_DATA, "model", "model_options", "jmds.include_output_layer",
                              "jmds.include_embeddings"),
    "evaluate_dense": _DENSE,
    "evaluate_jmds": _ROUNDS,
}
"""Node name → the parameter sections it depends on (prefixes); see ``scope_of``."""


class ProvenanceError(RunError):
    """A persisted input does not come from this run's parameters and inputs."""


def scope_of(node_name: str) -> tuple[str, ...] | None:
    """The parameter prefixes ``node_name`` depends on; ``None``: all of them.

    Round nodes do not read ``jmds.final_epochs`` (only the final retrain does), so
    changing it does not invalidate the rounds.
    """
    if node_name in SCOPES:
        return SCOPES[node_name]
    if node_name.startswith("round_") or node_name.startswith("jmds."):
        return _ROUNDS
    return None


def flat_parameters(config: RunConfig) -> dict[str, Any]:
    """``{"training.lr": 0.05, ...}`` from the validated configuration, JSON-typed."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            flat[prefix] = value

    walk("", config.model_dump(mode="json"))
    return flat


def relevant_parameters(flat: Mapping[str, Any], node_name: str) -> dict[str, Any]:
    scope = scope_of(node_name)

    def within(key: str, prefixes: tuple[str, ...]) -> bool:
        return any(key == p or key.startswith(p + ".") for p in prefixes)

    chosen = {k: v for k, v in flat.items()
              if not within(k, IGNORED) and (scope is None or within(k, scope))}
    if node_name.startswith("round_"):
        chosen.pop("jmds.final_epochs", None)
    return dict(sorted(chosen.items()))


def parameters_hash(parameters: Mapping[str, Any]) -> str:
    text = json.dumps(parameters, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + SUFFIX)


def read_record(path: Path) -> dict[str, Any] | None:
    """The sidecar of ``path``, or ``None`` when it has none."""
    side = sidecar(path)
    if not side.exists():
        return None
    try:
        record = json.loads(side.read_text())
    except (OSError, ValueError) as error:
        raise ProvenanceError(f"{side} is unreadable ({error}); delete it and rerun the node "
                              "that writes the file next to it") from None
    if not isinstance(record, dict) or "content" not in record:
        raise ProvenanceError(f"{side} is not a provenance record")
    return record


def write_record(path: Path, record: Mapping[str, Any]) -> None:
    """Write atomically: a kill leaves the old sidecar (then the digest check fails)."""
    side = sidecar(path)
    partial = side.with_name(side.name + ".partial")
    partial.write_text(json.dumps(record, indent=1, sort_keys=True))
    os.replace(partial, side)


def make_record(node_name: str, parameters: Mapping[str, Any],
                inputs: Mapping[str, str | None], path: Path) -> dict[str, Any]:
    return {
        "node": node_name,
        "parameters": dict(parameters),
        "parameters_hash": parameters_hash(parameters),
        "inputs": dict(inputs),
        "content": file_digest(path),
    }


def current_digest(path: Path) -> str | None:
    """The recorded digest of a file (its sidecar's), else a fresh one; None if absent."""
    if not path.exists():
        return None
    record = read_record(path)
    return record["content"] if record else file_digest(path)


def _show(value: Any) -> str:
    return "unset" if value is _MISSING else repr(value)


_MISSING = object()


def differing_parameters(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``["jmds.target_model_sparsity = 0.8 there, 0.9 now"]`` for each key that differs."""
    lines = []
    for key in sorted(set(recorded) | set(now)):
        then, current = recorded.get(key, _MISSING), now.get(key, _MISSING)
        if then != current:
            lines.append(f"{key} = {_show(then)} there, {_show(current)} now")
    return lines


def verify_input(
    name: str,
    path: Path,
    flat: Mapping[str, Any],
    path_of: Callable[[str], Path | None],
) -> bool:
    """Check a persisted input of a resumed run; False when it has no record to check.

    ``flat`` is this run's :func:`flat_parameters`; ``path_of`` maps a catalog name to
    its file (``None`` for in-memory data).
    """
    record = read_record(path)
    if record is None:
        return False
    writer = record.get("node", "?")
    rerun = f"rerun from it: kedro run --from-nodes={writer}"
    if file_digest(path) != record["content"]:
        raise ProvenanceError(
            f"{name} ({path}) changed after node {writer} wrote it (truncated or edited); {rerun}"
        )
    differ = differing_parameters(record.get("parameters", {}),
                                  relevant_parameters(flat, writer))
    if differ:
        shown = "; ".join(differ[:3]) + (f"; and {len(differ) - 3} more" if len(differ) > 3
                                         else "")
        raise ProvenanceError(
            f"{name} was made by node {writer} with other parameters ({shown}); {rerun}"
        )
    for source, digest in (record.get("inputs") or {}).items():
        source_path = path_of(source)
        if digest is None or source_path is None:
            continue
        now = current_digest(source_path)
        if now is not None and now != digest:
            raise ProvenanceError(
                f"{name} is stale: it was made from an earlier {source}, rewritten since; "
                f"{rerun}"
            )
    return True
