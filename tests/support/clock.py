"""A procedure module's wall clock stopped at one instant: `stop_clock(monkeypatch, module,
at)` replaces the module's `datetime` with one whose `now()` answers `at` (naive when asked
without a zone, as the real one)."""

from __future__ import annotations

from datetime import datetime
from types import ModuleType
from typing import Any

import pytest


def stop_clock(monkeypatch: pytest.MonkeyPatch, module: ModuleType, at: datetime) -> None:
    class Stopped(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return at.astimezone(tz) if tz is not None else at.replace(tzinfo=None)

    monkeypatch.setattr(module, "datetime", Stopped)
