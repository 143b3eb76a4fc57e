"""Every outcome reaches monitoring and CI: a plugin line in nagios mode (also for
usage errors, bad configs and timeouts), a JUnit file valid against the strict Ant
schema, and a Prometheus textfile that promtool accepts, also when the run failed."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import xmlschema

from e2ee_ops.cli.main import app
from e2ee_ops.cli.outcome import Invocation
from e2ee_ops.render import OutputFormat
from tests.support.cli import cli

XSD = Path(__file__).resolve().parents[1] / "data" / "junit-ant.xsd"


@pytest.fixture(scope="module")
def junit_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


@pytest.fixture
def silent_api() -> Iterator[str]:
    """A real TCP listener that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def _config(tmp_path: Path, api: str) -> Path:
    config = tmp_path / "c.yaml"
    config.write_text(f"api: {{base_urls: ['{api}'], timeout_seconds: 30, retries: 0}}\n")
    return config


def test_invocation_reads_the_command_path_and_sinks_from_argv() -> None:
    from typer.main import get_command

    root = get_command(app)
    inv = Invocation.parse(
        ["-c", "x.yaml", "-onagios", "redis", "check", "--junit=j.xml", "--textfile", "t.prom"],
        root,
        {},
    )
    assert inv == Invocation("redis check", OutputFormat.NAGIOS, Path("j.xml"), Path("t.prom"))
    inv = Invocation.parse(["incident", "open", "doctor", "--output", "json"], root, {})
    assert inv.command == "incident open" and inv.output is OutputFormat.JSON
    assert Invocation.parse(["doctor"], root, {"E2EE_OPS_OUTPUT": "nagios"}).output is (
        OutputFormat.NAGIOS
    )


@pytest.mark.parametrize(
    "args",
    [
        ["-o", "nagios", "redis", "check", "--bogus"],  # the subcommand's usage error
        ["--timeout", "soon", "-o", "nagios", "redis", "check"],  # the root's usage error
    ],
)
def test_nagios_usage_errors_print_a_plugin_line_and_exit_unknown(
    isolated_env: dict[str, str], args: list[str]
) -> None:
    result = cli(*args)
    assert result.exit_code == 3
    assert result.stdout.startswith("E2EE-OPS REDIS_CHECK UNKNOWN - usage: ")
    assert result.stdout.count("\n") == 1


def test_nagios_bad_config_prints_a_plugin_line(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    result = cli("--config", str(tmp_path / "missing.yaml"), "-o", "nagios", "doctor")
    assert result.exit_code == 3
    assert result.stdout.startswith("E2EE-OPS DOCTOR UNKNOWN - ")
    assert "missing.yaml" in result.stdout


def test_timed_out_run_prints_its_line_and_writes_junit_and_textfile(
    isolated_env: dict[str, str],
    tmp_path: Path,
    silent_api: str,
    junit_schema: xmlschema.XMLSchema,
) -> None:
    junit, prom = tmp_path / "out.xml", tmp_path / "out.prom"
    # In a process of its own: the timed-out check's thread still waits on the silent
    # API when the command ends, which in this process would outlive the test.
    result = subprocess.run(
        [sys.executable, "-m", "e2ee_ops", "--config", str(_config(tmp_path, silent_api))]
        + ["--timeout", "0.5", "-o", "nagios", "alerts", "check"]
        + ["--junit", str(junit), "--textfile", str(prom)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stdout.startswith("E2EE-OPS ALERTS_CHECK UNKNOWN - ")
    junit_schema.validate(str(junit))
    text = junit.read_text()
    assert 'errors="1"' in text and "<error " in text and 'type="UNKNOWN"' in text
    assert 'e2ee_ops_check_status{check="alerts check"} 3.0' in prom.read_text()


def test_junit_of_a_finished_report_is_schema_valid(
    isolated_env: dict[str, str], tmp_path: Path, junit_schema: xmlschema.XMLSchema
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("tokens: {admin: {env: NOT_SET_ANYWHERE}}\n")
    junit = tmp_path / "validate.xml"
    result = cli("--config", str(config), "--junit", str(junit), "config", "validate")
    assert result.exit_code == 1
    junit_schema.validate(str(junit))
    root = junit_schema.to_dict(str(junit))
    assert root["@failures"] == 1 and root["@hostname"] and root["@timestamp"]
    assert "T" in root["@timestamp"] and "+" not in root["@timestamp"]


def test_textfile_passes_promtool_and_is_replaced_atomically(
    isolated_env: dict[str, str], tmp_path: Path, promtool: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("tokens: {admin: {env: NOT_SET_ANYWHERE}}\n")
    (tmp_path / "textfiles").mkdir()
    prom = tmp_path / "textfiles" / "e2ee.prom"
    prom.write_text("stale\n")
    result = cli("--config", str(config), "--textfile", str(prom), "config", "validate")
    assert result.exit_code == 1
    text = prom.read_text()
    assert 'e2ee_ops_check_status{check="config validate"} 1.0' in text
    assert 'e2ee_ops_last_run_timestamp_seconds{check="config validate"}' in text
    assert [p.name for p in prom.parent.iterdir()] == ["e2ee.prom"]  # no temporary left
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
