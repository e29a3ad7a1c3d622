"""Errors that refuse a run for a stated reason: shown as one short message, no traceback.

Every subclass carries a message that already says what is wrong and what to do, so the
command line prints just that (``JMDS_VERBOSE=1`` brings the traceback back); see
:func:`install_short_errors`.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Any

VERBOSE_ENV = "JMDS_VERBOSE"


class RunError(ValueError):
    """The run is refused or stopped; the message names the cause and the remedy."""


def verbose() -> bool:
    """Full tracebacks wanted: ``JMDS_VERBOSE=1`` or ``--verbose`` on the command line."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0") or "--verbose" in sys.argv


def _short_types() -> tuple[type[BaseException], ...]:
    from kedro.io import DatasetError

    return (RunError, DatasetError)


def install_short_errors() -> None:
    """Print :class:`RunError` (and catalog ``DatasetError``) as ``Error: message`` only.

    Wraps whatever ``sys.excepthook`` is installed (Kedro installs rich's), so other
    exceptions keep their full traceback. Idempotent.
    """
    previous = sys.excepthook
    if getattr(previous, "_jmds_short", False):
        return

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> Any:
        if isinstance(error, _short_types()) and not verbose():
            print(f"Error: {error}\n(set {VERBOSE_ENV}=1 for the traceback)", file=sys.stderr)
            return None
        return previous(kind, error, tb)

    hook._jmds_short = True  # type: ignore[attr-defined]
    sys.excepthook = hook
