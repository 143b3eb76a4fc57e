"""SSE fan-out under load: N receivers each on its own stream, messages sent at a fixed
rate for a bounded time; delivery latency (p50/p99/max), lost and duplicated.

    .venv/bin/python -m bench.sse_load                          # 1,000 streams, 500 msg/s, 10 s
    .venv/bin/python -m bench.sse_load --streams 100 --rate 50 --seconds 5 --instances 2

A sandbox fleet is started in a temporary directory. Latency is the receiver's clock
at arrival minus the message's created_at (one machine, one clock). Sending stops at the
duration whatever was sent, so a saturated server shows as a lower achieved rate
rather than a longer run. The generator runs on the same machine as the fleet: on a
small machine it competes with the server for the cores, which the load line shows.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench import traffic

ACK_CONNECTIONS = 64
KEEPALIVE = 2.0


async def load(
    links: list[traffic.Link],
    *,
    rate: float,
    seconds: float,
    drain: float,
    in_flight: int,
    roles: dict[str, list[int]],
    cumulative: bool,
    raw: bool,
) -> dict[str, object]:
    received = traffic.Received()
    # Streams and requests in separate clients: a client looks through every connection
    # of its pool for each request, so requests sharing a pool with the streams cost
    # the generator O(streams) each (most of its CPU, measured, at 200 streams).
    # Acks wait their turn for ACK_CONNECTIONS; latency is taken on arrival, before it.
    stream_limits = httpx.Limits(max_connections=len(links), max_keepalive_connections=None)
    # Idle connections are dropped before uvicorn's own 5 s keep-alive ends them, or a
    # request may go out on a connection the server is closing (a ReadError).
    limits = httpx.Limits(
        max_connections=in_flight, max_keepalive_connections=None, keepalive_expiry=KEEPALIVE
    )
    ack_limits = httpx.Limits(
        max_connections=ACK_CONNECTIONS, max_keepalive_connections=None, keepalive_expiry=KEEPALIVE
    )
    sent: set[int] = set()
    failures = 0
    async with (
        httpx.AsyncClient(limits=stream_limits, timeout=30.0) as streams,
        httpx.AsyncClient(limits=limits, timeout=30.0) as senders,
        httpx.AsyncClient(limits=ack_limits, timeout=30.0) as ackers,
    ):
        readies = [asyncio.Event() for _ in links]
        followers = [
            asyncio.create_task(
                traffic.follow(streams, ackers, lk.receiver, received, ready, cumulative=cumulative)
            )
            for lk, ready in zip(links, readies, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
        gate = asyncio.Semaphore(in_flight)

        async def one(lk: traffic.Link) -> None:
            nonlocal failures
            try:
                sent.add(await traffic.send(senders, lk))
            except httpx.HTTPError:
                failures += 1
            finally:
                gate.release()

        total = int(rate * seconds)
        cpu_before = traffic.cpu_seconds(roles)
        began = time.monotonic()
        tasks = []
        for k in range(total):
            delay = began + k / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await gate.acquire()
            if time.monotonic() - began >= seconds:  # bounded: behind schedule, stop
                gate.release()
                break
            tasks.append(asyncio.create_task(one(links[k % len(links)])))
        await asyncio.gather(*tasks)
        send_s = time.monotonic() - began
        deadline = time.monotonic() + drain
        while sent - set(received.counts) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a duplicate would arrive now
        wall = time.monotonic() - began
        cpu_after = traffic.cpu_seconds(roles)
        for f in followers:
            f.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
    lost, duplicated = received.verdict(sent)
    p50, p99, top = traffic.percentiles(received.latencies_ms)
    return {
        "sent": len(sent),
        "send_failures": failures,
        "achieved_rate": len(sent) / send_s,
        "p50": p50,
        "p99": p99,
        "max": top,
        "lost": lost,
        "duplicated": duplicated,
        "errors": received.errors,
        "wall": wall,
        "cpu": {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after},
    }


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The generator's event loop: uvloop (cheaper per event) when asked and installed."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=500.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to send")
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--instances", type=int, default=2, help="API instances")
    parser.add_argument("--in-flight", type=int, default=200, help="sends at once, at most")
    parser.add_argument("--drain", type=float, default=30.0, help="seconds to wait after")
    parser.add_argument(
        "--ack", choices=("ids", "up_to"), default="up_to", help="acks by ids or cumulative"
    )
    parser.add_argument(
        "--reader",
        choices=("h11", "httpx"),
        default="h11",
        help="SSE readers on bare h11 connections, or httpx-sse in a pool",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="the generator's event loop (auto: uvloop when installed)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the API instances (e.g. E2EE_TOKEN_CACHE_SECONDS=0), repeatable",
    )
    args = parser.parse_args()
    server_env = dict(item.split("=", 1) for item in args.server_env)
    print(traffic.load_line())
    print(
        f"acks: {args.ack}; readers: {args.reader}; generator loop: "
        f"{'uvloop' if loop_factory(args.loop) else 'asyncio'}; "
        f"server settings: {server_env or 'defaults'}"
    )
    with tempfile.TemporaryDirectory(prefix="e2ee-bench-") as tmp:
        with traffic.fleet(
            Path(tmp) / "sandbox", instances=args.instances, env=server_env
        ) as state:
            began = time.monotonic()
            senders = traffic.parties(state, args.senders, "sender")
            receivers = traffic.parties(state, args.streams, "receiver")
            links = [traffic.link(senders[i % len(senders)], r) for i, r in enumerate(receivers)]
            print(f"{len(receivers)} receivers ready in {time.monotonic() - began:.0f} s")
            with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
                r = runner.run(
                    load(
                        links,
                        rate=args.rate,
                        seconds=args.seconds,
                        drain=args.drain,
                        in_flight=args.in_flight,
                        roles=traffic.fleet_processes(state),
                        cumulative=args.ack == "up_to",
                        raw=args.reader == "h11",
                    )
                )
    print(
        f"streams {args.streams}, instances {args.instances}, target {args.rate:g} msg/s "
        f"for {args.seconds:g} s: sent {r['sent']} at {r['achieved_rate']:.0f} msg/s "
        f"({r['send_failures']} failed)"
    )
    print(
        f"latency ms p50 {r['p50']:.1f}  p99 {r['p99']:.1f}  max {r['max']:.1f}  "
        f"(goal: p99 <= 50)   lost {r['lost']}  duplicated {r['duplicated']}"
    )
    cpu: dict[str, float] = r["cpu"]  # type: ignore[assignment]
    sent = max(int(r["sent"]), 1)  # type: ignore[call-overload]
    print(
        f"CPU while sending and draining ({r['wall']:.1f} s), ms per message sent: "
        + ", ".join(f"{k} {1000 * v / sent:.1f}" for k, v in cpu.items())
    )
    for error in r["errors"][:5]:  # type: ignore[index]
        print(f"  receiver error: {error}")
    print(traffic.load_line())


if __name__ == "__main__":
    main()
