"""The service's log, read as the runbook reads it (`grep -i redis /var/log/app.log`).

From a file (its last `max_bytes`) or from a command's output (`journalctl -u api
-o short-iso --since -2h`, `kubectl logs deploy/api --timestamps`), run without a
shell under a time limit. Only lines containing one of the given markers are kept:
the toolkit never holds the rest of the log, which may carry user data.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from e2ee_ops.adapters.process import run_process
from e2ee_ops.errors import ServiceError, TimedOutError

MAX_BYTES = 4 * 1024 * 1024  # the tail of a log file that is read


class ServiceLog:
    """One configured log source: a file path or an argv, never both."""

    def __init__(
        self,
        *,
        file: Path | None = None,
        command: Sequence[str] | None = None,
        timeout: float = 10.0,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        if (file is None) == (not command):
            raise ValueError("give exactly one of file or command")
        self.file = file
        self.command = list(command or [])
        self.timeout = timeout
        self.max_bytes = max_bytes

    def describe(self) -> str:
        return str(self.file) if self.file is not None else " ".join(self.command)

    def matching(self, markers: Sequence[str]) -> list[str]:
        """The lines, in order, that contain one of `markers` (case-insensitive)."""
        wanted = [m.lower() for m in markers]
        return [
            line for line in self._text().splitlines() if any(m in line.lower() for m in wanted)
        ]

    def _text(self) -> str:
        if self.file is not None:
            try:
                with self.file.open("rb") as fh:
                    fh.seek(0, 2)
                    size = fh.tell()
                    fh.seek(max(0, size - self.max_bytes))
                    return fh.read(self.max_bytes).decode("utf-8", errors="replace")
            except OSError as exc:
                raise ServiceError(
                    f"cannot read the service log {self.file} ({exc.strerror})",
                    hint="check services.api.log.file and its permissions",
                ) from None
        try:
            done = run_process(self.command, timeout=self.timeout)
        except (FileNotFoundError, PermissionError) as exc:
            raise ServiceError(
                f"cannot run the service log command {self.command[0]} ({exc.strerror})",
                hint="check services.api.log.command",
            ) from None
        except subprocess.TimeoutExpired:
            raise TimedOutError(
                f"the service log command {self.command[0]} ran past {self.timeout:g} s",
                hint="narrow it (--since) or raise services.api.log.timeout_seconds",
            ) from None
        if done.returncode != 0:
            raise ServiceError(
                f"the service log command {self.command[0]} exited {done.returncode}",
                hint="run it by hand to see why",
            )
        return done.stdout[-self.max_bytes :]
