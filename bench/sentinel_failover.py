"""Failover drills on the Sentinel sandbox: how long the switch takes, seen from each side.

    PYTHONPATH=. .venv/bin/python -m bench.sentinel_failover            # 5 drills
    PYTHONPATH=. .venv/bin/python -m bench.sentinel_failover --runs 10

Each drill SIGKILLs the current primary (down-after-milliseconds 1000, failover-timeout
3000, quorum 2 of 3) and measures, in wall-clock seconds from the kill:
- `sentinels`: until a quorum of sentinels names a new primary that answers ROLE master;
- `relay`: the API instances' own record of Redis unavailability (lost to regained,
  the longest instance, from /dm/metrics);
- `recover`: the whole `redis recover --execute --yes` run afterwards (new primary,
  metrics, canary over SSE, stored vs delivered, restart, rejoin as replica).
Prints the median and maximum of each; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from e2ee_ops import sandbox
from e2ee_ops.adapters.sentinel import SentinelAdmin
from e2ee_ops.procedures.redis_sentinel import read_topology, sentinel_findings
from e2ee_ops.reference.client import ReferenceClient
from e2ee_ops.status import Status


def _wait(predicate, deadline: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise SystemExit("bench: the topology did not settle within 60 s")
        time.sleep(0.05)


def drill(state: sandbox.SandboxState, admin: SentinelAdmin) -> dict[str, float]:
    _wait(lambda: all(f.status is Status.OK for f in sentinel_findings(admin)))
    old = read_topology(admin).primary
    assert old is not None
    killed = time.monotonic()
    sandbox.kill_redis_node(state, int(old.rpartition(":")[2]))

    def moved() -> bool:
        primary = read_topology(admin).primary
        try:
            return primary not in (None, old) and admin.role(primary).role == "master"
        except Exception:  # noqa: BLE001 - not yet
            return False

    _wait(moved)
    switched = time.monotonic() - killed
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "e2ee_ops", "--config", str(state.config_path), "--output",
         "json", "redis", "recover", "--execute", "--yes"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    recover = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"bench: redis recover failed (exit {done.returncode})")
    token = Path(state.accounts["admin"].token_file).read_text().strip()
    with ReferenceClient(state.api_url, token) as client:
        rows = client.request("GET", "/dm/metrics")["redis_outages_by_instance"]
    relay = max(r["last_redis_outage"]["duration_seconds"] for r in rows if r["last_redis_outage"])
    return {"sentinels": switched, "relay": float(relay), "recover": recover}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="e2ee-ops-bench-") as d:
        state = sandbox.up(Path(d), api_instances=2, redis_mode="sentinel")
        admin = SentinelAdmin(state.sentinel_hosts, state.sentinel_service, timeout=1.0)
        try:
            runs = []
            for _ in range(args.runs):
                runs.append(drill(sandbox.SandboxState.load(state.dir), admin))
        finally:
            sandbox.down(Path(d))
    print(f"{args.runs} failover drills (seconds)")
    for key in ("sentinels", "relay", "recover"):
        values = [r[key] for r in runs]
        print(f"  {key:10} median {statistics.median(values):6.2f}   max {max(values):6.2f}")


if __name__ == "__main__":
    main()
