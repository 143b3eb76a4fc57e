"""Run the e2ee-ops CLI in-process and get back what a shell would see.

    from tests.support.cli import cli
    result = cli("--output", "json", "config", "show", env=isolated_env)
    assert result.exit_code == 0 and result.json["kind"] == "list"

typer's CliRunner (typer 0.29 vendors click 8.2+ behaviour) keeps stdout and stderr
apart; `result.output` would interleave them, so this helper never uses it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from typer.testing import CliRunner

from e2ee_ops.cli.main import app


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    @property
    def json(self) -> Any:
        """stdout parsed as JSON (fails the test with the text when it is not JSON)."""
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(
                f"stdout is not JSON:\n{self.stdout}\nstderr:\n{self.stderr}"
            ) from exc


def cli(
    *args: str,
    env: Mapping[str, str | None] | None = None,
    obj: Any = None,
    input: str | None = None,
) -> CliResult:
    """Invoke `e2ee-ops ARGS`; `obj` injects a prepared AppContext."""
    result = CliRunner().invoke(app, list(args), env=env, obj=obj, input=input)
    exception = result.exception
    if isinstance(exception, SystemExit):
        exception = None
    return CliResult(
        exit_code=result.exit_code,
        stdout=result.stdout,
        stderr=result.stderr,
        exception=exception,
    )
