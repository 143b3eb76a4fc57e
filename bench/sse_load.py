"""SSE fan-out under load: N receivers each on its own stream, messages sent at a fixed
rate for a bounded time; delivery latency (p50/p99/max), lost and duplicated.

    .venv/bin/python -m bench.sse_load                          # 1,000 streams, 500 msg/s, 10 s
    .venv/bin/python -m bench.sse_load --streams 100 --rate 50 --seconds 5 --instances 2
    .venv/bin/python -m bench.sse_load --rate 100 500 --generator httpx raw --rounds 2

A sandbox fleet is started in a temporary directory. Latency is the receiver's clock
at arrival minus the message's created_at (one machine, one clock). Sending stops at the
duration whatever was sent, so a saturated server shows as a lower achieved rate
rather than a longer run. The generator runs on the same machine as the fleet: on a
small machine it competes with the server for the cores, which the load line and the
CPU per part show. Several rates and generators run in turn on the same fleet, each
with its own streams, `--rounds` times, interleaved. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import traffic

ACK_CONNECTIONS = 64
# Receivers batch their acks over a quarter of a second, as a client that acks in the
# background would; latency is taken on arrival, before any ack.
ACK_DELAY = 0.25


@dataclass
class Run:
    """One run's figures."""

    generator: str
    rate: float
    ack_delay: float
    loop: str
    sent: int = 0
    send_s: float = 0.0
    wall: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    lost: int = 0
    duplicated: int = 0
    arrivals: int = 0
    acks: int = 0
    errors: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    stats: str = ""
    load: tuple[str, str] = ("", "")

    @property
    def achieved(self) -> float:
        return self.sent / self.send_s if self.send_s else 0.0

    def cpu_ms_per_message(self, part: str) -> float:
        return 1000 * self.cpu.get(part, float("nan")) / max(self.sent, 1)


