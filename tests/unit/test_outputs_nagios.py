"""The plugin line as range-aware consumers (nagiosplugin, PNP4Nagios) read it."""

from __future__ import annotations

import re

from nagiosplugin import Range

from e2ee_ops.outputs.nagios import number, perfdata, plugin_line
from e2ee_ops.status import Finding, Status


def _fields(data: str) -> list[str]:
    return data.split("=", 1)[1].split(";")


def test_low_is_bad_thresholds_are_ranges_that_alert_below() -> None:
    pool = Finding(
        "otpk pool min",
        Status.OK,
        100,
        "fine",
        threshold_warn=10,
        threshold_crit=5,
        higher_is_worse=False,
        minimum=0,
    )
    data = perfdata([pool])
    assert data == "'otpk pool min'=100;10:;5:;0"
    value, warn, crit, low = _fields(data)
    assert Range(warn).match(100) and Range(crit).match(100)  # 100 prekeys: no alert
    assert not Range(warn).match(7) and Range(crit).match(7)  # 7: warning only
    assert not Range(crit).match(4)  # 4: critical


def test_high_is_bad_thresholds_alert_above() -> None:
    p99 = Finding("p99", Status.OK, 120.5, "ok", threshold_warn=500, unit="ms")
    data = perfdata([p99])
    assert data == "'p99'=120.5ms;500;;0"
    assert Range(_fields(data)[1]).match(120.5) and not Range(_fields(data)[1]).match(501)


def test_numbers_never_use_exponent_notation() -> None:
    assert number(1234567.891) == "1234567.891"
    assert number(1e-05) == "0.00001"
    assert number(1e20) == "100000000000000000000"
    assert number(3) == "3" and number(2.0) == "2"
    big = Finding("rows", Status.OK, 1234567.891, "x", threshold_warn=0.00001)
    assert perfdata([big]) == "'rows'=1234567.891;0.00001"
    assert not re.search(r"\de[+-]\d", perfdata([big]))


def test_labels_never_contain_equals_or_quotes_and_percent_has_bounds() -> None:
    odd = Finding("it's a=b | c", Status.OK, 5, "x", unit="%")
    assert perfdata([odd]) == "'it s a b c'=5%;;;0;100"


def test_plugin_line_one_line_without_pipes_in_summary() -> None:
    line = plugin_line("redis check", Status.UNKNOWN, "could not\nconnect | retry")
    assert line == "E2EE-OPS REDIS_CHECK UNKNOWN - could not connect / retry"
