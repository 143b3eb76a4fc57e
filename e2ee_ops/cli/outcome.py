"""Where a run's outcome goes besides stdout, whatever happened: the JUnit file, the
Prometheus textfile and, in nagios mode, a plugin line even for a failed run.

These are read from the command line itself (`Invocation.parse`), not from the
parsed options, because a run can fail before click has parsed anything (a usage
error, a bad config) and monitoring still needs its line, CI its file and the
textfile collector its status.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from e2ee_ops.errors import redact
from e2ee_ops.render import OutputFormat
from e2ee_ops.status import ExitCode, Status

__all__ = ["Invocation", "deliver"]

_WITH_VALUE = {"--output", "-o", "--junit", "--textfile"}


@dataclass(frozen=True)
class Invocation:
    """What the command line asked for: the command's path and the outcome's sinks."""

    command: str = ""  # "redis check"
    output: OutputFormat | None = None
    junit: Path | None = None
    textfile: Path | None = None

    @classmethod
    def parse(cls, argv: Sequence[str], root: Any, environ: Mapping[str, str]) -> Invocation:
        """Read `argv` against the command tree under `root` (click commands, duck-typed:
        typer ships its own copy of click)."""
        args = list(argv[: argv.index("--")] if "--" in argv else argv)
        found: dict[str, str] = {}
        path: list[str] = []
        current: Any = root
        index = 0
        while index < len(args):
            token = args[index]
            index += 1
            if token.startswith("-") and token != "-":
                name, eq, attached = token.partition("=")
                if name.startswith("-o") and len(name) > 2 and not name.startswith("--"):
                    name, attached, eq = "-o", name[2:], "="
                takes_value = name in _WITH_VALUE or _takes_value(current, name)
                if takes_value and not eq:
                    attached = args[index] if index < len(args) else ""
                    index += 1
                if name in _WITH_VALUE:
                    found["--output" if name == "-o" else name] = attached
                continue
            if token in getattr(current, "commands", {}):
                path.append(token)
                current = current.commands[token]
            else:
                current = None  # an argument: the command path has ended
        return cls(
            command=" ".join(path),
            output=_format(found.get("--output") or environ.get("E2EE_OPS_OUTPUT", "")),
            junit=Path(found["--junit"]) if found.get("--junit") else None,
            textfile=Path(found["--textfile"]) if found.get("--textfile") else None,
        )


def _takes_value(command: Any, name: str) -> bool:
    for param in getattr(command, "params", ()):
        if param.param_type_name == "option" and name in (*param.opts, *param.secondary_opts):
            return not param.is_flag and not param.count
    return False


def _format(text: str) -> OutputFormat | None:
    try:
        return OutputFormat(text.lower())
    except ValueError:
        return None


def deliver(
    inv: Invocation,
    *,
    code: int,
    result: object | None,
    error: str | None,
    started: datetime,
    elapsed: float,
) -> int:
    """Write the outcome to every sink asked for; return the exit code to leave with.

    In nagios mode a failed run prints `E2EE-OPS <CHECK> <STATUS> - <sentence>` and
    exits with a plugin code (a usage error or an interrupt is UNKNOWN, 3).
    """
    status = Status(ExitCode(code).name) if code in (0, 1, 2, 3) else Status.UNKNOWN
    if error is not None and inv.output is OutputFormat.NAGIOS:
        from e2ee_ops.outputs.nagios import plugin_line

        sys.stdout.write(plugin_line(inv.command or "e2ee-ops", status, error) + "\n")
        sys.stdout.flush()
        code = int(status.exit_code)
    try:
        if inv.junit is not None:
            from e2ee_ops.outputs.junit import junit_xml

            document = junit_xml(
                command=inv.command, result=result, error=error, started=started, elapsed=elapsed
            )
            _replace(inv.junit, document)
        if inv.textfile is not None:
            from e2ee_ops.outputs.textfile import write_textfile

            finished = started.fromtimestamp(started.timestamp() + elapsed, started.tzinfo)
            write_textfile(
                inv.textfile, command=inv.command, result=result, status=status, finished=finished
            )
    except OSError as exc:
        sys.stderr.write(redact(f"e2ee-ops: cannot write {exc.filename} ({exc.strerror})\n"))
        return int(ExitCode.UNKNOWN) if code == ExitCode.OK else code
    return code


def _replace(path: Path, content: bytes) -> None:
    """Write `content` beside `path`, then rename it over `path` (never half a file)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(content)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
