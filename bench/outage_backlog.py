"""Messages stored while Redis is really down, then Redis back: how long until every one
is delivered over SSE, and until `e2ee-ops redis recover` has verified the recovery.

    .venv/bin/python -m bench.outage_backlog                  # 1k, then 10k messages
    .venv/bin/python -m bench.outage_backlog --messages 1000 --instances 2

A sandbox fleet (embedded PostgreSQL and Redis, reference server instances) is started
in a temporary directory. Per size: a receiver follows its SSE stream and acknowledges
each message; the sandbox's redis-server process is stopped; the messages are sent
(stored, not relayed); Redis is started again, and at that instant the clock starts
and `redis recover --execute --yes` runs as an operator would run it. The bench checks
itself that no message was lost or delivered twice. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from bench import traffic
from e2ee_ops import sandbox

GOALS = {1000: (2.0, 2.0), 10000: (2.0, 3.0)}  # messages: (delivered s, verified s)


async def _send_all(gen: traffic.Generator, lk: traffic.Link, n: int, workers: int) -> set[int]:
    ids: set[int] = set()
    remaining = iter(range(n))

    async def worker() -> None:
        for _ in remaining:
            ids.add(await gen.send(lk))

    await asyncio.gather(*(worker() for _ in range(workers)))
    return ids


async def one_outage(
    state: sandbox.SandboxState, lk: traffic.Link, n: int, timeout: float
) -> dict[str, object]:
    received = traffic.Received()
    gen = traffic.HttpxGenerator(streams=1, in_flight=64, ack_connections=64)
    try:
        ready = asyncio.Event()
        follower = asyncio.create_task(traffic.follow(gen, lk.receiver, received, ready))
        await asyncio.wait_for(ready.wait(), 30)
        await asyncio.to_thread(sandbox.stop_service, state.dir, "redis")
        began = time.monotonic()
        sent = await _send_all(gen, lk, n, workers=16)
        stored_s = time.monotonic() - began
        await asyncio.to_thread(sandbox.start_service, state.dir, "redis")
        back = time.monotonic()
        recover = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "e2ee_ops", "--config", str(state.config_path),
            "--output", "json", "redis", "recover", "--execute", "--yes",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await recover.communicate()
        verified_s = time.monotonic() - back
        deadline = back + timeout
        while sent - set(received.counts) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a duplicate would arrive now
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    finally:
        await gen.aclose()
    lost, duplicated = received.verdict(sent)
    try:
        status = json.loads(out).get("status", "?")
    except ValueError:
        status = "no JSON"
    return {
        "messages": n,
        "stored_s": stored_s,
        "delivered_s": received.last_arrival - back if not lost else float("nan"),
        "verified_s": verified_s,
        "recover": f"exit {recover.returncode} {status}",
        "lost": lost,
        "duplicated": duplicated,
        "errors": received.errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--instances", type=int, default=1, help="API instances")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per size")
    args = parser.parse_args()
    print(traffic.load_line())
    with tempfile.TemporaryDirectory(prefix="e2ee-bench-") as tmp:
        state_dir = Path(tmp) / "sandbox"
        with traffic.fleet(state_dir, instances=args.instances) as state:
            sender, receiver = traffic.parties(state, 2, "backlog")
            lk = traffic.link(sender, receiver)
            print(
                f"{'messages':>9}{'stored s':>10}{'delivered s':>13}{'goal':>6}"
                f"{'verified s':>12}{'goal':>6}  recover            lost  dup"
            )
            for n in args.messages:
                r = asyncio.run(one_outage(state, lk, n, args.timeout))
                goal_d, goal_v = GOALS.get(n, (float("nan"), float("nan")))
                print(
                    f"{n:>9}{r['stored_s']:>10.1f}{r['delivered_s']:>13.2f}{goal_d:>6.1f}"
                    f"{r['verified_s']:>12.2f}{goal_v:>6.1f}  {r['recover']:<18}"
                    f"{r['lost']:>5}{r['duplicated']:>5}"
                )
                for error in r["errors"]:  # type: ignore[attr-defined]
                    print(f"  receiver error: {error}")
    print(traffic.load_line())


if __name__ == "__main__":
    main()
