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


# The plugin line of a healthy `redis check` as the command prints it (perfdata in the order
# the concurrent probes finish; the pub/sub lag once the API measured it).
_PERF_TAIL = r"(;[^ ]*)?( |$)"
NAGIOS_REDIS_CHECK_OK = re.compile(
    r"^E2EE-OPS REDIS_CHECK OK - all \d+ checks OK \| "
    rf"(?=.*'redis ping'=\d+(\.\d+)?ms{_PERF_TAIL})"
    rf"(?=.*'undelivered messages \(5 min\)'=0{_PERF_TAIL})"
    rf"(?:(?!.*'pub/sub lag)|(?=.*'pub/sub lag \([^)]+\)'=\d+(\.\d+)?s;2{_PERF_TAIL}))"
)


def test_the_nagios_example_is_the_real_line() -> None:
    """The README's plugin line is what the renderer prints for those findings."""
    from e2ee_ops.render import OutputFormat, render_text
    from e2ee_ops.status import Finding, Report, Status

    readme = (ROOT / "README.md").read_text()
    [example] = re.findall(r"```text\n(E2EE-OPS [^\n]+)\n```", readme)
    warn = Status.WARNING
    report = Report(
        title="alerts check",
        summary="…",
        findings=[
            Finding(
                "otpk pool min (api-1)", warn, 7, "pool", threshold_warn=10, threshold_crit=5,
                higher_is_worse=False, minimum=0,
            ),
            Finding(
                "delivery p99 (api-1)", warn, 0.61, "p99", threshold_warn=0.5, unit="s",
                minimum=0,
            ),
        ],
    )  # fmt: skip
    assert render_text(report, OutputFormat.NAGIOS) == example
