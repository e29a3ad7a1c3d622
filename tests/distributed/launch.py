"""Starting torchrun from a test: ``sys.executable -m torch.distributed.run``, 127.0.0.1 only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's choice for 127.0.0.1:0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment() -> dict[str, str]:
    """This worktree's code first on the path; one thread per rank; nothing phones home."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", KEDRO_DISABLE_TELEMETRY="1", DVC_NO_ANALYTICS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # a test run under torchrun itself must not leak its own
    return env


def torchrun_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def single_node(nproc: int, port: int) -> list[str]:
    return [f"--nproc-per-node={nproc}", "--master-addr=127.0.0.1", f"--master-port={port}"]


def run(command: list[str], cwd: Path, timeout: float = 240.0) -> None:
    """Run ``command``; on failure the assertion shows the end of its output."""
    done = subprocess.run(
        command,
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, (
        f"{' '.join(command)} exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}"
    )


def wait_all(processes: list[subprocess.Popen], timeout: float = 240.0) -> None:
    """Wait for processes started together; on any failure, stop the rest and show why."""
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, out in zip(processes, outputs, strict=True):
        assert p.returncode == 0, f"{' '.join(p.args)} exited {p.returncode}:\n{out[-4000:]}"
