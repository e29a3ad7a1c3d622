"""Kedro's config loader, with errors that name the configuration file at fault.

A file that is not UTF-8 text, or not YAML (binary garbage, a stray control character),
fails inside OmegaConf with a message that does not say which file it was. On such an
error each candidate file is read on its own, and the first one that fails is named.

The default dataset is written once, in ``globals.yml`` (the catalog's paths read it too);
the parameters get it from there when no parameters file or ``--params`` sets
``dataset``. Not as ``dataset: ${globals:dataset}`` in parameters.yml: ``dvc exp run -S``
rewrites a parameters file through plain OmegaConf, which does not know Kedro's
``globals`` resolver, and refuses the whole file ("Unsupported interpolation type").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException, OmegaConfigLoader
from omegaconf import OmegaConf

from jmds_pipeline.config import ConfigError


class NamingConfigLoader(OmegaConfigLoader):
    def __getitem__(self, key: str) -> dict[str, Any]:
        try:
            config = super().__getitem__(key)
            if key == "parameters" and "dataset" not in config:
                config = {**config, "dataset": self["globals"].get("dataset")}
            return config
        except (KeyError, MissingConfigException):
            raise
        except Exception as error:
            culprit = self._unreadable_file(key)
            if culprit is None:
                raise
            raise ConfigError(culprit) from error

    def _unreadable_file(self, key: str) -> str | None:
        patterns = self.config_patterns.get(key, [])
        envs = [self.base_env, self.env or self.default_run_env]
        for env in dict.fromkeys(e for e in envs if e):
            folder = Path(self.conf_source) / env
            if not folder.is_dir():
                continue
            files = sorted(
                {
                    p
                    for pattern in patterns
                    for p in folder.glob(pattern)
                    if p.is_file() and p.suffix in (".yml", ".yaml", ".json")
                }
            )
            for path in files:
                try:
                    OmegaConf.create(OmegaConf.load(path))
                except Exception as error:  # any reason: report it with the file's name
                    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                    return f"{path}: not a readable YAML/JSON configuration file ({reason})"
        return None
