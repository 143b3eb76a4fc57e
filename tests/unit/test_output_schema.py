"""The README's JSON shapes, as a JSON Schema (tests/data/output.schema.json), hold for the
README's own example and for what the renderer and real commands print."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from e2ee_ops.render import to_json_data
from e2ee_ops.status import Finding, Plan, Report, Status, Step
from tests.support.cli import cli

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "tests" / "data" / "output.schema.json").read_text())


def validate(document: Any) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(document)


def test_the_readme_example_fits_the_schema() -> None:
    readme = (ROOT / "README.md").read_text()
    [example] = re.findall(r"```json\n(.*?)\n```", readme, flags=re.S)
    validate(json.loads(example.replace('"…"', '""')))


def test_every_kind_the_renderer_prints_fits_the_schema() -> None:
    report = Report(
        title="t",
        findings=[
            Finding("a", Status.WARNING, 7, "seven", threshold_warn=10, unit="s"),
            Finding("b", Status.OK, None, "none"),
        ],
    )
    plan = Plan(title="p", steps=[Step("one"), Step("two", executed=True, outcome="done")])
    for document in (to_json_data(report), to_json_data(plan), to_json_data([{"a": 1}])):
        validate(document)


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "report", "title": "t", "status": "FINE", "exit_code": 0, "summary": "",
         "findings": [], "data": {}},
        {"kind": "report", "title": "t", "status": "OK", "exit_code": 0, "summary": "",
         "findings": [{"name": "a", "status": "OK"}], "data": {}},
        {"kind": "plan", "title": "p", "status": "OK", "exit_code": 0, "summary": "",
         "executed": "no", "steps": [], "data": {}},
        {"kind": "list", "title": "", "status": "OK", "exit_code": 2, "items": []},
        {"kind": "table", "title": "", "status": "OK", "exit_code": 0, "items": []},
    ],
    ids=["unknown-status", "finding-missing-keys", "executed-not-bool", "list-not-ok", "kind"],
)  # fmt: skip
def test_the_schema_refuses_other_shapes(bad: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)


def test_real_commands_print_the_schema_shapes(
    isolated_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER_TOKEN_FOR_TESTS", "user-token")
    config = tmp_path / "c.yaml"
    config.write_text(
        "api: {base_urls: ['http://127.0.0.1:9']}\n"
        "tokens: {user: {env: USER_TOKEN_FOR_TESTS}}\n"
        "services: {api: {restart: {method: command, command: ['true']}}}\n"
    )
    listed = cli("--config", str(config), "--output", "json", "config", "show")
    assert listed.exit_code == 0 and listed.json["kind"] == "list"
    validate(listed.json)
    report = cli("--config", str(config), "--output", "json", "config", "validate")
    assert report.json["kind"] == "report" and report.exit_code == report.json["exit_code"]
    validate(report.json)
    env_file = tmp_path / "api.env"
    env_file.write_text("E2EE_DM_ENABLED=true\n")
    plan = cli(
        "--config", str(config), "--output", "json",
        "rollback", "flag", "--disable", "--env-file", str(env_file),
    )  # fmt: skip
    assert plan.json["kind"] == "plan" and plan.json["executed"] is False, plan.stderr
    validate(plan.json)
