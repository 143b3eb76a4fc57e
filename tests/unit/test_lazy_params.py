"""Plain option values are coerced without pydantic to exactly what typer's own
coercion returns; everything else is left to typer, whose messages stay."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer._coercion import build_runtime_param
from typer.main import get_command

from e2ee_ops.cli.lazy_params import _STAND_IN, UNHANDLED, plain_value


class Colour(StrEnum):
    RED = "red"
    GREEN = "green"


app = typer.Typer()


@app.command()
def probe(
    count: Annotated[int, typer.Option(min=1, max=100)] = 5,
    anything: Annotated[int | None, typer.Option()] = None,
    seconds: Annotated[float, typer.Option(min=0.001, max=60.0)] = 30.0,
    colour: Annotated[Colour | None, typer.Option(case_sensitive=False)] = None,
    name: Annotated[str | None, typer.Option()] = None,
    config: Annotated[Path | None, typer.Option(dir_okay=False)] = None,
    clamped: Annotated[int, typer.Option(min=0, max=9, clamp=True)] = 0,
) -> None:
    """Options of each kind the command line has."""


def _param_and_context(name: str) -> tuple[Any, Any]:
    command = get_command(app)  # fresh: a coercion may keep what it built on its parameter
    param = next(p for p in command.params if p.name == name)
    return param, command.make_context("probe", [])


def _typer(name: str, value: Any) -> Any:
    param, ctx = _param_and_context(name)
    return build_runtime_param(param.type_descriptor).coerce(value, param=param, ctx=ctx)


def _plain(name: str, value: Any) -> Any:
    param, ctx = _param_and_context(name)
    return plain_value(value, param, ctx)


def _ours(name: str, value: Any) -> Any:
    """What the command line does: the plain value, else typer's coercion."""
    param, ctx = _param_and_context(name)
    return _STAND_IN.coerce(value, param=param, ctx=ctx)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("count", 5),
        ("count", "7"),
        ("count", "007"),
        ("count", "+3"),
        ("count", "100"),
        ("anything", "-12"),
        ("anything", str(2**63 - 1)),
        ("seconds", 30.0),
        ("seconds", 2),
        ("seconds", "0.5"),
        ("seconds", "60"),
        ("colour", "RED"),
        ("colour", "green"),
        ("colour", Colour.RED),
        ("name", "x"),
        ("name", ""),
        ("config", "some/where.yaml"),
    ],
)
def test_a_plain_value_comes_out_as_typer_makes_it(name: str, value: Any) -> None:
    plain = _plain(name, value)
    assert plain is not UNHANDLED
    expected = _typer(name, value)
    assert (plain, type(plain)) == (expected, type(expected))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("count", "0"),  # below the range
        ("count", "101"),  # above it
        ("count", "1_0"),  # pydantic reads it; int() would too, but not the regex
        ("count", " 5"),
        ("count", "5.0"),
        ("count", "lots"),
        ("count", True),
        ("seconds", "1e3"),
        ("seconds", "nan"),
        ("seconds", float("nan")),
        ("seconds", "0"),
        ("colour", "blue"),
        ("clamped", "12"),
    ],
)
def test_anything_else_is_left_to_typer(name: str, value: Any) -> None:
    assert _plain(name, value) is UNHANDLED
    try:
        expected = _typer(name, value)
    except typer.BadParameter as refused:
        with pytest.raises(typer.BadParameter) as caught:
            _ours(name, value)
        assert caught.value.format_message() == refused.format_message()
    else:
        assert _ours(name, value) == expected


def test_a_bad_value_still_gets_typers_message(isolated_env: dict[str, str]) -> None:
    from tests.support.cli import cli

    result = cli("devices", "stuck", "--limit", "0")
    assert result.exit_code == 64
    assert "Invalid value for '--limit': Input should be greater than or equal to 1" in (
        result.stderr
    )


@pytest.mark.parametrize("where", ["", ".", "./"])
def test_a_directory_given_as_a_file_is_refused_as_typer_refuses_it(where: str) -> None:
    with pytest.raises(typer.BadParameter) as typers:
        _typer("config", where)
    with pytest.raises(typer.BadParameter) as plain:
        _ours("config", where)
    assert plain.value.format_message() == typers.value.format_message()
    assert plain.value.format_message() == (
        f"Invalid value for '--config': file {where!r} is a directory."
    )
