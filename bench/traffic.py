"""Traffic for the delivery benches: a sandbox fleet, senders and receivers over real
HTTP and SSE, and the count of what each receiver got (lost, duplicated, latency).

Used by bench/sse_load.py and bench/outage_backlog.py. Every receiver follows its own
SSE stream and acknowledges what it receives, in batches. Two generators do the same
work: `RawGenerator` (bench/rawhttp.py: requests encoded once as bytes on keep-alive
connections, streams parsed by hand) and `HttpxGenerator` (httpx and httpx-sse, the
generator before it, kept to compare the two in one run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench import rawhttp
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
    with ReferenceClient(state.api_url, admin_token(state)) as admin:
        return make_parties(admin, state.api_urls, count, prefix)


def make_parties(admin: ReferenceClient, urls: list[str], count: int, prefix: str) -> list[Party]:
    """`count` users made through `admin`, one device each, spread over `urls`."""
    made = []
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


@dataclass
class Received:
    """What the receivers got: arrivals per message id (with the arrival time, for the
    latencies), the ack requests they sent, and their errors."""

    counts: Counter[int] = field(default_factory=Counter)
    arrivals: list[tuple[int, float, str]] = field(default_factory=list)  # id, time(), created_at
    last_arrival: float = 0.0  # time.monotonic() of the latest new message
    acks: int = 0  # ack requests answered
    errors: list[str] = field(default_factory=list)

    def record(self, message_id: int, created_at: str) -> None:
        if message_id not in self.counts:
            self.last_arrival = time.monotonic()
        self.counts[message_id] += 1
        self.arrivals.append((message_id, time.time(), created_at))

    def latencies_ms(self, sent: set[int]) -> list[float]:
        """Arrival minus created_at, for every arrival (repeats too) of a message in `sent`;
        created_at is parsed here, after the run, not on the receivers' path."""
        return [
            (arrived - datetime.fromisoformat(created_at).timestamp()) * 1000
            for message_id, arrived, created_at in self.arrivals
            if message_id in sent
        ]

    def verdict(self, sent: set[int]) -> tuple[int, int]:
        """(lost, duplicated) among the messages sent."""
        lost = len(sent - set(self.counts))
        duplicated = sum(n - 1 for m, n in self.counts.items() if m in sent and n > 1)
        return lost, duplicated


# An SSE event as the receivers see it: (event name, message id, created_at) for a
# message, (event name, 0, its data) for anything else.
Event = tuple[str, int, str]
OnEvent = Callable[[str, int, str], None]


def _stream_target(party: Party) -> str:
    return f"/dm/devices/{party.device_id}/stream"


def _ack_target(party: Party) -> str:
    return f"/dm/devices/{party.device_id}/ack"


def _send_target(lk: Link) -> str:
    return f"/dm/conversations/{lk.conversation_id}/messages"


def _bearer(party: Party) -> dict[str, str]:
    return {"Authorization": f"Bearer {party.token}"}


def ack_body(ids: list[int], *, cumulative: bool) -> dict[str, Any]:
    """`up_to` the last of `ids` (see `ack_requests`), or each id."""
    return {"up_to": ids[-1]} if cumulative else {"message_ids": ids}


