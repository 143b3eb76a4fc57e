"""`make mutate`: mutation testing of the procedures and the SQL-building adapters.

mutmut (configured in pyproject.toml, [tool.mutmut]) plants one bug at a time and runs the
tests that exercise the mutated function; a mutant the tests do not notice "survived".
PostgreSQL and Redis are started once here and shared by every mutant's test run (through
E2EE_OPS_TEST_DATABASE_URL / E2EE_OPS_TEST_REDIS_URL), so a mutant costs its tests, not a
server start.

Checking every mutant (about 5,900) takes hours, so a run checks a random sample of them
(--sample, the same sample for the same --seed and code) after the small warm-up that
generates every mutant and maps each function to its tests. The run stops at --budget
seconds (what was checked by then still counts) and prints the kill rate of the checked
mutants, overall and per file.

    python -m tests.mutate [--budget S] [--children N] [--sample N] [--seed N] [NAME ...]

With --keep the last run's mutants/ is reused: mutmut then re-checks only the named
mutants (glob patterns such as 'e2ee_ops.procedures.abuse.*' work) or the unchecked ones,
and collects test coverage only for new tests, which is how a survivor is re-checked after
a test is added for it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KILLED = {1, 3, 36, 24, -24, 152, 255, 37}  # a failing test, a timeout, the type check
SURVIVED = {0}
# A small function whose mutants are checked first: that run generates every mutant and
# maps every function to the tests that run it.
WARM_UP = "e2ee_ops.procedures.rollback.x_listing__mutmut_*"


def _mutmut() -> str:
    found = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if found is None:
        sys.exit("mutmut is not installed: pip install -e '.[mutation]'")
    return found


def _run(budget: float, children: int, names: list[str], sample: int, seed: int) -> str | None:
    """mutmut run with shared servers; None when it finished, else why it stopped."""
    from e2ee_ops.embedded import EmbeddedPostgres, EmbeddedRedis

    deadline = time.monotonic() + budget
    with tempfile.TemporaryDirectory(prefix="e2ee-ops-mutate-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pgdata")
        pg.start()
        redis = EmbeddedRedis(Path(tmp) / "redis")
        redis.start()
        env = {
            **os.environ,
            "E2EE_OPS_TEST_DATABASE_URL": pg.url,
            "E2EE_OPS_TEST_REDIS_URL": redis.url,
        }
        try:
            if not names:
                stopped = _mutmut_run([WARM_UP], children, env, deadline)
                if stopped:
                    return stopped
                names = _sample(sample, seed)
            return _mutmut_run(names, children, env, deadline)
        finally:
            redis.stop()
            pg.stop()


def _mutmut_run(
    names: list[str], children: int, env: dict[str, str], deadline: float
) -> str | None:
    """None when mutmut finished; else why it stopped."""
    cmd = [_mutmut(), "run", "--max-children", str(children), *names]
    print(f"mutmut run: {len(names)} name(s)", flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    try:
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except BaseException as exc:  # the budget, or Ctrl-C: stop mutmut and its children
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if isinstance(exc, subprocess.TimeoutExpired):
            return "the time budget ran out: unchecked mutants are listed as such"
        raise
    return None if code == 0 else f"mutmut failed (exit {code}); see its output above"


def _sample(size: int, seed: int) -> list[str]:
    """A reproducible random sample of the mutants not checked yet."""
    unchecked = sorted(
        name
        for meta in (ROOT / "mutants").rglob("*.py.meta")
        for name, code in json.loads(meta.read_text()).get("exit_code_by_key", {}).items()
        if code is None
    )
    return sorted(random.Random(seed).sample(unchecked, min(size, len(unchecked))))


def results() -> dict[str, Counter[str]]:
    """Per mutated file: killed, survived, and not checked (no test ran it, or not reached)."""
    by_file: dict[str, Counter[str]] = {}
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        counts: Counter[str] = Counter()
        for code in data.get("exit_code_by_key", {}).values():
            if code in KILLED:
                counts["killed"] += 1
            elif code in SURVIVED:
                counts["survived"] += 1
            elif code in (5, 33):
                counts["no tests"] += 1
            else:
                counts["not checked"] += 1
        if counts:
            by_file[str(meta.relative_to(ROOT / "mutants")).removesuffix(".meta")] = counts
    return by_file


def rate(counts: Counter[str]) -> str:
    checked = counts["killed"] + counts["survived"] + counts["no tests"]
    if not checked:
        return "n/a"
    return f"{100.0 * counts['killed'] / checked:.1f} %"


def report(by_file: dict[str, Counter[str]]) -> str:
    lines = [f"{'file':<44}{'killed':>8}{'survived':>10}{'no tests':>10}{'unchecked':>11}  rate"]
    total: Counter[str] = Counter()
    for path, c in by_file.items():
        total.update(c)
        lines.append(
            f"{path:<44}{c['killed']:>8}{c['survived']:>10}{c['no tests']:>10}"
            f"{c['not checked']:>11}  {rate(c)}"
        )
    procedures: Counter[str] = Counter()
    for path, c in by_file.items():
        if path.startswith("e2ee_ops/procedures/"):
            procedures.update(c)
    lines.append(
        f"{'total':<44}{total['killed']:>8}{total['survived']:>10}{total['no tests']:>10}"
        f"{total['not checked']:>11}  {rate(total)}"
    )
    lines.append(f"kill rate: {rate(total)} of checked mutants ({rate(procedures)} in procedures/)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=18 * 60, help="seconds (default 1080)")
    parser.add_argument("--children", type=int, default=2, help="mutants checked at once")
    parser.add_argument("--sample", type=int, default=200, help="mutants checked (default 200)")
    parser.add_argument("--seed", type=int, default=17, help="which sample (default 17)")
    parser.add_argument("--report-only", action="store_true", help="print the last run's figures")
    parser.add_argument("--keep", action="store_true", help="reuse the last run's mutants/")
    parser.add_argument("names", nargs="*", help="only these mutants (mutmut's names)")
    args = parser.parse_args()
    if not args.report_only:
        if not args.keep:
            shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        stopped = _run(args.budget, args.children, args.names, args.sample, args.seed)
        if stopped:
            print(stopped)
            if stopped.startswith("mutmut failed"):
                return 1
    by_file = results()
    if not by_file:
        print("no mutation results: run without --report-only first", file=sys.stderr)
        return 1
    print(report(by_file))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
