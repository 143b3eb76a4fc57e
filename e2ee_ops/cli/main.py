"""The `e2ee-ops` command line: global options, the command groups, the one error handler.

Every failure leaves through `guarded()`: an E2eeOpsError becomes one sentence on
stderr and its exit code (`exit_code_for`), a usage error becomes 64 instead of
click's 2 (which would read as CRITICAL), Ctrl-C 130 and SIGTERM 143. Tracebacks appear
only with --debug. Heavy libraries are imported inside commands, never here.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from e2ee_ops import __version__
from e2ee_ops.cli import demo, doctor
from e2ee_ops.cli.common import MAX_SECONDS, JunitOption, TextfileOption
from e2ee_ops.context import AppContext
from e2ee_ops.errors import E2eeOpsError, Terminated, redact
from e2ee_ops.render import OutputFormat, printable
from e2ee_ops.status import ExitCode, exit_code_for

PROG = "e2ee-ops"

# The command groups, in the order `--help` lists them: each module's `app`, built
# only when the command line reaches it (`cli/lazy_groups.py`).
GROUPS = {
    name: f"e2ee_ops.cli.{name}"
    for name in (
        "redis",
        "rollback",
        "devices",
        "abuse",
        "alerts",
        "incident",
        "postmortem",
        "runbook",
        "sandbox",
        "config",
    )
}


class OpsGroup(TyperGroup):
    """The root group: runs every invocation (console script or CliRunner) through guarded()."""

    def __init__(self, **attrs: Any) -> None:
        from e2ee_ops.cli.lazy_groups import LazyCommands

        super().__init__(**attrs)
        self.commands = LazyCommands(self.commands, GROUPS, app)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        from e2ee_ops.cli.lazy_groups import LazyCommands

        commands = self.commands
        if not isinstance(commands, LazyCommands):
            return super().format_commands(ctx, formatter)
        self.commands = commands.listing()
        try:
            super().format_commands(ctx, formatter)
        finally:
            self.commands = commands

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        from e2ee_ops.cli.lazy_params import defer_unset_coercion

        defer_unset_coercion()
        argv = list(sys.argv[1:] if args is None else args)
        with _sigterm_raises() as caught:
            if not argv or _only_help_or_version(argv):  # nothing to deliver; start quickly
                code = guarded(
                    lambda: self._main(argv, prog_name, complete_var, extra),
                    debug=_wants_debug(argv),
                    caught=caught,
                )
            else:
                code = self._run(argv, prog_name, complete_var, extra, caught)
        if standalone_mode:
            sys.exit(int(code))
        return int(code)

    def _main(
        self, argv: list[str], prog_name: str | None, complete_var: str | None, extra: Any
    ) -> Any:
        return super().main(
            args=argv,
            prog_name=prog_name or PROG,
            complete_var=complete_var,
            standalone_mode=False,
            **extra,
        )

    def _run(
        self,
        argv: list[str],
        prog_name: str | None,
        complete_var: str | None,
        extra: Any,
        caught: Sequence[int],
    ) -> int:
        """Run a command, then deliver its outcome (JUnit, textfile, nagios line)."""
        from e2ee_ops.cli.outcome import Invocation, deliver

        env = extra.pop("obj", None)
        if not isinstance(env, AppContext):
            env = AppContext.create()
        inv = Invocation.parse(argv, self, env.environ)
        started, began = env.clock(), env.monotonic()
        failures: list[str] = []
        code = guarded(
            lambda: self._main(argv, prog_name, complete_var, {**extra, "obj": env}),
            debug=_wants_debug(argv),
            failed=failures.append,
            caught=caught,
        )
        return deliver(
            inv,
            code=code,
            result=env.last_result,
            error=failures[-1] if failures else None,
            started=started,
            elapsed=env.monotonic() - began,
        )


@contextmanager
def _sigterm_raises() -> Iterator[list[int]]:
    """Turn SIGTERM into `Terminated` in the main thread, so it unwinds like Ctrl-C:
    children are killed, the journal gets an outcome, the exit code is 143. The list
    yielded records the signal (typer reports any interrupt as a bare exit 130)."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield caught
    finally:
        signal.signal(signal.SIGTERM, previous)


def _only_help_or_version(argv: Sequence[str]) -> bool:
    return any(a in ("-h", "--help", "--version") for a in argv)


def _wants_debug(argv: Sequence[str]) -> bool:
    options = argv[: argv.index("--")] if "--" in argv else argv
    return "--debug" in options or os.environ.get("E2EE_OPS_DEBUG", "") not in ("", "0")


