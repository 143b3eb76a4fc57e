"""One renderer for every result: `table` (rich), `json`, `markdown` and `nagios`.

A result is a `Report`, a `Plan`, or a list of dataclass instances (e.g. the rows
of `config show`). Every string goes through `redact()` on its way out, and through
`printable()`: text from the service (device names, usernames, server messages) can
carry terminal escape sequences and newlines, which are shown escaped, never obeyed.

JSON shape (stable; CI and cron parse it):

    Report: {"kind": "report", "title", "status", "exit_code", "summary",
             "findings": [{"name", "status", "value", "summary",
                           "threshold_warn", "threshold_crit", "unit"}],
             "data": {...}}
    Plan:   {"kind": "plan", "title", "status", "exit_code", "summary", "executed",
             "steps": [{"description", "executed", "outcome", "status"}], "data": {...}}
    list:   {"kind": "list", "title", "status": "OK", "exit_code": 0, "items": [{...}]}

Nagios: `E2EE-OPS <TITLE> <STATUS> - <summary> | 'label'=value[unit];warn;crit ...`
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from e2ee_ops.errors import redact
from e2ee_ops.status import ExitCode, Finding, Plan, Report, Status

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "OutputFormat",
    "Result",
    "printable",
    "redact",
    "render",
    "render_text",
    "to_json_data",
]

Result: TypeAlias = Report | Plan | Sequence[Any]

_NAGIOS_UNITS = {"s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c"}
_STATUS_STYLE = {
    Status.OK: "green",
    Status.WARNING: "yellow",
    Status.CRITICAL: "bold red",
    Status.UNKNOWN: "magenta",
}


# C0 and C1 control characters, DEL, and the bidirectional overrides that reorder text.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_JSON_UNESCAPED = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` safe for a terminal or a one-line format: control characters escaped
    (an ESC shows as `\\x1b`, a newline as `\\n`), everything else unchanged."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _out(text: str) -> str:
    """Every string a text format writes: redacted, then made printable."""
    return printable(redact(text))


class OutputFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"
    NAGIOS = "nagios"


def render(result: Result, fmt: OutputFormat, out: Console, *, title: str = "") -> None:
    """Write `result` to the `out` console (stdout) in the chosen format."""
    if fmt is OutputFormat.TABLE:
        for renderable in _rich_renderables(result, title):
            out.print(renderable)
        return
    text = render_text(result, fmt, title=title)
    out.file.write(text if text.endswith("\n") else text + "\n")
    out.file.flush()


def render_text(result: Result, fmt: OutputFormat, *, title: str = "") -> str:
    """`result` as text in a non-table format (json, markdown, nagios)."""
    if fmt is OutputFormat.JSON:
        text = json.dumps(to_json_data(result, title=title), indent=2, ensure_ascii=False)
        # json escapes C0 itself, not these; they occur only inside strings: \uXXXX is valid.
        return _JSON_UNESCAPED.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    if fmt is OutputFormat.MARKDOWN:
        return _markdown(result, title)
    if fmt is OutputFormat.NAGIOS:
        return _nagios(result, title)
    raise ValueError(f"render_text cannot produce {fmt.value}; use render()")


# --------------------------------------------------------------------------- json


def to_json_data(result: Result, *, title: str = "") -> dict[str, Any]:
    """The documented JSON shape of `result`, with every string redacted."""
    if isinstance(result, Report):
        data: dict[str, Any] = {
            "kind": "report",
            "title": result.title,
            "status": result.status.value,
            "exit_code": int(result.exit_code),
            "summary": result.one_line_summary(),
            "findings": [_finding_data(f) for f in result.findings],
            "data": result.data,
        }
    elif isinstance(result, Plan):
        data = {
            "kind": "plan",
            "title": result.title,
            "status": result.status.value,
            "exit_code": int(result.exit_code),
            "summary": result.one_line_summary(),
            "executed": result.executed,
            "steps": [
                {
                    "description": s.description,
                    "executed": s.executed,
                    "outcome": s.outcome,
                    "status": s.status.value if s.status else None,
                }
                for s in result.steps
            ],
            "data": result.data,
        }
    else:
        data = {
            "kind": "list",
            "title": title,
            "status": Status.OK.value,
            "exit_code": int(ExitCode.OK),
            "items": [_plain(item) for item in result],
        }
    cleaned: dict[str, Any] = _plain(data)
    return cleaned


def _finding_data(finding: Finding) -> dict[str, Any]:
    return {
        "name": finding.name,
        "status": finding.status.value,
        "value": finding.value,
        "summary": finding.summary,
        "threshold_warn": finding.threshold_warn,
        "threshold_crit": finding.threshold_crit,
        "unit": finding.unit,
    }


def _plain(value: Any) -> Any:
    """JSON-ready copy: dataclasses to dicts, enums to values, strings redacted."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


# --------------------------------------------------------------------------- text


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, float):
        value = f"{value:g}"
    return _out(str(value))


def _value_with_unit(finding: Finding) -> str:
    text = _cell(finding.value)
    return f"{text} {finding.unit}" if finding.unit and finding.value is not None else text


def _rows(items: Sequence[Any]) -> tuple[list[str], list[list[str]]]:
    """Column names and cells for a list of dataclasses (or dicts)."""
    plain = [_plain(item) for item in items]
    columns: list[str] = []
    for row in plain:
        if isinstance(row, dict):
            columns.extend(k for k in row if k not in columns)
    if not columns:
        return ["value"], [[_cell(row)] for row in plain]
    cells = [[_cell(row.get(c)) if isinstance(row, dict) else "" for c in columns] for row in plain]
    return columns, cells


_MD_SPECIAL = re.compile(r"([\\|`\[\]])")  # escapes, cells, code spans, links


