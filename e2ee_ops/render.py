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

Nagios: `E2EE-OPS <TITLE> <STATUS> - <summary> | 'label'=value[uom];warn;crit;min;max ...`
(see `outputs/nagios.py`)
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
from typing import IO, TYPE_CHECKING, Any, TypeAlias

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
    "write_text",
]

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


Result: TypeAlias = Report | Plan | Sequence[Any]

_STATUS_STYLE = {
    Status.OK: "green",
    Status.WARNING: "yellow",
    Status.CRITICAL: "bold red",
    Status.UNKNOWN: "magenta",
}


class OutputFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"
    NAGIOS = "nagios"


def render(result: Result, fmt: OutputFormat, out: Console, *, title: str = "") -> None:
    """Write `result` to the `out` console (stdout) in the chosen format."""
    if fmt is OutputFormat.TABLE:
        for renderable in _rich_renderables(result, title, out.width):
            out.print(renderable)
        return
    write_text(out.file, render_text(result, fmt, title=title))


def write_text(stream: IO[str], text: str) -> None:
    """Write rendered text (json, markdown, nagios) as one block ending in a newline."""
    stream.write(text if text.endswith("\n") else text + "\n")
    stream.flush()


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


def human_number(value: float) -> str:
    """A number for people: positional (never 1.23457e+06), four significant digits
    after the point at most, integers whole."""
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    digits = max(0, 3 - math.floor(math.log10(abs(value))))
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _cell(value: Any) -> str:
    """Any value as text meant for people: no Python reprs (lists, dicts, True)."""
    if value is None:
        return "-"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) and math.isfinite(value):
        return human_number(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, datetime | date):
        value = value.isoformat()
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
    from e2ee_ops.outputs.nagios import plugin_line

    if isinstance(result, Report):
        return plugin_line(result.title, result.status, result.one_line_summary(), result.findings)
    if isinstance(result, Plan):
        return plugin_line(result.title, result.status, result.one_line_summary())
    return plugin_line(title or "result", Status.OK, f"{len(result)} items")


# --------------------------------------------------------------------------- rich


def _rich_renderables(result: Result, title: str, width: int | None = None) -> list[Any]:
    """Tables; when `width` is too narrow for a table's words, one block per row."""
    from rich.text import Text

    if isinstance(result, Report):
        columns = ["Check", "Status", "Value", "Summary"]
        rows = [
            [
                Text(_out(f.name)),
                Text(f.status.value, style=_STATUS_STYLE[f.status]),
                Text(_value_with_unit(f)),
                Text(_out(f.summary)),
            ]
            for f in result.findings
        ]
        table = _table(_out(result.title), columns, rows, width)
        return [table, _status_line(result.status, result.one_line_summary())]
    if isinstance(result, Plan):
        columns = ["#", "Step", "Done", "Outcome"]
        rows = [
            [
                Text(str(number)),
                Text(_out(step.description)),
                Text("yes" if step.executed else "no"),
                Text(
                    _out(step.outcome or ""),
                    style=_STATUS_STYLE[step.status] if step.status else "",
                ),
            ]
            for number, step in enumerate(result.steps, start=1)
        ]
        table = _table(_out(result.title), columns, rows, width)
        return [table, _status_line(result.status, result.one_line_summary())]
    names, cells = _rows(result)
    rows = [[Text(c) for c in row] for row in cells]
    return [_table(_out(title) if title else None, [_out(n) for n in names], rows, width)]


def _narrowest(columns: list[str], rows: list[list[Any]]) -> int:
    """The width a table needs so that no word is broken: each column as wide as its
    longest word, plus the borders and padding (3 per column, 1 more for the edge)."""

    def longest_word(text: Any) -> int:
        return max((len(word) for word in str(text).split()), default=0)

    widest = [
        max([longest_word(name), *(longest_word(row[i]) for row in rows)])
        for i, name in enumerate(columns)
    ]
    return sum(widest) + 3 * len(columns) + 1


def _table(title: str | None, columns: list[str], rows: list[list[Any]], width: int | None) -> Any:
    """A table whose cells wrap between words; if even that cannot fit in `width`, the
    same rows as blocks of "column  value" lines, which never break a word."""
    from rich.console import Group
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    if width is None or _narrowest(columns, rows) <= width:
        return table
    blocks: list[Any] = []
    for row in rows:
        block = Table(show_header=False, box=None, padding=(0, 1, 0, 0))
        block.add_column(no_wrap=True, style="bold")
        block.add_column()
        for column, cell in zip(columns, row, strict=True):
            block.add_row(column, cell)
        blocks.append(block)
        blocks.append("")
    return Group(*([title] if title else []), *blocks)


def _status_line(status: Status, summary: str) -> Any:
    from rich.text import Text

    line = Text(status.value, style=_STATUS_STYLE[status])
    line.append(f" - {_out(summary)}")
    return line


def rich_renderable(result: Result, *, title: str = "", width: int | None = None) -> Any:
    """The table view of `result` as one rich renderable (for live displays)."""
    from rich.console import Group

    return Group(*_rich_renderables(result, title, width))