def _say(message: str) -> None:
    sys.stderr.write(f"{PROG}: {printable(redact(message))}\n")
    sys.stderr.flush()


def guarded(
    invoke: Callable[[], Any],
    *,
    debug: bool,
    failed: Callable[[str], object] = lambda sentence: None,
    caught: Sequence[int] = (),
) -> int:
    """Run the CLI and turn its outcome into an exit code: the only place that decides.
    `failed` hears the one sentence of a run that ended in an error; `caught` lists the
    signals that arrived (SIGTERM)."""

    def fail(sentence: str, code: int) -> int:
        failed(redact(sentence))
        return code

    def interrupted(exc: KeyboardInterrupt) -> int:
        by = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        sentence = (
            f"interrupted by {by}: stopped what was running; the journal records what completed"
        )
        _say(sentence)
        return fail(sentence, exit_code_for(exc))

    try:
        result = invoke()
    except typer.TyperException as exc:  # usage errors, bad parameters, help on no args
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            _say(exc.format_message())
        return fail(f"usage: {exc.format_message()}", ExitCode.USAGE)
    except typer.Abort as exc:  # click wraps an interrupt in Abort
        if isinstance(exc.__cause__, KeyboardInterrupt):
            return interrupted(exc.__cause__)
        _say("aborted")
        return fail("aborted", ExitCode.INTERRUPTED)
    except KeyboardInterrupt as exc:
        return interrupted(exc)
    except E2eeOpsError as exc:
        if debug:
            sys.stderr.write(redact("".join(traceback.format_exception(exc))))
        _say(f"error: {exc.sentence}")
        return fail(exc.sentence, exit_code_for(exc))
    except Exception as exc:  # a bug: say so, keep secrets out, exit UNKNOWN
        if debug:
            sys.stderr.write(redact("".join(traceback.format_exception(exc))))
        _say(
            f"internal error: {type(exc).__name__}: {exc}"
            + ("" if debug else " (rerun with --debug for the traceback)")
        )
        return fail(f"internal error: {type(exc).__name__}: {exc}", ExitCode.UNKNOWN)
    if isinstance(result, int) and not isinstance(result, bool):
        if result == ExitCode.INTERRUPTED:  # typer turns any interrupt into Exit(130)
            return interrupted(Terminated(caught[-1]) if caught else KeyboardInterrupt())
        return result
    return ExitCode.OK


app = typer.Typer(
    name=PROG,
    cls=OpsGroup,
    help="Operate an end-to-end-encrypted direct-message service by its runbook.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="FILE",
            dir_okay=False,
            help="Config file (default: $E2EE_OPS_CONFIG, ./e2ee-ops.yaml, "
            "~/.config/e2ee-ops/config.yaml).",
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", "-p", help="Profile from the config file's `profiles`."),
    ] = None,
    output: Annotated[
        OutputFormat | None,
        typer.Option(
            "--output",
            "-o",
            case_sensitive=False,
            envvar="E2EE_OPS_OUTPUT",
            help="Output format: table, json, markdown or nagios.  [default: table]",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=0.001,
            max=MAX_SECONDS,
            metavar="SECONDS",
            help="Give up after this long; the result is then UNKNOWN (exit 3).",
        ),
    ] = None,
    junit: JunitOption = None,
    textfile: TextfileOption = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Operate an end-to-end-encrypted direct-message service by its runbook.

    Exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, 64 usage error, 130 interrupted,
    143 terminated (SIGTERM).
    """
    # Tests may inject a prepared AppContext as `obj`; flags given still apply to it.
    env = ctx.obj if isinstance(ctx.obj, AppContext) else AppContext.create()
    if output is not None:
        env.output = output
    if timeout is not None:
        env.timeout = timeout
    if config_file is not None:
        env.config_file = config_file
    if profile is not None:
        env.profile = profile
    env.debug = env.debug or debug
    ctx.obj = env
    ctx.with_resource(env.deadline())
    ctx.call_on_close(env.resources.close)


app.command("doctor")(doctor.doctor)
app.command("demo")(demo.demo)


def run() -> NoReturn:
    """Console-script entry point: the command, then the process ends at once
    (`cli/process_exit.py`)."""
    from e2ee_ops.cli.process_exit import leave, pause_collection

    pause_collection()
    try:
        app()
    except SystemExit as exc:
        leave(exc.code)
    leave(0)
