"""Background processes the demo starts: recorded by pid, checked, stopped cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from streams.errors import GembaError

__all__ = [
    "ProcessError",
    "is_running",
    "spawn",
    "stop_process",
    "tail",
    "wait_for_url",
]


class ProcessError(GembaError):
    """A background process did not start or stop as expected."""


def is_running(pid: int | None, marker: str) -> bool:
    """True when `pid` is alive (not a zombie) and its command line contains `marker`."""
    if not pid:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (OSError, IndexError):
        return False
    return state != "Z" and marker.encode() in cmdline


def spawn(argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> int:
    """Start `python -m streams ARGV...` detached, output to `log`; return its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    return process.pid


def tail(log: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def wait_for_url(url: str, pid: int, marker: str, log: Path, timeout_s: float = 90.0) -> None:
    """Wait until `url` answers 200, failing early (with the log) if the process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # Only liveness here: just after the fork, the child still shows our command line.
        if not is_running(pid, ""):
            raise ProcessError(
                f"the process exited during start-up; last lines of {log}:\n{tail(log)}"
            )
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.3)
    raise ProcessError(f"{url} did not answer within {timeout_s:.0f}s; see {log}")


def stop_process(pid: int | None, marker: str, timeout_s: float = 30.0) -> bool:
    """SIGTERM, wait, then SIGKILL; False if it was not running."""
    if pid is None or not is_running(pid, marker):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and is_running(pid, marker):
        time.sleep(0.2)
    if is_running(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return True
