"""A missing tool skips on a developer's machine and fails in CI."""

from __future__ import annotations

import pytest

from tests.support.required import tool


def test_a_missing_tool_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"no-such-tool is not installed \(apt\)"):
        tool("no-such-tool", "apt")


@pytest.mark.parametrize("value", ["true", "True", "1"])
def test_a_missing_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="no-such-tool is not installed.*CI must"):
        tool("no-such-tool", "apt")


def test_a_present_tool_is_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert tool("sh", "base system").endswith("/sh")
