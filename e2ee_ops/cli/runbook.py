"""`e2ee-ops runbook`: the runbook, section by section, with the command for each step.

The Markdown lives in `runbooks/` at the top of the repository, the one source of
truth; `e2ee_ops/runbooks` is a symbolic link to it, which setuptools follows when it
builds the package, so an installed e2ee-ops finds the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from e2ee_ops.cli.common import OutputOption, app_context, finish

app = typer.Typer(
    name="runbook",
    help="The runbook in this project's words, one section per file, each step naming "
    "the command that performs or verifies it.",
    no_args_is_help=True,
)


def runbooks_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "runbooks"


def sections() -> dict[str, Path]:
    """Section name (file name without .md) to file; README is the index."""
    folder = runbooks_dir()
    return {p.stem: p for p in sorted(folder.glob("*.md")) if p.stem != "README"}


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


@app.command("list")
def list_(ctx: typer.Context, output: OutputOption = None) -> None:
    """The runbook's sections; show one with `e2ee-ops runbook show SECTION`."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Section:
        section: str
        title: str

    rows = [Section(name, _title(path)) for name, path in sections().items()]
    finish(ctx, rows, output=output, title="runbook sections")


@app.command("show")
def show(
    ctx: typer.Context,
    section: Annotated[str, typer.Argument(metavar="SECTION", help="e.g. redis-outage")],
    raw: Annotated[bool, typer.Option("--raw", help="Print the Markdown source.")] = False,
) -> None:
    """Render one section of the runbook in the terminal."""
    from e2ee_ops.errors import UsageError

    env = app_context(ctx)
    found = sections()
    path = found.get(section.removesuffix(".md"))
    if path is None:
        raise UsageError(
            f"no runbook section {section!r}", hint=f"one of: {', '.join(found) or 'none'}"
        )
    text = path.read_text(encoding="utf-8")
    if raw or not env.out.is_terminal:
        env.out.file.write(text)
        env.out.file.flush()
        return
    from rich.markdown import Markdown

    env.out.print(Markdown(text))
