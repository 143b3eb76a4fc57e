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


# The plugin line of a healthy `redis check`, as the README shows it and the command prints it
# (perfdata in the order the concurrent probes finish; the pub/sub lag once the API measured it).
NAGIOS_REDIS_CHECK_OK = re.compile(
    r"^E2EE-OPS REDIS_CHECK OK - all \d+ checks OK \| "
    r"(?=.*'redis ping'=\d+(\.\d+)?ms( |$))"
    r"(?=.*'undelivered messages \(5 min\)'=0;0( |$))"
    r"(?:(?!.*'pub/sub lag)|(?=.*'pub/sub lag \([^)]+\)'=\d+(\.\d+)?s;2( |$)))"
)


def test_the_nagios_example_is_the_real_line() -> None:
    from io import StringIO

    from rich.console import Console

    from e2ee_ops.render import OutputFormat, render
    from e2ee_ops.status import Finding, Report, Status

    [example] = re.findall(r"```text\n(E2EE-OPS [^\n]+)\n```", (ROOT / "README.md").read_text())
    assert NAGIOS_REDIS_CHECK_OK.match(example), example
    ok = Status.OK
    report = Report(
        title="redis check",
        findings=[
            Finding("pub/sub lag (api:8000)", ok, 0.005, "lag", threshold_warn=2, unit="s"),
            Finding("redis ping", ok, 0.4, "redis PONG in 0.4 ms", unit="ms"),
            Finding("undelivered messages (5 min)", ok, 0, "none", threshold_warn=0),
            *(Finding(f"check {n}", ok, "ok", "fine") for n in range(4)),
        ],
    )
    out = StringIO()
    render(report, OutputFormat.NAGIOS, Console(file=out, width=400))
    assert out.getvalue() == example + "\n"