def _md_escape(text: str) -> str:
    """Markdown-inert text: control characters escaped, table and markup separators too."""
    return _MD_SPECIAL.sub(r"\\\1", _out(text))


def _markdown(result: Result, title: str) -> str:
    lines: list[str] = []
    if isinstance(result, Report):
        lines += [f"# {_md_escape(result.title)}", ""]
        lines += [f"**Status:** {result.status.value} — {_md_escape(result.one_line_summary())}"]
        lines += ["", "| Check | Status | Value | Summary |", "| --- | --- | --- | --- |"]
        for f in result.findings:
            row = [f.name, f.status.value, _value_with_unit(f), f.summary]
            lines.append("| " + " | ".join(_md_escape(c) for c in row) + " |")
    elif isinstance(result, Plan):
        lines += [f"# {_md_escape(result.title)}", ""]
        lines += [f"**Status:** {result.status.value} — {_md_escape(result.one_line_summary())}"]
        lines.append("")
        for step in result.steps:
            box = "x" if step.executed else " "
            outcome = f" — {_md_escape(step.outcome)}" if step.outcome else ""
            lines.append(f"- [{box}] {_md_escape(step.description)}{outcome}")
    else:
        if title:
            lines += [f"# {_md_escape(title)}", ""]
        columns, rows = _rows(result)
        lines.append("| " + " | ".join(_md_escape(c) for c in columns) + " |")
        lines.append("|" + " --- |" * len(columns))
        lines += ["| " + " | ".join(_md_escape(c) for c in cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def _nagios(result: Result, title: str) -> str:
    if isinstance(result, Report | Plan):
        name, status, summary = result.title, result.status, result.one_line_summary()
    else:
        name, status, summary = title or "result", Status.OK, f"{len(result)} items"
    label = "_".join(_out(name).upper().split())
    # One line: newlines escaped, `|` (the perfdata separator) replaced.
    line = f"E2EE-OPS {label} {status.value} - {_out(summary)}".replace("|", "/")
    perfdata = _perfdata(result.findings) if isinstance(result, Report) else ""
    return f"{line} | {perfdata}" if perfdata else line


def _perfdata(findings: Sequence[Finding]) -> str:
    parts = []
    for f in findings:
        if isinstance(f.value, bool) or not isinstance(f.value, int | float):
            continue
        unit = f.unit if f.unit in _NAGIOS_UNITS else ""
        warn = "" if f.threshold_warn is None else f"{f.threshold_warn:g}"
        crit = "" if f.threshold_crit is None else f"{f.threshold_crit:g}"
        label = _out(f.name).replace("'", "").replace("=", "")
        parts.append(f"'{label}'={f.value:g}{unit};{warn};{crit}".rstrip(";"))
    return " ".join(parts)


# --------------------------------------------------------------------------- rich


def _rich_renderables(result: Result, title: str) -> list[Any]:
    from rich.table import Table
    from rich.text import Text

    if isinstance(result, Report):
        table = Table(title=_out(result.title), title_justify="left")
        for column in ("Check", "Status", "Value", "Summary"):
            table.add_column(column, overflow="fold")
        for f in result.findings:
            table.add_row(
                Text(_out(f.name)),
                Text(f.status.value, style=_STATUS_STYLE[f.status]),
                Text(_value_with_unit(f)),
                Text(_out(f.summary)),
            )
        return [table, _status_line(result.status, result.one_line_summary())]
    if isinstance(result, Plan):
        table = Table(title=_out(result.title), title_justify="left")
        for column in ("#", "Step", "Done", "Outcome"):
            table.add_column(column, overflow="fold")
        for number, step in enumerate(result.steps, start=1):
            style = _STATUS_STYLE[step.status] if step.status else ""
            table.add_row(
                str(number),
                Text(_out(step.description)),
                "yes" if step.executed else "no",
                Text(_out(step.outcome or ""), style=style),
            )
        return [table, _status_line(result.status, result.one_line_summary())]
    columns, cells = _rows(result)
    table = Table(title=_out(title) if title else None, title_justify="left")
    for column in columns:
        table.add_column(_out(column), overflow="fold")
    for row in cells:
        table.add_row(*(Text(c) for c in row))
    return [table]


def _status_line(status: Status, summary: str) -> Any:
    from rich.text import Text

    line = Text(status.value, style=_STATUS_STYLE[status])
    line.append(f" - {_out(summary)}")
    return line


def rich_renderable(result: Result, *, title: str = "") -> Any:
    """The table view of `result` as one rich renderable (for live displays)."""
    from rich.console import Group

    return Group(*_rich_renderables(result, title))


def to_junit(report: Report, *, suite: str = "e2ee-ops") -> str:
    """JUnit XML for CI systems: one test case per finding; WARNING and CRITICAL fail,
    UNKNOWN is an error (could not tell)."""
    import xml.etree.ElementTree as ET

    failures = sum(f.status in (Status.WARNING, Status.CRITICAL) for f in report.findings)
    errors = sum(f.status is Status.UNKNOWN for f in report.findings)
    root = ET.Element(
        "testsuite",
        name=f"{suite} {report.title}",
        tests=str(len(report.findings)),
        failures=str(failures),
        errors=str(errors),
    )
    for f in report.findings:
        case = ET.SubElement(
            root, "testcase", classname=f"{suite}.{report.title}", name=_out(f.name)
        )
        message = _out(f.summary)  # XML 1.0 cannot even carry most control characters
        if f.status in (Status.WARNING, Status.CRITICAL):
            ET.SubElement(case, "failure", message=message, type=f.status.value).text = message
        elif f.status is Status.UNKNOWN:
            ET.SubElement(case, "error", message=message, type=f.status.value).text = message
        else:
            ET.SubElement(case, "system-out").text = message
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
