"""runbooks/: every `e2ee-ops ...` command and option named exists; list and show work."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from e2ee_ops.cli.main import app
from e2ee_ops.cli.runbook import runbooks_dir, sections
from tests.support.cli import cli

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
INLINE = re.compile(r"`(e2ee-ops [^`]+)`")
STOP = {"|", "||", "&&", ";", ">", "#"}


def mentions(text: str) -> list[str]:
    """Commands in inline code and at the start of lines in code blocks."""
    found = [m.group(1) for m in INLINE.finditer(text.replace("\n  ", " "))]
    in_block = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_block = not in_block
        elif in_block and line.strip().startswith("e2ee-ops "):
            found.append(line.strip())
    return found


def problems(command_line: str, root: Any) -> list[str]:
    try:
        words = shlex.split(command_line)[1:]
    except ValueError:
        words = command_line.split()[1:]
    node, errors, i = root, [], 0
    while i < len(words):
        word = words[i]
        if word in STOP:
            break
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            option = next((p for p in node.params if name in (*p.opts, *p.secondary_opts)), None)
            if option is None:
                errors.append(f"{command_line!r}: `{node.name}` has no option {name}")
            elif not getattr(option, "is_flag", False) and "=" not in word:
                i += 1  # its value
        elif hasattr(node, "commands"):  # a group (typer vendors its own click)
            sub = node.commands.get(word)
            if sub is None:
                errors.append(f"{command_line!r}: `{node.name}` has no command {word!r}")
                break
            node = sub
        i += 1
    return errors


def test_runbooks_name_only_commands_and_options_that_exist() -> None:
    root = typer.main.get_command(app)
    files = sorted(RUNBOOKS.glob("*.md"))
    assert files
    errors = []
    for path in files:
        for command in mentions(path.read_text()):
            errors += [f"{path.name}: {e}" for e in problems(command, root)]
    assert not errors, "\n".join(errors)


def test_the_checker_catches_an_invented_command_and_option() -> None:
    root = typer.main.get_command(app)
    assert problems("e2ee-ops redis reboot", root)
    assert problems("e2ee-ops redis recover --now", root)
    assert not problems("e2ee-ops --output json redis recover --execute --yes", root)


def test_runbooks_are_found_through_the_package() -> None:
    assert runbooks_dir().resolve() == RUNBOOKS.resolve()
    assert {"redis-outage", "monitoring", "incident-response", "useful-commands"} <= set(sections())


@pytest.mark.parametrize("section", ["redis-outage", "monitoring"])
def test_runbook_show(section: str, isolated_env: dict[str, str]) -> None:
    result = cli("runbook", "show", section)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("# ") and "e2ee-ops" in result.stdout


def test_runbook_list_and_unknown_section(isolated_env: dict[str, str]) -> None:
    listed = cli("--output", "json", "runbook", "list")
    assert listed.exit_code == 0
    assert "redis-outage" in {row["section"] for row in listed.json["items"]}
    missing = cli("runbook", "show", "nope")
    assert missing.exit_code == 64 and "redis-outage" in missing.stderr
