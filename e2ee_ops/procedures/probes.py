"""Running read-only probes side by side, each turned into a Finding whatever happens.

A probe that raises does not sink the others: its failure becomes an UNKNOWN
finding (could not tell) carrying the error's one sentence, or the status the probe
itself chose for that failure (a Redis that refuses PING is CRITICAL, not UNKNOWN).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from e2ee_ops.errors import E2eeOpsError
from e2ee_ops.status import Finding, Status

Probe = Callable[[], Finding | list[Finding]]


def run_probe(name: str, probe: Probe) -> list[Finding]:
    try:
        result = probe()
    except E2eeOpsError as exc:
        return [Finding(name=name, status=Status.UNKNOWN, value=None, summary=f"{name}: {exc}")]
    return result if isinstance(result, list) else [result]


def run_probes(
    probes: Mapping[str, Probe], *, timeout: float | None = None, workers: int = 8
) -> list[Finding]:
    """Run every probe concurrently; findings come back in the probes' order."""
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(probes))))
    try:
        futures = {name: pool.submit(run_probe, name, p) for name, p in probes.items()}
        findings: list[Finding] = []
        for name, future in futures.items():
            try:
                findings.extend(future.result(timeout=timeout))
            except FutureTimeout:
                findings.append(
                    Finding(
                        name=name,
                        status=Status.UNKNOWN,
                        value=None,
                        summary=f"{name}: no answer within {timeout:g} s",
                    )
                )
        return findings
    finally:
        # Never wait for a probe stuck past its timeout; its thread ends with its I/O timeout.
        pool.shutdown(wait=False, cancel_futures=True)
