"""The README's command reference and configuration table match the real CLI and config."""

from __future__ import annotations

import re
from pathlib import Path

from e2ee_ops.cli.docs import BEGIN, END, command_reference

ROOT = Path(__file__).resolve().parents[2]


def test_command_reference_matches_the_cli() -> None:
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    assert readme[start:end] == command_reference(), (
        "README's command reference is stale: regenerate it with "
        "`python -m e2ee_ops.cli.docs --update README.md`"
    )


def test_every_config_section_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / "config.example.yaml").read_text()
    sections = re.findall(r"^([a-z_]+):", example, flags=re.MULTILINE)
    assert sections
    for key in sections:
        assert f"`{key}`" in readme, f"config key {key!r} is not in the README's table"


def test_quick_start_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in readme and f"\n{target}:" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()


# The plugin line of a healthy `redis check`, as the README shows it and the command prints it.
NAGIOS_REDIS_CHECK_OK = re.compile(
    r"^E2EE-OPS REDIS_CHECK OK - all \d+ checks OK \| 'redis ping'=\d+(\.\d+)?ms( |$)"
)


def test_the_nagios_example_is_the_real_line_shape() -> None:
    from io import StringIO

    from rich.console import Console

    from e2ee_ops.render import OutputFormat, render
    from e2ee_ops.status import Finding, Report, Status

    [example] = re.findall(r"\(`(E2EE-OPS [^`]+)`\)", (ROOT / "README.md").read_text())
    assert NAGIOS_REDIS_CHECK_OK.match(example), example
    report = Report(
        title="redis check",
        findings=[
            Finding("redis ping", Status.OK, 0.4, "redis PONG in 0.4 ms", unit="ms"),
            *(Finding(f"check {n}", Status.OK, "ok", "fine") for n in range(6)),
        ],
    )
    out = StringIO()
    render(report, OutputFormat.NAGIOS, Console(file=out, width=400))
    line = out.getvalue().strip()
    assert NAGIOS_REDIS_CHECK_OK.match(line), line
    assert line == example.removesuffix(" …")
