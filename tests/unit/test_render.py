from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pytest
from rich.console import Console

from e2ee_ops.context import make_console
from e2ee_ops.render import OutputFormat, render, render_text, to_json_data
from e2ee_ops.status import Finding, Plan, Report, Status, Step

TOKEN = "Bearer AbC123xyz_token"


def sample_report() -> Report:
    return Report(
        title="devices stuck",
        findings=[
            Finding(
                "otpk_min",
                Status.CRITICAL,
                3,
                "device d1 has 3 prekeys",
                threshold_warn=10,
                threshold_crit=5,
                higher_is_worse=False,
            ),
            Finding("delivery_p99", Status.OK, 120.5, "p99 fine", threshold_warn=500, unit="ms"),
            Finding("relay", Status.OK, False, f"relay ok ({TOKEN})"),
        ],
        data={"devices": ["d1"]},
    )


def test_json_shape_of_a_report() -> None:
    data = json.loads(render_text(sample_report(), OutputFormat.JSON))
    assert data["kind"] == "report"
    assert data["status"] == "CRITICAL" and data["exit_code"] == 2
    assert data["title"] == "devices stuck"
    assert data["summary"] == "device d1 has 3 prekeys"
    assert data["findings"][0] == {
        "name": "otpk_min",
        "status": "CRITICAL",
        "value": 3,
        "summary": "device d1 has 3 prekeys",
        "threshold_warn": 10,
        "threshold_crit": 5,
        "unit": "",
    }
    assert data["data"] == {"devices": ["d1"]}
    assert "AbC123xyz_token" not in json.dumps(data)


def test_json_shape_of_a_plan_and_a_list() -> None:
    plan = Plan(
        title="rollback flag",
        steps=[Step("set E2EE_DM_ENABLED=false", executed=True, outcome="set", status=Status.OK)],
        executed=True,
    )
    data = to_json_data(plan)
    assert data["kind"] == "plan" and data["executed"] is True
    assert data["steps"] == [
        {
            "description": "set E2EE_DM_ENABLED=false",
            "executed": True,
            "outcome": "set",
            "status": "OK",
        }
    ]

    @dataclass
    class Row:
        key: str
        value: str

    listing = to_json_data([Row("a", "1"), Row("b", TOKEN)], title="rows")
    assert listing["kind"] == "list" and listing["exit_code"] == 0
    assert listing["items"][0] == {"key": "a", "value": "1"}
    assert "AbC123xyz_token" not in listing["items"][1]["value"]


def test_nagios_line_has_status_summary_and_perfdata() -> None:
    line = render_text(sample_report(), OutputFormat.NAGIOS)
    assert line == (
        "E2EE-OPS DEVICES_STUCK CRITICAL - device d1 has 3 prekeys"
        " | 'otpk_min'=3;10:;5: 'delivery_p99'=120.5ms;500;;0"
    )
    assert "\n" not in line


def test_nagios_without_numbers_has_no_perfdata() -> None:
    report = Report(title="x", findings=[Finding("a", Status.OK, "yes", "a | b")])
    assert render_text(report, OutputFormat.NAGIOS) == "E2EE-OPS X OK - all 1 checks OK"


def test_markdown_table_escapes_pipes_and_redacts() -> None:
    text = render_text(sample_report(), OutputFormat.MARKDOWN)
    assert text.startswith("# devices stuck\n")
    assert "| otpk_min | CRITICAL | 3 | device d1 has 3 prekeys |" in text
    assert "| delivery_p99 | OK | 120.5 ms | p99 fine |" in text
    assert "AbC123xyz_token" not in text


def test_table_goes_to_the_given_console_without_color_when_not_a_tty() -> None:
    buffer = io.StringIO()
    render(sample_report(), OutputFormat.TABLE, make_console(buffer, {}))
    text = buffer.getvalue()
    assert "otpk_min" in text and "CRITICAL - device d1 has 3 prekeys" in text
    assert "\x1b[" not in text
    assert "AbC123xyz_token" not in text


def test_no_color_is_respected_even_on_a_forced_terminal() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, no_color=True)
    render(sample_report(), OutputFormat.TABLE, console)
    assert "\x1b[31" not in buffer.getvalue() and "\x1b[1;31" not in buffer.getvalue()


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_every_format_renders_every_result_kind(fmt: OutputFormat) -> None:
    @dataclass
    class Row:
        name: str

    for result in (sample_report(), Plan(title="p", steps=[Step("s")]), [Row("r")], []):
        buffer = io.StringIO()
        render(result, fmt, make_console(buffer, {}), title="things")
        assert buffer.getvalue().strip()


def test_cells_are_text_for_people_not_python_reprs() -> None:
    @dataclass
    class Row:
        channels: list[str]
        counts: dict[str, int]
        enabled: bool
        big: float
        missing: None = None

    buffer = io.StringIO()
    render(
        [Row(["push", "email"], {"sent": 2}, True, 1234567.891)],
        OutputFormat.TABLE,
        make_console(buffer, {"COLUMNS": "200"}),
    )
    text = buffer.getvalue()
    assert "push, email" in text and "sent: 2" in text and "yes" in text
    assert "1234568" in text and "e+" not in text
    for repr_mark in ("[", "{", "'", "True", "None"):
        assert repr_mark not in text


def test_console_width_comes_from_columns_and_pipes_get_rich_default() -> None:
    assert make_console(io.StringIO(), {"COLUMNS": "60"}).width == 60
    assert make_console(io.StringIO(), {}).width == 80


def test_narrow_terminal_never_breaks_a_word() -> None:
    @dataclass
    class Device:
        device_id: str
        username: str
        device_name: str
        prekeys_remaining: int
        signed_prekey_age_days: float

    rows = [Device("0b9d1f0e-aaaa-bbbb", "grace", "grace-phone-with-long-name", 3, 91.5)]
    words = {"0b9d1f0e-aaaa-bbbb", "grace-phone-with-long-name", "signed_prekey_age_days"}
    for columns in ("60", "200"):
        buffer = io.StringIO()
        render(rows, OutputFormat.TABLE, make_console(buffer, {"COLUMNS": columns}))
        text = buffer.getvalue()
        assert all(word in text for word in words), text
        assert max(len(line.rstrip()) for line in text.splitlines()) <= int(columns)
