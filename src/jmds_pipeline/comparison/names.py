"""The names of the comparison's methods and which sparsities each uses.

A leaf module (it imports nothing from the project) so that the configuration can
validate ``compare.methods`` before any work starts without importing the methods
themselves, which import the configuration: that was an import cycle
(config → comparison.methods → config). ``comparison.methods.METHODS`` maps the same names
to their runners; a test keeps the two in step.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["none", "model", "data", "joint"]

METHOD_KINDS: dict[str, Kind] = {
    # name: which sparsities it uses (none: the dense model; joint: model and data)
    "dense": "none",
    "imp": "model",
    "random_pruning": "model",
    "jmds_model_only": "model",
    "forgetting": "data",
    "el2n": "data",
    "grand": "data",
    "random_data": "data",
    "jmds_data_only": "data",
    "phased": "joint",
    "jmds": "joint",
    "jmds_diag": "joint",
}
