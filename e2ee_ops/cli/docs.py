"""The command reference in Markdown, generated from the CLI itself.

`python -m e2ee_ops.cli.docs` prints it; README.md carries it between markers and a
test fails when the two differ, so the README never describes a command that is
not there (or misses one that is).
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from e2ee_ops.cli.main import app

BEGIN = "<!-- BEGIN COMMAND REFERENCE (generated: python -m e2ee_ops.cli.docs) -->"
END = "<!-- END COMMAND REFERENCE -->"
_SKIP_OPTIONS = {"--help", "--install-completion", "--show-completion"}


def _first_line(text: str | None) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split())


def _options(command: typer.core.TyperCommand | TyperGroup) -> str:
    names = []
    for param in command.params:
        opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
        if param.param_type_name == "argument":
            names.append(param.name.upper() if param.name else "ARG")
        elif opts and opts[0] not in _SKIP_OPTIONS:
            names.append(opts[0])
    return " ".join(f"`{n}`" for n in names)


def _walk(group: TyperGroup, prefix: str) -> list[tuple[str, str, str]]:
    rows = []
    ctx = typer.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        path = f"{prefix} {name}"
        if isinstance(command, TyperGroup):
            rows.extend(_walk(command, path))
        else:
            rows.append((path, _options(command), _first_line(command.help)))  # type: ignore[arg-type]
    return rows


def command_reference() -> str:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    lines = [
        BEGIN,
        "",
        "| command | options and arguments | what it does |",
        "| --- | --- | --- |",
    ]
    for path, options, help_text in _walk(root, "e2ee-ops"):
        lines.append(f"| `{path}` | {options} | {help_text.replace('|', '/')} |")
    lines += ["", "Global options (before the command): " + _options(root), "", END]
    return "\n".join(lines)


def update_readme(path: str) -> None:
    """Replace the generated block of the README at `path` in place."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text[:start] + command_reference() + text[end:])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--update"]:
        update_readme(sys.argv[2] if len(sys.argv) > 2 else "README.md")
    else:
        sys.stdout.write(command_reference() + "\n")
