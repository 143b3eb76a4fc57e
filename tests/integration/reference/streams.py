"""A background reader of one device's SSE stream, for delivery and outage tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from e2ee_ops.reference.client import ReferenceClient, StreamEvent


class StreamCollector:
    def __init__(self, base_url: str, token: str, device_id: str, *, auto_ack: bool = True) -> None:
        self.client = ReferenceClient(base_url, token)
        self.acker = ReferenceClient(base_url, token)
        self.device_id = device_id
        self.auto_ack = auto_ack
        self.events: list[StreamEvent] = []
        self.error: BaseException | None = None
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> StreamCollector:
        self._thread.start()
        self.wait_for(lambda evs: any(e.event == "heartbeat" for e in evs), 10)
        return self

    def _run(self) -> None:
        try:
            stream = self.client.stream(self.device_id, read_timeout=30)
            for event in stream:
                if self._stop.is_set():
                    # Closing the generator here, in its own thread, closes the response
                    # and its socket; closing the client from another thread may not.
                    stream.close()
                    break
                with self._lock:
                    self.events.append(event)
                if event.event == "message" and self.auto_ack:
                    self.acker.ack(self.device_id, [int(event.data["message_id"])])
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
        finally:
            self.ended.set()

    def snapshot(self) -> list[StreamEvent]:
        with self._lock:
            return list(self.events)

    def message_ids(self) -> list[int]:
        return [int(e.data["message_id"]) for e in self.snapshot() if e.event == "message"]

    def heartbeats(self) -> list[StreamEvent]:
        return [e for e in self.snapshot() if e.event == "heartbeat"]

    def wait_for(self, predicate: Callable[[list[StreamEvent]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.snapshot()):
                return True
            if self.ended.is_set():
                return predicate(self.snapshot())
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._stop.set()  # the next heartbeat ends the reader
        self._thread.join(timeout=5)
        self.client.close()
        self.acker.close()
        self._thread.join(timeout=5)
