"""Running read-only probes side by side, each turned into a Finding whatever happens.

A probe that raises does not sink the others: its failure becomes an UNKNOWN
finding (could not tell) carrying the error's one sentence, or the status the probe
itself chose for that failure (a Redis that refuses PING is CRITICAL, not UNKNOWN).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from e2ee_ops.errors import E2eeOpsError
from e2ee_ops.status import Finding, Status

Probe = Callable[[], Finding | list[Finding]]


def run_probe(name: str, probe: Probe) -> list[Finding]:
    try:
        result = probe()
    except E2eeOpsError as exc:
        return [Finding(name=name, status=Status.UNKNOWN, value=None, summary=f"{name}: {exc}")]
    return result if isinstance(result, list) else [result]


def run_probes(probes: Mapping[str, Probe], *, timeout: float | None = None) -> list[Finding]:
    """Run every probe concurrently; findings come back in the probes' order.

    `timeout` bounds the whole call, not each probe. A probe still running at the
    deadline becomes UNKNOWN; it runs on a daemon thread, so it never holds the process
    open after the command has answered (its own I/O deadline ends it).
    """
    results: dict[str, list[Finding]] = {}
    failures: dict[str, BaseException] = {}
    done = {name: threading.Event() for name in probes}

    def work(name: str, probe: Probe) -> None:
        try:
            results[name] = run_probe(name, probe)
        except BaseException as exc:  # noqa: BLE001 - a bug: re-raised in the caller
            failures[name] = exc
        finally:
            done[name].set()

    for name, probe in probes.items():
        threading.Thread(target=work, args=(name, probe), name=f"probe {name}", daemon=True).start()
    end = None if timeout is None else time.monotonic() + timeout
    findings: list[Finding] = []
    for name in probes:
        left = None if end is None else max(0.0, end - time.monotonic())
        if not done[name].wait(left):
            findings.append(
                Finding(name, Status.UNKNOWN, None, f"{name}: no answer within {timeout:g} s")
            )
        elif name in failures:
            raise failures[name]
        else:
            findings.extend(results[name])
    return findings
