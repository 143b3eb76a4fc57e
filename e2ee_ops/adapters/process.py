"""Run a command without a shell, in its own process group, with a time limit.

On a timeout (or Ctrl-C, or --timeout) the whole group is killed: the command and
everything it started (git's ssh, systemctl's helpers), so nothing is left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str  # empty when stderr was merged into stdout


def run_process(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    merge_stderr: bool = False,
) -> Completed:
    """Run `argv` to completion. Raises FileNotFoundError or PermissionError when it
    cannot start, and subprocess.TimeoutExpired (after killing its group) at `timeout`."""
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
        env=dict(env) if env is not None else None,
        start_new_session=True,  # its own process group, killed whole on timeout
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except BaseException:  # the timeout, Ctrl-C, --timeout: leave nothing running
        _kill_group(process)
        raise
    return Completed(process.returncode, out or "", err or "")


def _kill_group(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate()
