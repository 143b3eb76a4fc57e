"""Reads with an overall deadline and a size cap, whatever the other side does.

httpx's timeouts bound each socket read, not a whole answer: a server that drips a
byte now and then, or never stops sending, defeats them. These helpers read an HTTP
body or an SSE stream chunk by chunk and stop at the deadline or the cap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import httpx_sse

from e2ee_ops.errors import AnswerTooLarge, DeadlinePassed


def read_capped(
    response: httpx.Response,
    *,
    cap: int,
    deadline: float,
    monotonic: Callable[[], float] = time.monotonic,
) -> bytes:
    """The body of a streamed `response`, refusing more than `cap` bytes or a read
    that is still going at `deadline` (a monotonic time)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise AnswerTooLarge(f"the answer declares {declared} bytes, over the cap of {cap}")
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > cap:
            raise AnswerTooLarge(f"the answer went past the cap of {cap} bytes")
        if monotonic() >= deadline:
            raise DeadlinePassed("the answer was still arriving at its deadline")
    return bytes(body)


class _BoundedResponse:
    """The two things EventSource reads from a response, with the deadline and the cap
    checked between chunks: an event that never completes, or never ends, still stops."""

    def __init__(
        self,
        response: httpx.Response,
        deadline: float,
        cap: int,
        monotonic: Callable[[], float],
    ) -> None:
        self.headers = response.headers
        self._response = response
        self._deadline = deadline
        self._cap = cap
        self._monotonic = monotonic

    def iter_text(self) -> Iterator[str]:
        received = 0
        for text in self._response.iter_text():
            received += len(text)
            if received > self._cap:
                raise AnswerTooLarge(f"the stream went past the cap of {self._cap} bytes")
            yield text
            if self._monotonic() >= self._deadline:
                raise DeadlinePassed("the stream was still arriving at its deadline")


def iter_sse_until(
    response: httpx.Response,
    *,
    deadline: float,
    cap: int,
    monotonic: Callable[[], float] = time.monotonic,
) -> Iterator[httpx_sse.ServerSentEvent]:
    """Server-sent events of `response` until the server ends the stream; raises
    DeadlinePassed once `deadline` passes, even in the middle of an unfinished event,
    and AnswerTooLarge past `cap` characters in all."""
    proxy: Any = _BoundedResponse(response, deadline, cap, monotonic)
    yield from httpx_sse.EventSource(proxy).iter_sse()
