"""``kedro`` under torchrun, with every file write under the project's ``data/`` recorded.

``python -m torch.distributed.run ... -m tests.distributed.kedro_watch LOG_DIR run ...``
runs ``kedro run ...`` unchanged on every rank; a Python audit hook notes each open for
writing, rename, removal and directory creation below ``./data`` (the catalog's files, the
provenance records, the run lock, DVCLive), and the rank's list is written to
``LOG_DIR/writes.rank<r>.json`` at exit, outside the project.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
EVENTS = {"os.rename", "os.remove", "os.mkdir", "os.rmdir", "os.truncate", "shutil.rmtree"}


def main(log_dir: str, *kedro_args: str) -> None:
    data = (Path.cwd() / "data").resolve()
    writes: list[str] = []

    def under_data(path: object) -> bool:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return False
        try:
            return Path(os.fsdecode(path)).resolve().is_relative_to(data)
        except (OSError, ValueError):
            return False

    def audit(event: str, args: tuple) -> None:
        if event == "open" and args:
            path, mode, flags = [*args, None, None][:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and bool(flags & WRITE_FLAGS)
            )
            if writing and under_data(path):
                writes.append(f"open {os.fsdecode(path)}")
        elif event in EVENTS:  # os.rename: (source, destination, ...), both recorded
            paths = args[:2] if event == "os.rename" else args[:1]
            writes.extend(f"{event} {os.fsdecode(p)}" for p in paths if under_data(p))

    sys.addaudithook(audit)
    from kedro.framework.cli import main as kedro_main

    sys.argv = ["kedro", *kedro_args]
    try:
        kedro_main()
    finally:
        log = Path(log_dir) / f"writes.rank{os.environ.get('RANK', '0')}.json"
        recorded = list(writes)
        log.write_text(json.dumps(recorded))


if __name__ == "__main__":
    main(*sys.argv[1:])
