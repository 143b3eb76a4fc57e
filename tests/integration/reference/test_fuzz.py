"""Property-based fuzzing of the live reference server from its own OpenAPI document
(schemathesis strategies driven by hypothesis): whatever the input, no answer is a
5xx. `make test` runs a small, reproducible budget per operation; `make fuzz` a large,
random one (E2EE_FUZZ_EXAMPLES, E2EE_FUZZ_RANDOM)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES = int(os.environ.get("E2EE_FUZZ_EXAMPLES", "8"))
RANDOM = os.environ.get("E2EE_FUZZ_RANDOM", "") not in ("", "0")
# A stream of the caller's own device never ends by itself; everything else is fuzzed.
SKIPPED = ("/stream",)


@pytest.fixture
def hypothesis_home(tmp_path: Path) -> Iterator[None]:
    """Hypothesis keeps caches (even with database=None) outside the repository."""
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(str(tmp_path / "hypothesis"))
    yield
    set_hypothesis_home_dir(None)


@pytest.mark.usefixtures("hypothesis_home")
def test_no_input_gives_a_server_error(reference_server, admin_token) -> None:  # type: ignore[no-untyped-def]
    schema = schemathesis.openapi.from_url(reference_server.url + "/openapi.json")
    headers = {"Authorization": f"Bearer {admin_token}"}
    fuzzed, skipped = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith(SKIPPED):
            skipped.append(operation.path)
            continue

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=not RANDOM,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def no_server_error(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(headers=headers, timeout=15)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:300]}"
            )

        no_server_error()
        fuzzed.append(f"{operation.method.upper()} {operation.path}")
    assert skipped == ["/dm/devices/{device_id}/stream"]
    assert len(fuzzed) >= 20, fuzzed  # every other operation of the API
