"""Shared set-up of the issue-10 research scripts: a comparison Context for MNIST-1D made
with a chosen *generation* seed (the reported table uses the package default, 42; defaults
are chosen on other generation seeds and on the validation split)."""

from __future__ import annotations

import json
import os
from typing import Any

import torch
import yaml

from jmds_pipeline.comparison.methods import Context
from jmds_pipeline.config import build_run_config, deep_merge
from jmds_pipeline.data.registry import load_dataset
from jmds_pipeline.runtime import run_config_of  # noqa: F401  (re-exported for scripts)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def base_parameters() -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name in ("parameters.yml", "parameters_jmds.yml", "parameters_compare.yml"):
        with open(os.path.join(REPO, "conf", "base", name)) as handle:
            params.update(yaml.safe_load(handle))
    params["dataset"] = "mnist1d"
    return params


def make_context(generation_seed: int, split_seed: int = 0,
                 overrides: dict[str, Any] | None = None) -> Context:
    torch.set_num_threads(1)
    params = deep_merge(base_parameters(), overrides or {})
    params["dataset_options"] = {**(params.get("dataset_options") or {}),
                                 "seed": generation_seed}
    params.setdefault("training", {})
    params["training"] = {**(params["training"] or {}), "progress": False}
    config = build_run_config(params)
    splits, meta = load_dataset("mnist1d", raw_dir="data/01_raw", seed=split_seed,
                                options=config.dataset_options)
    return Context(config, meta, splits["train"], splits["val"], splits["test"])


def done_keys(path: str, fields: tuple[str, ...]) -> set[tuple]:
    """The ``fields`` of every row already in the JSON-lines file ``path`` (resumable runs)."""
    if not os.path.exists(path):
        return set()
    with open(path) as handle:
        return {tuple(row[f] for f in fields) for row in map(json.loads, handle)}
