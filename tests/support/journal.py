"""A journal with a clock and an actor the test sets, so every entry it writes is exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from e2ee_ops.journal import Journal

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ACTOR = "ann@box"


class Clock:
    """Stands still at `now` until moved with `at(seconds after T0)`."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: float) -> datetime:
        self.now = T0 + timedelta(seconds=seconds)
        return self.now


def fixed_journal(directory: Path, clock: Clock) -> Journal:
    return Journal(directory / "journal.jsonl", clock=clock, actor=ACTOR)