async def load(
    gen: traffic.Generator,
    links: list[traffic.Link],
    run: Run,
    *,
    seconds: float,
    drain: float,
    in_flight: int,
    roles: dict[str, list[int]],
    cumulative: bool,
    ack_delay: float,
) -> None:
    """Open every receiver's stream, send at `run.rate` for `seconds`, wait for what was
    sent (at most `drain` s) and for the last acks; fill in `run`."""
    received = traffic.Received()
    sent: set[int] = set()
    readies = [asyncio.Event() for _ in links]
    followers = [
        asyncio.create_task(
            traffic.follow(
                gen, lk.receiver, received, ready, cumulative=cumulative, ack_delay=ack_delay
            )
        )
        for lk, ready in zip(links, readies, strict=True)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
        gate = asyncio.Semaphore(in_flight)

        async def one(lk: traffic.Link) -> None:
            try:
                sent.add(await gen.send(lk))
            except Exception as exc:  # noqa: BLE001 - counted by kind and printed
                run.failures[traffic.describe(exc)] += 1
            finally:
                gate.release()

        total = int(run.rate * seconds)
        cpu_before = traffic.cpu_seconds(roles)
        began = time.monotonic()
        tasks = []
        for k in range(total):
            delay = began + k / run.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await gate.acquire()
            if time.monotonic() - began >= seconds:  # bounded: behind schedule, stop
                gate.release()
                break
            tasks.append(asyncio.create_task(one(links[k % len(links)])))
        await asyncio.gather(*tasks)
        run.send_s = time.monotonic() - began
        deadline = time.monotonic() + drain
        while sent - set(received.counts) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        # A duplicate would arrive now, and the last batch of acks goes out.
        await asyncio.sleep(max(0.5, ack_delay + 0.3))
        run.wall = time.monotonic() - began
        cpu_after = traffic.cpu_seconds(roles)
    finally:
        for f in followers:
            f.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
    run.sent = len(sent)
    run.lost, run.duplicated = received.verdict(sent)
    run.latencies_ms = received.latencies_ms(sent)
    run.arrivals = sum(received.counts.values())
    run.acks = received.acks
    run.errors = received.errors
    run.cpu = {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after}


async def one_run(
    name: str,
    links: list[traffic.Link],
    run: Run,
    args: argparse.Namespace,
    roles: dict[str, list[int]],
) -> None:
    """`run` with a new generator of kind `name`, closed after."""
    gen = traffic.GENERATORS[name](
        streams=args.streams, in_flight=args.in_flight, ack_connections=ACK_CONNECTIONS
    )
    try:
        await load(
            gen,
            links,
            run,
            seconds=args.seconds,
            drain=args.drain,
            in_flight=args.in_flight,
            roles=roles,
            cumulative=args.ack == "up_to",
            ack_delay=run.ack_delay,
        )
    finally:
        run.stats = gen.stats()
        await gen.aclose()


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


def report(run: Run, args: argparse.Namespace) -> None:
    p50, p99, top = traffic.percentiles(run.latencies_ms)
    failures = sum(run.failures.values())
    print(
        f"[{run.generator} on {run.loop}] streams {args.streams}, instances {args.instances}, "
        f"target {run.rate:g} msg/s for {args.seconds:g} s: sent {run.sent} "
        f"at {run.achieved:.0f} msg/s"
    )
    print(
        f"  latency ms p50 {p50:.1f}  p99 {p99:.1f}  max {top:.1f}  (goal: p99 <= 50)   "
        f"lost {run.lost}  duplicated {run.duplicated}"
    )
    print(
        f"  send failures {failures}"
        + (
            ": " + "; ".join(f"{n} x {kind}" for kind, n in run.failures.most_common())
            if failures
            else ""
        )
    )
    per = run.acks / run.arrivals if run.arrivals else float("nan")
    print(
        f"  acks: {run.acks} requests for {run.arrivals} messages received = {per:.2f} per "
        f"message ({args.ack}, batched over {run.ack_delay:g} s)"
    )
    print(
        f"  CPU while sending and draining ({run.wall:.1f} s), ms per message sent: "
        + ", ".join(f"{k} {run.cpu_ms_per_message(k):.2f}" for k in run.cpu)
    )
    if run.stats:
        print(f"  {run.stats}")
    for error in run.errors[:5]:
        print(f"  receiver error: {error}")
    if len(run.errors) > 5:
        print(f"  ... {len(run.errors)} receiver errors in all")
    print(f"  {run.load[0]} before, {run.load[1]} after")


def summary(runs: list[Run]) -> None:
    print(
        "\ngenerator  loop     target  achieved   p50 ms   p99 ms  lost  dup  failed  ack s  "
        "acks/msg  CPU ms/msg generator / API / PostgreSQL   load before"
    )
    for r in runs:
        p50, p99, _ = traffic.percentiles(r.latencies_ms)
        per = r.acks / r.arrivals if r.arrivals else float("nan")
        cpu = " / ".join(f"{r.cpu_ms_per_message(k):.2f}" for k in ("generator", "api", "postgres"))
        print(
            f"{r.generator:<11}{r.loop:<8}{r.rate:>6g}{r.achieved:>10.0f}{p50:>9.1f}{p99:>9.1f}"
            f"{r.lost:>6}{r.duplicated:>5}{sum(r.failures.values()):>8}"
            f"{r.ack_delay:>7g}{per:>10.2f}  "
            f"{cpu:<40}{r.load[0].split(' on ')[0].removeprefix('load average ')}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument(
        "--rate", type=float, nargs="+", default=[500.0], help="messages per second (each in turn)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to send")
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--instances", type=int, default=2, help="API instances")
    parser.add_argument("--in-flight", type=int, default=200, help="sends at once, at most")
    parser.add_argument("--drain", type=float, default=30.0, help="seconds to wait after")
    parser.add_argument(
        "--ack", choices=("ids", "up_to"), default="up_to", help="acks by ids or cumulative"
    )
    parser.add_argument(
        "--ack-delay",
        type=float,
        nargs="+",
        default=[ACK_DELAY],
        help="a receiver acknowledges what arrived within this many seconds in one batch "
        "(each in turn)",
    )
    parser.add_argument(
        "--generator",
        choices=sorted(traffic.GENERATORS),
        nargs="+",
        default=["raw"],
        help="raw (pre-encoded requests, hand-parsed streams) or httpx (httpx and "
        "httpx-sse); several run in turn",
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat every rate and generator")
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        nargs="+",
        default=["auto"],
        help="the generator's event loop (auto: uvloop when installed); each in turn",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="cProfile the generator's runs into FILE.N (one per run; slows it down)",
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
    print(f"acks: {args.ack}; server settings: {server_env or 'defaults'}")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="e2ee-bench-") as tmp:
        with traffic.fleet(
            Path(tmp) / "sandbox", instances=args.instances, env=server_env
        ) as state:
            began = time.monotonic()
            senders = traffic.parties(state, args.senders, "sender")
            receivers = traffic.parties(state, args.streams, "receiver")
            links = [traffic.link(senders[i % len(senders)], r) for i, r in enumerate(receivers)]
            print(f"{len(receivers)} receivers ready in {time.monotonic() - began:.0f} s")
            order = itertools.product(
                range(args.rounds), args.rate, args.ack_delay, args.loop, args.generator
            )
            for n, (_, rate, ack_delay, loop, name) in enumerate(order):
                factory = loop_factory(loop)
                run = Run(name, rate, ack_delay, "uvloop" if factory else "asyncio")
                before = traffic.load_line()
                profile = cProfile.Profile() if args.profile else None
                with asyncio.Runner(loop_factory=factory) as runner:
                    if profile is not None:
                        profile.enable()
                    runner.run(one_run(name, links, run, args, traffic.fleet_processes(state)))
                    if profile is not None:
                        profile.disable()
                        profile.dump_stats(f"{args.profile}.{n}")
                run.load = (before, traffic.load_line())
                report(run, args)
                runs.append(run)
                time.sleep(1.0)  # the streams just closed end on the server
    if len(runs) > 1:
        summary(runs)
    print(traffic.load_line())


if __name__ == "__main__":
    main()
