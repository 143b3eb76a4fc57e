"""The environment a command runs in, passed explicitly so tests replace it whole.

`AppContext` holds the consoles (data on stdout, progress and errors on stderr),
the clock, the environment variables, the global options and the lazily loaded
configuration. Commands get it from Typer's `ctx.obj`; nothing reads globals.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar

from e2ee_ops.errors import TimedOutError, redact
from e2ee_ops.journal import Journal, utc_now
from e2ee_ops.render import OutputFormat, Result, printable, render, render_text, write_text
from e2ee_ops.status import ExitCode, Plan, Report, Status


class _HasClose(Protocol):
    def close(self) -> None: ...


_Closeable = TypeVar("_Closeable", bound=_HasClose)

if TYPE_CHECKING:
    from rich.console import Console

    from e2ee_ops.config import LoadedConfig, Settings


def make_console(
    file: IO[str] | None, environ: Mapping[str, str], *, stderr: bool = False
) -> Console:
    """A rich console that honours NO_COLOR and COLUMNS and writes plainly to pipes.

    With `file=None` it writes to whatever sys.stdout (or sys.stderr) is at the time
    of writing, so a context made before CliRunner swaps the streams still works.
    """
    from rich.console import Console

    return Console(
        file=file,
        stderr=stderr,
        no_color=bool(environ.get("NO_COLOR")),
        highlight=False,
        emoji=False,
        # Width from the terminal, else $COLUMNS, else rich's 80: read from `environ`.
        _environ=environ,
    )


DEFAULT_BOUND_SECONDS = 120.0


@dataclass
class AppContext:
    stdout: IO[str] | None = None  # None: whatever sys.stdout is when writing
    stderr: IO[str] | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    clock: Callable[[], datetime] = utc_now
    monotonic: Callable[[], float] = time.monotonic
    output: OutputFormat = OutputFormat.TABLE
    timeout: float | None = None  # --timeout: the whole command's deadline, seconds
    debug: bool = False
    config_file: Path | None = None
    profile: str | None = None
    cwd: Path | None = None
    loaded: LoadedConfig | None = None  # set to skip loading (tests)
    started: float = field(default=0.0)
    # Clients a command opened (HTTP, Redis); closed when the command ends.
    resources: ExitStack = field(default_factory=ExitStack)
    # Without --timeout a command still ends: read-only ones within this bound; acting and
    # watching ones lift it (`unbounded()`) and rely on their own deadlines.
    default_bound: float | None = DEFAULT_BOUND_SECONDS
    _bound: float | None = field(default=None, init=False, repr=False)
    # What the command emitted last, for the JUnit file and the Prometheus textfile.
    last_result: Result | None = None
    # What cli/targets.py looked up once per command (discovered API instances).
    wiring: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        *,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> AppContext:
        environ = dict(os.environ) if environ is None else dict(environ)
        return cls(stdout=stdout, stderr=stderr, environ=environ, **options)

    # The consoles are made on first use: rich's console costs start-up time that
    # `--help` does not need.
    @functools.cached_property
    def out(self) -> Console:
        """Data: stdout."""
        return make_console(self.stdout, self.environ)

    @functools.cached_property
    def err(self) -> Console:
        """Progress and errors: stderr."""
        return make_console(self.stderr, self.environ, stderr=True)

    @property
    def data(self) -> IO[str]:
        """Stdout as a plain stream, for output that needs no console (JSON, Markdown,
        nagios): building rich's console costs start-up time they do not need."""
        return self.stdout if self.stdout is not None else sys.stdout

    # ----------------------------------------------------------------- config

    @property
    def config(self) -> LoadedConfig:
        """The configuration, loaded on first use (so --help never touches files)."""
        if self.loaded is None:
            from e2ee_ops.config import load_config

            self.loaded = load_config(
                config_file=self.config_file,
                profile=self.profile,
                environ=self.environ,
                cwd=self.cwd,
            )
        return self.loaded

    @property
    def settings(self) -> Settings:
        return self.config.settings

    def journal(self) -> Journal:
        return Journal(
            self.settings.journal.path,
            clock=self.clock,
            actor=self.environ.get("E2EE_OPS_ACTOR") or None,
        )

    def closing(self, resource: _Closeable) -> _Closeable:
        """Close `resource` when the command ends, whatever happens."""
        self.resources.callback(resource.close)
        return resource

    # ----------------------------------------------------------------- output

    def emit(self, result: Result, *, title: str = "") -> ExitCode:
        """Render `result` on stdout and return the exit code its status calls for."""
        self.last_result = result
        if self.output is OutputFormat.TABLE:
            render(result, self.output, self.out, title=title)
        else:
            write_text(self.data, render_text(result, self.output, title=title))
        if isinstance(result, Report | Plan):
            return result.exit_code
        return Status.OK.exit_code

    def progress(self, message: str) -> None:
        """A progress note on stderr (never mixed with the data on stdout), one line
        whatever the width."""
        self.err.print(printable(redact(message)), markup=False, highlight=False, soft_wrap=True)

    # ----------------------------------------------------------------- time

    def remaining(self) -> float | None:
        """Seconds left before --timeout (or the default bound), or None without one."""
        if self._bound is None:
            return None
        return max(0.0, self._bound - (self.monotonic() - self.started))

    @contextmanager
    def deadline(self) -> Iterator[None]:
        """Raise TimedOutError in the main thread when --timeout (or, without it, the
        default bound of read-only commands) expires."""
        self.started = self.monotonic()
        self._bound = self.timeout if self.timeout is not None else self.default_bound
        if self._bound is None:
            yield
            return
        reason = (
            "--timeout"
            if self.timeout is not None
            else "the default bound of a read-only command; give --timeout to change it"
        )
        with hard_deadline(self._bound, reason=reason):
            yield

    def unbounded(self) -> None:
        """Lift the default bound for a command that acts or watches; an explicit
        --timeout stays in force."""
        if self.timeout is None and self._bound is not None:
            self._bound = None
            if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGALRM"):
                signal.setitimer(signal.ITIMER_REAL, 0)


@contextmanager
def hard_deadline(seconds: float, *, reason: str = "--timeout") -> Iterator[None]:
    """Interrupt the block with TimedOutError after `seconds` (SIGALRM, main thread).

    Off the main thread (or without SIGALRM) the block runs unguarded; adapters
    still apply their own per-call timeouts. An outer timer (pytest-timeout, an
    enclosing deadline) is restored afterwards with its remaining time.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimedOutError(
            f"gave up after {seconds:g} s ({reason})",
            hint="the state is unknown; retry with a longer --timeout",
        )

    began = time.monotonic()
    previous_handler = signal.signal(signal.SIGALRM, expire)
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay > 0:
            left = max(previous_delay - (time.monotonic() - began), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, previous_interval)
