"""How commands that keep watching show it: a live view on a terminal, and lines a
program can read (JSON Lines, or one rendering per refresh) when piped.

Rich's Live redraws in place on a terminal; on a pipe it would print only its last
frame, so piped output gets every refresh in full instead.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from e2ee_ops.context import AppContext
from e2ee_ops.errors import redact
from e2ee_ops.render import OutputFormat, render, rich_renderable, to_json_data
from e2ee_ops.status import Report

__all__ = ["json_line", "show_refreshes", "ticker"]


def json_line(stream: IO[str], data: dict[str, Any]) -> None:
    """One JSON object on one line (JSON Lines), flushed at once."""
    stream.write(redact(json.dumps(data, ensure_ascii=False, separators=(",", ":"))) + "\n")
    stream.flush()


def show_refreshes(env: AppContext, refreshes: Iterable[Report], fmt: OutputFormat) -> Report:
    """Show each report as it comes; return the last. Tables on a terminal are a live
    view; JSON is one object per refresh (JSON Lines); anything else, or a table on a
    pipe, is printed in full at every refresh."""
    last: Report | None = None
    if fmt is OutputFormat.TABLE and env.out.is_terminal:
        from rich.live import Live

        live: Live | None = None
        try:
            for report in refreshes:
                last = report
                if live is None:
                    live = Live(
                        rich_renderable(report, width=env.out.width),
                        console=env.out,
                        auto_refresh=False,
                    )
                    live.start(refresh=True)
                else:
                    live.update(rich_renderable(report, width=env.out.width), refresh=True)
        finally:
            if live is not None:
                live.stop()
    else:
        for report in refreshes:
            last = report
            if fmt is OutputFormat.JSON:
                json_line(env.out.file, to_json_data(report))
            else:
                render(report, fmt, env.out)
    assert last is not None, "a watch shows at least one refresh"
    return last


@contextmanager
def ticker(env: AppContext) -> Iterator[Callable[[Any], None]]:
    """Progress of a watch on stderr: one live line on a terminal, else one JSON object
    per tick (`{"kind": "tick", ..., "message": ...}`). A tick is a dataclass with a
    `message` property."""
    if env.err.is_terminal:
        from rich.live import Live
        from rich.text import Text

        with Live(Text(""), console=env.err, transient=True, auto_refresh=False) as live:
            yield lambda tick: live.update(Text(redact(tick.message)), refresh=True)
        return

    def line(tick: Any) -> None:
        json_line(
            env.err.file, {"kind": "tick", **dataclasses.asdict(tick), "message": tick.message}
        )

    yield line
