"""Strings the service hands back (device names, usernames) are chosen by users: they
reach the operator's terminal escaped, and never break a format's structure."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2ee_ops.render import OutputFormat, render_text
from e2ee_ops.status import Finding, Report, Status
from tests.integration.robustness.conftest import TOKEN_ENV, write_config
from tests.support.cli import cli

# Window title, clear screen, red, a newline, Nagios and Markdown separators, a bidi
# override and a C1 CSI: what a hostile user may name a device.
HOSTILE = "pwn\x1b]0;owned\x07\x1b[2J\x1b[31mred\nCRITICAL | 'x'=1 `a` \u202eevil\x9b1m"


@pytest.fixture
def hostile_device(users, database_url: str, tmp_path: Path) -> tuple[Path, str]:  # type: ignore[no-untyped-def]
    _, client = users.new("mallory")
    device_id = client.register_device(HOSTILE, prekeys=2)["device_id"]
    return write_config(tmp_path, postgres={"url": database_url}), device_id


def _no_raw_controls(text: str) -> None:
    assert not any(ord(c) < 32 and c != "\n" for c in text), repr(text)
    assert not any(0x7F <= ord(c) <= 0x9F or c == "\u202e" for c in text), repr(text)


@pytest.mark.parametrize("fmt", ["table", "markdown", "nagios", "json"])
def test_hostile_device_name_is_shown_escaped(hostile_device, fmt: str) -> None:  # type: ignore[no-untyped-def]
    config, device_id = hostile_device
    result = cli("--config", str(config), "--output", fmt, "devices", "stuck")
    assert result.exit_code == 2, result.stdout + result.stderr
    _no_raw_controls(result.stdout)
    if fmt == "json":
        names = [f["summary"] for f in result.json["findings"]]
        assert any(repr(HOSTILE) in s for s in names)  # the exact text, JSON-escaped
    elif fmt == "nagios":
        assert "pwn" not in result.stdout and "mallory" not in result.stdout
        assert result.stdout.endswith(f" | 'device {device_id}'=2\n")  # an id, not a name
    else:
        flat = result.stdout.replace("\n", "")
        assert "x1b" in flat and "owned" in flat and "x07" in flat  # shown, not obeyed
    if fmt == "markdown":
        row = next(line for line in result.stdout.splitlines() if "pwn" in line)
        assert row.count(" | ") == 3  # four cells: the `|` in the name is escaped
        assert "\\|" in row and "\\`a\\`" in row  # no code span opened by the name


def test_hostile_text_in_an_error_is_escaped(fake_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.integration.robustness.fakes import json_body

    server = fake_server({"/": json_body({"detail": "bad\x1b[2J\nnews"}, "500 Oops")})
    config = write_config(tmp_path, api={"base_urls": [server.url]})
    result = cli("--config", str(config), "abuse", "block", "7", "--reason", "spam", env=TOKEN_ENV)
    assert result.exit_code == 3
    _no_raw_controls(result.stderr)
    assert "bad\\x1b[2J\\nnews" in result.stderr


def test_nagios_line_stays_one_line_whatever_the_summary_holds() -> None:
    report = Report("devices stuck", [Finding("device 1", Status.CRITICAL, 2, HOSTILE)])
    text = render_text(report, OutputFormat.NAGIOS)
    _no_raw_controls(text)
    assert "\n" not in text
    line, perfdata = text.split(" | ")  # the name's `|` cannot start the perfdata
    assert line.startswith("E2EE-OPS DEVICES_STUCK CRITICAL - pwn\\x1b]0;owned\\x07")
    assert "red CRITICAL / 'x'=1" in line  # the line break became a space
    assert perfdata == "'device 1'=2"
