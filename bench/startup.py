"""Start-up time of the console script against the floor its libraries set.

    .venv/bin/python -m bench.startup            # 15 interleaved rounds
    .venv/bin/python -m bench.startup --runs 40

Times `python -c "import typer, rich"` (the floor: every Typer + rich CLI pays it),
`e2ee-ops --help`, `e2ee-ops redis check --help` and a command that runs to its end
without a server (`--output json config show`: options coerced, configuration loaded
and validated, output rendered) as fresh processes, and prints each one's median CPU
time and its ratio to the floor's, with the wall-clock medians.
Prints figures only; nothing is asserted.
To see what a command imports beyond the floor:

    .venv/bin/python -X importtime -m e2ee_ops.cli --help 2>&1 | sort -t'|' -k2 -n | tail
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _script() -> str:
    beside = Path(sys.executable).with_name("e2ee-ops")
    return str(beside) if beside.exists() else (shutil.which("e2ee-ops") or "e2ee-ops")


# Bytecode is cached as an installed package would have it (pip compiles at install;
# PYTHONDONTWRITEBYTECODE would otherwise recompile every module on every run).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"NO_COLOR": "1"}


def _seconds(argv: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run of `argv`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run(argv, env=ENV, stdout=subprocess.DEVNULL, check=True, timeout=60)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    script = _script()
    with tempfile.TemporaryDirectory(prefix="e2ee-bench-") as tmp:
        config = Path(tmp) / "e2ee-ops.yaml"
        config.write_text("postgres:\n  url: postgresql://127.0.0.1:9/ops\n")
        cases = {
            'python -c "import typer, rich"': [sys.executable, "-c", "import typer, rich"],
            "e2ee-ops --help": [script, "--help"],
            "e2ee-ops redis check --help": [script, "redis", "check", "--help"],
            "e2ee-ops -o json config show": [script, "--config", str(config)]
            + ["--output", "json", "config", "show"],
        }
        _measure(cases, runs)


def _measure(cases: dict[str, list[str]], runs: int) -> None:
    for argv in cases.values():  # warm the page cache and .pyc files
        subprocess.run(argv, env=ENV, stdout=subprocess.DEVNULL, check=True, timeout=60)
    # Rounds interleave the cases, so a busy machine slows all of them alike. The
    # ratio is of median CPU time (user + system), which waiting for a shared CPU
    # does not inflate; the wall-clock medians are shown beside it.
    walls: dict[str, list[float]] = {name: [] for name in cases}
    cpus: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, argv in cases.items():
            wall, cpu = _seconds(argv)
            walls[name].append(wall)
            cpus[name].append(cpu)
    floor = statistics.median(next(iter(cpus.values())))
    print(f"{'':32} {'CPU':>10} {'ratio':>6} {'wall':>10}")
    for name in cases:
        cpu = statistics.median(cpus[name])
        wall = statistics.median(walls[name])
        print(f"{name:32} {cpu * 1000:7.1f} ms {cpu / floor:5.2f}x {wall * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
