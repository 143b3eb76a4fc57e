"""The monitoring-plugin line (Nagios, Icinga, Naemon, Sensu, `negate`).

    E2EE-OPS <CHECK> <STATUS> - <summary> | 'label'=value[uom];warn;crit;min;max ...

Labels are always quoted and never contain `=`, `'` or `|`.

Thresholds are plugin ranges (Monitoring Plugins development guidelines): a
higher-is-worse limit of 500 is `500` (alert above 500), a lower-is-worse limit
of 5 is `5:` (alert below 5). nagiosplugin's `Range` and `Performance` write
them; numbers are written in positional notation, never with an exponent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal

from e2ee_ops.errors import redact
from e2ee_ops.render import printable
from e2ee_ops.status import Finding, Status

__all__ = ["check_label", "number", "perfdata", "plugin_line"]

# Units of measure the plugin API defines (anything else is left off the value).
_UOM = {"s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c"}
_NOT_IN_LABEL = re.compile(r"[='\s|]+")


def check_label(name: str) -> str:
    """`redis check` -> `REDIS_CHECK`: the check's name in the plugin line."""
    return "_".join(name.upper().split()) or "RESULT"


def plugin_line(check: str, status: Status, summary: str, findings: Sequence[Finding] = ()) -> str:
    """One plugin line; the summary is redacted, kept on one line (line breaks become
    spaces, other control characters are shown escaped) and free of `|`."""
    text = printable(" ".join(redact(summary).replace("|", "/").split()))
    line = f"E2EE-OPS {check_label(check)} {status.value} - {text}"
    data = perfdata(findings)
    return f"{line} | {data}" if data else line


def number(value: float) -> str:
    """`value` in positional notation: 1234567.891 stays that, 1e-05 is 0.00001."""
    if isinstance(value, int):
        return str(value)
    text = format(Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _label(name: str) -> str:
    """A perfdata label: no `=`, quote or `|`, spaces kept as single spaces."""
    return " ".join(_NOT_IN_LABEL.sub(" ", printable(name)).split()) or "value"


def _range(limit: float | None, *, higher_is_worse: bool) -> str | None:
    """`500` (alert above) or `5:` (alert below), checked by nagiosplugin's Range
    (whose own str() would print small limits with an exponent)."""
    from nagiosplugin import Range

    if limit is None:
        return None
    spec = number(limit) if higher_is_worse else f"{number(limit)}:"
    Range(spec)
    return spec


def _bounds(finding: Finding) -> tuple[float | None, float | None]:
    low, high = finding.minimum, finding.maximum
    if low is None and finding.unit in {"s", "ms", "us", "%", "B", "c"}:
        low = 0
    if high is None and finding.unit == "%":
        high = 100
    return low, high


def perfdata(findings: Sequence[Finding]) -> str:
    """Perfdata for every numeric finding, thresholds as plugin ranges."""
    from nagiosplugin import Performance

    parts = []
    for f in findings:
        if isinstance(f.value, bool) or not isinstance(f.value, int | float):
            continue
        low, high = _bounds(f)
        label = _label(f.name)
        text = str(
            Performance(
                label,
                number(f.value),
                f.unit if f.unit in _UOM else "",
                _range(f.threshold_warn, higher_is_worse=f.higher_is_worse),
                _range(f.threshold_crit, higher_is_worse=f.higher_is_worse),
                None if low is None else number(low),
                None if high is None else number(high),
            )
        )
        # nagiosplugin quotes only labels with spaces; quote every one, as graphers expect.
        parts.append(text if text.startswith("'") else f"'{label}'{text[len(label) :]}")
    return " ".join(parts)