def describe(exc: BaseException) -> str:
    """A failure as one short line, for the counts the bench prints."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    text = str(exc)
    return f"{type(exc).__name__}: {text[:80]}" if text else type(exc).__name__


class HttpxGenerator:
    """Sends, acks and SSE readers on httpx and httpx-sse: the generator before
    `RawGenerator`, kept to compare them in one run. Streams, sends and acks have
    separate clients: a client looks through every connection of its pool for each
    request, so requests sharing a pool with the streams cost O(streams) each."""

    name = "httpx"

    def __init__(self, *, streams: int, in_flight: int, ack_connections: int) -> None:
        # Idle connections are dropped before uvicorn's own 5 s keep-alive ends them.
        def limits(n: int) -> httpx.Limits:
            return httpx.Limits(
                max_connections=n,
                max_keepalive_connections=None,
                keepalive_expiry=rawhttp.KEEPALIVE,
            )

        self._streams = httpx.AsyncClient(limits=limits(streams), timeout=30.0)
        self._senders = httpx.AsyncClient(limits=limits(in_flight), timeout=30.0)
        self._ackers = httpx.AsyncClient(limits=limits(ack_connections), timeout=30.0)

    async def send(self, lk: Link) -> int:
        """One message over `lk`; its id."""
        response = await self._senders.post(
            f"{lk.sender.base_url}{_send_target(lk)}",
            json=envelope_body(lk),
            headers=_bearer(lk.sender),
        )
        response.raise_for_status()
        return int(response.json()["message_id"])

    async def ack(self, party: Party, ids: list[int], *, cumulative: bool) -> None:
        for attempt in (1, 2):  # an ack may be repeated; once more if the connection broke
            try:
                response = await self._ackers.post(
                    f"{party.base_url}{_ack_target(party)}",
                    json=ack_body(ids, cumulative=cumulative),
                    headers=_bearer(party),
                )
                response.raise_for_status()
                return
            except httpx.TransportError:
                if attempt == 2:
                    raise

    async def stream(self, party: Party, on_event: OnEvent) -> None:
        from httpx_sse import aconnect_sse

        async with aconnect_sse(
            self._streams,
            "GET",
            f"{party.base_url}{_stream_target(party)}",
            headers=_bearer(party),
            timeout=httpx.Timeout(30.0, read=60.0),
        ) as source:
            source.response.raise_for_status()
            async for sse in source.aiter_sse():
                if sse.event == "message":
                    data = json.loads(sse.data)
                    on_event("message", int(data["message_id"]), data["created_at"])
                else:
                    on_event(sse.event, 0, sse.data)

    def stats(self) -> str:
        return ""

    async def aclose(self) -> None:
        for client in (self._streams, self._senders, self._ackers):
            await client.aclose()


# What a RawGenerator's send template leaves to fill in: the client_message_id.
_CMID = "CMID" * 6  # as long as os.urandom(12).hex()


class RawGenerator:
    """Sends and acks as bytes encoded once per conversation and receiver, on keep-alive
    connection pools (`rawhttp.Pool`, one per API instance for sends, one for acks); SSE
    streams parsed by hand in their protocol's callback, with no JSON decoding of a
    message event (its id is the event's `id:` field, created_at is found in place)."""

    name = "raw"

    def __init__(self, *, streams: int, in_flight: int, ack_connections: int) -> None:
        del streams  # each stream has its own connection
        self._sizes = {"send": in_flight, "ack": ack_connections}
        self._pools: dict[tuple[str, str], rawhttp.Pool] = {}
        self._sends: dict[tuple[str, int], tuple[bytes, bytes]] = {}
        self._acks: dict[tuple[str, str], bytes] = {}

    def _pool(self, kind: str, base_url: str) -> rawhttp.Pool:
        pool = self._pools.get((kind, base_url))
        if pool is None:
            pool = rawhttp.Pool(rawhttp.Origin.of(base_url), self._sizes[kind])
            self._pools[kind, base_url] = pool
        return pool

    def _send_template(self, lk: Link) -> tuple[bytes, bytes]:
        key = (lk.sender.base_url, lk.conversation_id)
        template = self._sends.get(key)
        if template is None:
            body = json.dumps(envelope_body(lk) | {"client_message_id": _CMID}).encode()
            before, after = body.split(_CMID.encode())
            head = rawhttp.request_head(
                "POST",
                rawhttp.Origin.of(lk.sender.base_url),
                _send_target(lk),
                {**_bearer(lk.sender), "Content-Type": "application/json"},
                body=True,
            )
            template = (head + b"%d\r\n\r\n" % len(body) + before, after)
            self._sends[key] = template
        return template

    async def send(self, lk: Link) -> int:
        """One message over `lk`; its id."""
        before, after = self._send_template(lk)
        data = before + os.urandom(12).hex().encode() + after
        response = await self._pool("send", lk.sender.base_url).request(data)
        # 200 when a send resent after a keep-alive race had been stored the first time
        if response.status not in (200, 201):
            raise rawhttp.HttpError(f"HTTP {response.status}")
        return int(json.loads(response.body)["message_id"])

    async def ack(self, party: Party, ids: list[int], *, cumulative: bool) -> None:
        key = (party.base_url, party.device_id)
        head = self._acks.get(key)
        if head is None:
            head = rawhttp.request_head(
                "POST",
                rawhttp.Origin.of(party.base_url),
                _ack_target(party),
                {**_bearer(party), "Content-Type": "application/json"},
                body=True,
            )
            self._acks[key] = head
        if cumulative:
            body = b'{"up_to":%d}' % ids[-1]
        else:
            body = b'{"message_ids":[%s]}' % b",".join(b"%d" % i for i in ids)
        response = await self._pool("ack", party.base_url).request(
            head + b"%d\r\n\r\n" % len(body) + body
        )
        if response.status != 200:
            raise rawhttp.HttpError(f"HTTP {response.status}")

    async def stream(self, party: Party, on_event: OnEvent) -> None:
        origin = rawhttp.Origin.of(party.base_url)
        request = rawhttp.request_head(
            "GET",
            origin,
            _stream_target(party),
            {**_bearer(party), "Accept": "text/event-stream"},
            body=False,
        )

        def on_block(block: bytes) -> None:
            on_event(*parse_event(block))

        sse = await rawhttp.open_sse(origin, request, on_block)
        try:
            await sse.closed
        finally:
            if sse.transport is not None:
                sse.transport.close()

    def stats(self) -> str:
        opened = sum(p.opened for p in self._pools.values())
        resent = sum(p.resent for p in self._pools.values())
        return (
            f"request connections opened {opened}; requests resent after a keep-alive race {resent}"
        )

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()


def parse_event(block: bytes) -> Event:
    """An event block. A message as the reference server writes it (`event: message`,
    `data: JSON`, `id: MESSAGE_ID`, one line each) is read in place; any other block
    line by line, a message in it from its JSON. A block without data (a comment) has
    no name, as SSE dispatches no event for it."""
    if block.startswith(b"event: message\n"):
        message_id = int(block[block.rindex(b"\nid: ") + 5 :])
        at = block.index(b'"created_at":"') + 14
        return "message", message_id, block[at : block.index(b'"', at)].decode()
    name, data = "message", None
    for line in block.split(b"\n"):
        if line.startswith(b"event:"):
            name = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            data = line[5:].removeprefix(b" ")
    if data is None:
        return "", 0, ""
    if name == "message":
        message = json.loads(data)
        return name, int(message["message_id"]), str(message["created_at"])
    return name, 0, data.decode()


Generator = HttpxGenerator | RawGenerator
GENERATORS: dict[str, type[Generator]] = {"raw": RawGenerator, "httpx": HttpxGenerator}

# A receiver acknowledges in batches: what arrived within `ack_delay` of the first
# unacknowledged message (ACK_DELAY unless given), at most ACK_BATCH ids in one request.
ACK_DELAY = 0.02
ACK_BATCH = 200


def ack_requests(batch: list[int], *, cumulative: bool) -> list[tuple[list[int], bool]]:
    """The ack requests, (ids, cumulative), for `batch` (ids in order of arrival): all
    ids in one, or with `cumulative` `up_to` the id that arrived last. The server applies
    `up_to` to the ids up to it that were handed over no later than it, that is to every
    id up to it that arrived before it; ids above it that arrived earlier (their commits
    finished out of id order) are named in a second request."""
    if not cumulative:
        return [(batch, False)]
    last = batch[-1]
    above = [m for m in batch if m > last]
    return [([last], True)] + ([(above, False)] if above else [])


async def follow(
    gen: Generator,
    party: Party,
    received: Received,
    ready: asyncio.Event,
    *,
    cumulative: bool = False,
    ack_delay: float = ACK_DELAY,
) -> None:
    """Follow `party`'s stream through `gen` until cancelled, recording what arrives in
    `received` and acknowledging it through `gen` in batches (`ack_requests`): each id,
    or with `cumulative` `up_to`. `ready` is set at the first heartbeat."""
    pending: list[int] = []
    flusher: asyncio.Task[None] | None = None

    async def flush_later() -> None:
        await asyncio.sleep(ack_delay)
        try:
            while pending:
                batch = pending[:ACK_BATCH]
                del pending[: len(batch)]
                for ids, up_to in ack_requests(batch, cumulative=cumulative):
                    await gen.ack(party, ids, cumulative=up_to)
                    # Counted once answered, so a count that matches means nothing is in flight.
                    received.acks += 1
        except Exception as exc:  # noqa: BLE001 - counted and printed by the bench
            received.errors.append(f"{party.device_id}: ack: {describe(exc)}")

    def on_event(name: str, message_id: int, text: str) -> None:
        nonlocal flusher
        if name == "message":
            received.record(message_id, text)
            pending.append(message_id)
            # A flusher that has returned saw `pending` empty: a new one is needed.
            if flusher is None or flusher.done():
                flusher = asyncio.create_task(flush_later())
        elif name == "heartbeat":
            ready.set()
        elif name == "closing":
            received.errors.append(f"{party.device_id}: stream closed by the server: {text}")

    try:
        await gen.stream(party, on_event)
    except asyncio.CancelledError:
        if flusher is not None:
            flusher.cancel()
        raise
    except Exception as exc:  # noqa: BLE001 - counted and printed by the bench
        received.errors.append(f"{party.device_id}: {describe(exc)}")
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
