"""Settings are validated without pydantic, with pydantic's values and messages: each
kind of field the settings use is checked here beside a pydantic TypeAdapter of the
same annotation and bounds, so an operator's error reads as it always did."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from e2ee_ops.config import SecretRef, Settings, Thresholds
from e2ee_ops.errors import ConfigError, InvalidSettings
from e2ee_ops.schema import Section, load_section, setting

INPUTS: list[Any] = [
    *(True, False, 0, 1, 2, -3, 3.0, 3.5, float("inf"), float("nan")),
    *("5", " 5 ", "+5", "-0", "5.0", "5.00", "5.5", "5.", ".5", "1_000", "1__0", "_1"),
    *("1e3", "0x1", "lots", "", "yes", "On", "off", "T", "infinity", "nan"),
    *(b"7", b"x", None, [1], ["a", "b"], ("a",), {"a": 1}),
]

LEAVES: list[tuple[Any, dict[str, Any]]] = [
    (int, {}),
    (float, {}),
    (bool, {}),
    (str, {}),
    (Path, {}),
    (list[str], {}),
    (Literal["http", "https"], {}),
    (Literal["systemctl", "docker", "kubernetes", "command"], {}),
    (int | None, {}),
    (float, {"gt": 0}),
    (float, {"ge": 0, "le": 1}),
    (int, {"gt": 0, "lt": 65536}),
    (int, {"ge": 1}),
    (str, {"min_length": 1}),
    (str, {"pattern": r"^[0-9]+[smh]$"}),
]


def _ours(annotation: Any, rules: dict[str, Any], value: Any) -> tuple[str, Any]:
    probe = type("Probe", (Section,), {"__annotations__": {"x": annotation}, "x": setting(**rules)})
    try:
        return "ok", load_section(probe, {"x": value}).x
    except InvalidSettings as exc:
        return "error", [(loc[1:], message) for loc, message in exc.problems]


def _pydantic(annotation: Any, rules: dict[str, Any], value: Any) -> tuple[str, Any]:
    adapter = TypeAdapter(Annotated[annotation, Field(**rules)] if rules else annotation)
    try:
        return "ok", adapter.validate_python(value)
    except ValidationError as exc:
        return "error", [(tuple(e["loc"]), e["msg"]) for e in exc.errors()]


@pytest.mark.parametrize(("annotation", "rules"), LEAVES, ids=lambda x: str(x))
def test_every_kind_of_field_reads_and_refuses_as_pydantic_does(
    annotation: Any, rules: dict[str, Any]
) -> None:
    for value in INPUTS:
        ours, theirs = _ours(annotation, rules, value), _pydantic(annotation, rules, value)
        if ours[0] == theirs[0] == "ok" and ours[1] != ours[1]:  # NaN
            assert theirs[1] != theirs[1], value
            continue
        assert (ours, type(ours[1])) == (theirs, type(theirs[1])), value


@pytest.mark.parametrize(
    ("tree", "problems"),
    [
        ({"thresholds": {"otpk_critical": "lots", "colour": 1}}, [
            (("thresholds", "otpk_critical"),
             "Input should be a valid integer, unable to parse string as an integer"),
            (("thresholds", "colour"), "unknown key"),
            (("journal",), "Field required"),
        ]),
        ({"journal": {}}, [(("journal", "path"), "Field required")]),
        ({"journal": {"path": "j"}, "api": 5}, [
            (("api",), "Input should be a valid dictionary or instance of ApiSettings"),
        ]),
        ({"journal": {"path": "j"}, "tokens": {"admin": "abc123"}}, [
            (("tokens", "admin"),
             "a literal secret is not allowed here; give {env: VARIABLE} or {file: PATH}"),
        ]),
        ({"journal": {"path": "j"}, "notifiers": {"smtp": {"host": "h"}}}, [
            (("notifiers", "smtp", "from"), "Field required"),
        ]),
        ({"journal": {"path": "j"}, "api": {"discover": {"kubernetes": {"service": "s",
          "port": 80}}, "base_urls": ["http://a"]}}, [
            (("api",), "give either base_urls or discover, not both"),
        ]),
        ({"journal": {"path": "j"}, "thresholds": {"otpk_warning": 3}}, [
            (("thresholds",), "otpk_warning (3) must not be below otpk_critical (5)"),
        ]),
    ],
)  # fmt: skip
def test_every_problem_is_named_by_its_key(
    tree: dict[str, Any], problems: list[tuple[tuple[str, ...], str]]
) -> None:
    with pytest.raises(InvalidSettings) as caught:
        load_section(Settings, tree)
    assert caught.value.problems == problems


def test_values_are_typed_as_declared_and_aliases_read() -> None:
    settings = load_section(
        Settings,
        {
            "journal": {"path": "j.jsonl"},
            "thresholds": {"recover_deadline_seconds": 8, "otpk_critical": "3"},
            "notifiers": {"smtp": {"host": "h", "from": "ops@example.com"}},
            "api": {"base_urls": ["http://a:8000/"]},
        },
    )
    assert settings.thresholds.recover_deadline_seconds == 8.0
    assert type(settings.thresholds.recover_deadline_seconds) is float
    assert settings.thresholds.otpk_critical == 3
    assert settings.notifiers.smtp is not None
    assert settings.notifiers.smtp.from_address == "ops@example.com"
    assert settings.api.base_urls == ["http://a:8000"]  # the after-check normalises
    assert settings.journal.path == Path("j.jsonl")


def test_a_section_built_in_code_is_validated_too() -> None:
    assert type(Thresholds(recover_deadline_seconds=8).recover_deadline_seconds) is float
    with pytest.raises(ConfigError, match=r"otpk_critical: Input should be greater than or "):
        Thresholds(otpk_critical=-1)
    with pytest.raises(ConfigError, match=r"give exactly one of \{env: VARIABLE\}"):
        SecretRef()


def test_a_command_that_loads_settings_imports_no_pydantic(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("thresholds: {otpk_critical: 4}\n", encoding="utf-8")
    probe = (
        "import sys\n"
        "from e2ee_ops.config import load_config\n"
        "from pathlib import Path\n"
        f"load_config(config_file=Path({str(config)!r}), environ={{'HOME': {str(tmp_path)!r}}})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_a_setting_of_a_kind_the_schema_cannot_read_says_so() -> None:
    probe = type("Probe", (Section,), {"__annotations__": {"x": complex}, "x": setting()})
    with pytest.raises(TypeError, match=r"settings cannot hold <class 'complex'>"):
        probe(x=1)
