"""Traffic for the delivery benches: a sandbox fleet, senders and receivers over real
HTTP and SSE, and the count of what each receiver got (lost, duplicated, latency).

Used by bench/sse_load.py and bench/outage_backlog.py. Every receiver follows its own
SSE stream and acknowledges what it receives, in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from e2ee_ops import sandbox
from e2ee_ops.reference.client import ReferenceClient

# The fleet's own send limit would refuse a benchmark's rate: lifted for the run.
BENCH_API_ENV = {"E2EE_RATE_LIMIT_MESSAGES": "100000000"}


@contextmanager
def fleet(
    state_dir: Path, *, instances: int, env: dict[str, str] | None = None
) -> Iterator[sandbox.SandboxState]:
    """A sandbox (embedded PostgreSQL and Redis, `instances` API processes with `env`
    over the bench's settings), torn down at the end whatever happens."""
    state = sandbox.up(state_dir, api_instances=instances)
    try:
        env = sandbox.read_env_file(state.api_env_path) | BENCH_API_ENV | (env or {})
        state.api_env_path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        state = sandbox.restart_service(state_dir, "api")
        yield state
    finally:
        sandbox.down(state_dir)


@dataclass
class Party:
    token: str
    account_id: int
    device_id: str
    base_url: str


@dataclass
class Link:
    """A sender's conversation with one receiver, with the receiver's envelope shape."""

    sender: Party
    receiver: Party
    conversation_id: int
    devices: list[dict[str, Any]]


def admin_token(state: sandbox.SandboxState) -> str:
    return Path(state.accounts["admin"].token_file).read_text().strip()


def parties(state: sandbox.SandboxState, count: int, prefix: str) -> list[Party]:
    """`count` users with one device each, spread over the fleet's instances."""
    urls = state.api_urls
    made = []
    with ReferenceClient(state.api_url, admin_token(state)) as admin:
        for i in range(count):
            account_id = admin.create_user(f"{prefix}-{i}")
            token = admin.issue_token(account_id)
            url = urls[i % len(urls)]
            with ReferenceClient(url, token) as user:
                device = user.register_device(f"{prefix}-{i}-device", prekeys=1)
            made.append(Party(token, account_id, str(device["device_id"]), url))
    return made


def link(sender: Party, receiver: Party) -> Link:
    with ReferenceClient(sender.base_url, sender.token) as client:
        conversation_id = client.open_conversation(receiver.account_id)
        devices = client.user_devices(receiver.account_id)
    return Link(sender, receiver, conversation_id, devices)


def envelope_body(lk: Link) -> dict[str, Any]:
    return {
        "sender_device_id": lk.sender.device_id,
        "client_message_id": os.urandom(12).hex(),
        "envelopes": [
            {
                "device_id": d["device_id"],
                "bundle_version": d["bundle_version"],
                "ciphertext": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            }
            for d in lk.devices
        ],
    }


async def send(client: httpx.AsyncClient, lk: Link) -> int:
    """One message over `lk`; its id."""
    response = await client.post(
        f"{lk.sender.base_url}/dm/conversations/{lk.conversation_id}/messages",
        json=envelope_body(lk),
        headers={"Authorization": f"Bearer {lk.sender.token}"},
    )
    response.raise_for_status()
    return int(response.json()["message_id"])


@dataclass
class Received:
    """What the receivers got: arrivals per message id, and delivery latencies."""

    counts: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    last_arrival: float = 0.0  # time.monotonic() of the latest new message
    errors: list[str] = field(default_factory=list)

    def record(self, message_id: int, created_at: str) -> None:
        if message_id not in self.counts:
            self.last_arrival = time.monotonic()
        self.counts[message_id] += 1
        sent = datetime.fromisoformat(created_at)
        self.latencies_ms.append((datetime.now(UTC) - sent).total_seconds() * 1000)

    def verdict(self, sent: set[int]) -> tuple[int, int]:
        """(lost, duplicated) among the messages sent."""
        lost = len(sent - set(self.counts))
        duplicated = sum(n - 1 for m, n in self.counts.items() if m in sent and n > 1)
        return lost, duplicated


async def _events(client: httpx.AsyncClient, party: Party) -> AsyncIterator[tuple[str, Any]]:
    from httpx_sse import aconnect_sse

    async with aconnect_sse(
        client,
        "GET",
        f"{party.base_url}/dm/devices/{party.device_id}/stream",
        headers={"Authorization": f"Bearer {party.token}"},
        timeout=httpx.Timeout(30.0, read=60.0),
    ) as source:
        source.response.raise_for_status()
        async for sse in source.aiter_sse():
            yield sse.event, json.loads(sse.data) if sse.data else {}


async def _raw_events(party: Party) -> AsyncIterator[tuple[str, Any]]:
    """The same events over a bare asyncio connection parsed by h11: no connection
    pool and no per-line layers, so a thousand readers cost the generator little."""
    import h11

    url = httpx.URL(party.base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    conn = h11.Connection(h11.CLIENT)
    target = f"/dm/devices/{party.device_id}/stream"
    headers = [
        ("Host", f"{url.host}:{url.port}"),
        ("Authorization", f"Bearer {party.token}"),
        ("Accept", "text/event-stream"),
    ]
    try:
        writer.write(conn.send(h11.Request(method="GET", target=target, headers=headers)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        buffer = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await asyncio.wait_for(reader.read(65536), 60.0))
            elif isinstance(event, h11.Response):
                if event.status_code != 200:
                    raise RuntimeError(f"stream answered {event.status_code}")
            elif isinstance(event, h11.Data):
                buffer += bytes(event.data)
                *blocks, buffer = buffer.split(b"\n\n")
                for block in blocks:
                    name, data = "message", ""
                    for line in block.decode().split("\n"):
                        if line.startswith("event:"):
                            name = line[6:].strip()
                        elif line.startswith("data:"):
                            data += line[5:].strip()
                    yield name, json.loads(data) if data else {}
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return
    finally:
        writer.close()


# A receiver acknowledges in batches: what arrived within ACK_DELAY of the first
# unacknowledged message, or ACK_BATCH messages, in one request.
ACK_DELAY = 0.02
ACK_BATCH = 200


async def follow(
    client: httpx.AsyncClient,
    acker: httpx.AsyncClient,
    party: Party,
    received: Received,
    ready: asyncio.Event,
    *,
    cumulative: bool = False,
    raw: bool = False,
) -> None:
    """Follow `party`'s stream through `client` (or with `raw` its own h11 connection)
    until cancelled, acknowledging what it receives through `acker` (best not the
    streams' client, see bench/sse_load.py): each id, or with `cumulative` the latest
    id of each batch (`up_to`)."""
    pending: list[int] = []
    flusher: asyncio.Task[None] | None = None

    async def flush() -> None:
        batch = pending[:ACK_BATCH]
        del pending[: len(batch)]
        if batch:
            # Cumulative: the latest id read covers all read before it (the server
            # leaves out anything it sent after that id).
            body = {"up_to": batch[-1]} if cumulative else {"message_ids": batch}
            for attempt in (1, 2):  # an ack may be repeated; once more if the connection broke
                try:
                    await acker.post(
                        f"{party.base_url}/dm/devices/{party.device_id}/ack",
                        json=body,
                        headers={"Authorization": f"Bearer {party.token}"},
                    )
                    break
                except httpx.TransportError:
                    if attempt == 2:
                        raise

    async def flush_later() -> None:
        await asyncio.sleep(ACK_DELAY)
        try:
            while pending:
                await flush()
        except httpx.HTTPError as exc:  # counted and printed by the bench
            received.errors.append(f"{party.device_id}: ack: {type(exc).__name__}: {exc}")

    try:
        events = _raw_events(party) if raw else _events(client, party)
        async for event, data in events:
            if event == "heartbeat":
                ready.set()
            elif event == "message":
                message_id = int(data["message_id"])
                received.record(message_id, data["created_at"])
                pending.append(message_id)
                # A flusher that has returned saw `pending` empty: a new one is needed.
                if flusher is None or flusher.done():
                    flusher = asyncio.create_task(flush_later())
    except asyncio.CancelledError:
        if flusher is not None:
            flusher.cancel()
        raise
    except Exception as exc:  # noqa: BLE001 - counted and printed by the bench
        received.errors.append(f"{party.device_id}: {type(exc).__name__}: {exc}")
        ready.set()


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """(p50, p99, max); NaN for no values."""
    if not values:
        return (float("nan"),) * 3
    if len(values) == 1:
        return values[0], values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98], max(values)


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def _proc_stats() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used), from /proc (Linux); empty elsewhere."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat") if Path("/proc").is_dir() else ():
        try:
            raw = entry.read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
        used = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        stats[int(entry.parent.name)] = (int(fields[1]), used)
    return stats


def cpu_seconds(roots: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each named group of processes and their descendants."""
    stats = _proc_stats()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    named = {pid for pids in roots.values() for pid in pids}
    used = {}
    for name, pids in roots.items():
        todo, seen = list(pids), set()
        while todo:
            pid = todo.pop()
            if pid in seen or pid not in stats or (pid in named and pid not in pids):
                continue  # another group's process is counted there
            seen.add(pid)
            todo.extend(children.get(pid, []))
        used[name] = sum(stats[p][1] for p in seen)
    return used


def fleet_processes(state: sandbox.SandboxState) -> dict[str, list[int]]:
    """The bench's own process and the fleet's, by role, for `cpu_seconds`."""
    roles = {"generator": [os.getpid()]}
    roles["api"] = [p for p in state.api_pids if p is not None]
    postmaster = Path(state.pg_datadir) / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, IndexError):
        roles["postgres"] = [int(postmaster.read_text().split()[0])]
    roles["redis"] = [state.redis_pid] if state.redis_pid is not None else []
    return roles
