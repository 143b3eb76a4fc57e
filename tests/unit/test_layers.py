"""The layer rules, read from the import graph (every import, also inside functions).

- No adapter imports `e2ee_ops.config`: adapters take plain values, and only
  `cli/targets.py` turns settings into adapters.
- A section CLI (one `e2ee-ops SECTION ...` command group) imports, of this package,
  only `cli.common`, `cli.acting`, `cli.targets`, the shared vocabularies `errors` and
  `status`, and the procedures of its own section: `procedures.SECTION` or
  `procedures.SECTION_*` (rollback has one per kind: flag, migration, git).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "e2ee_ops"

SECTIONS = ("abuse", "alerts", "config", "devices", "doctor", "incident", "postmortem")
SECTIONS += ("redis", "rollback")
SECTION_MAY_IMPORT = {
    "e2ee_ops.cli.common",
    "e2ee_ops.cli.acting",
    "e2ee_ops.cli.targets",
    "e2ee_ops.errors",
    "e2ee_ops.status",
}


def imports_of(path: Path) -> set[str]:
    """The modules of this package that `path` imports (`from e2ee_ops.procedures import
    devices` counts as `e2ee_ops.procedures.devices`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).is_file()
                found.add(candidate if is_module else node.module)
    return {name for name in found if name == "e2ee_ops" or name.startswith("e2ee_ops.")}


def test_the_import_reader_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from e2ee_ops.config import Settings\n"
        "    from e2ee_ops.procedures import devices\n",
        encoding="utf-8",
    )
    assert imports_of(module) == {"e2ee_ops.config", "e2ee_ops.procedures.devices"}


@pytest.mark.parametrize("path", sorted((PACKAGE / "adapters").glob("*.py")), ids=lambda p: p.name)
def test_no_adapter_imports_config(path: Path) -> None:
    assert "e2ee_ops.config" not in imports_of(path)


@pytest.mark.parametrize("section", SECTIONS)
def test_a_section_cli_imports_only_the_cli_helpers_and_its_procedures(section: str) -> None:
    imported = imports_of(PACKAGE / "cli" / f"{section}.py")
    procedures = {name for name in imported if name.startswith("e2ee_ops.procedures.")}
    others = imported - procedures - SECTION_MAY_IMPORT
    assert others == set(), f"cli/{section}.py imports {sorted(others)}"
    own = f"e2ee_ops.procedures.{section}"
    foreign = {p for p in procedures if p != own and not p.startswith(own + "_")}
    assert foreign == set(), f"cli/{section}.py imports {sorted(foreign)}"


def test_every_section_cli_is_covered() -> None:
    tooling = {"__init__", "main", "common", "acting", "targets", "docs", "demo"}
    tooling |= {"outcome", "lazy_groups", "lazy_params", "process_exit"}  # main: start, end
    tooling |= {"runbook", "sandbox"}  # local tooling: no service behind them
    modules = {p.stem for p in (PACKAGE / "cli").glob("*.py")}
    assert modules - tooling == set(SECTIONS)


def test_every_exception_of_the_toolkit_is_in_errors() -> None:
    exempt = {"errors.py", "embedded.py", "sandbox.py"}  # local tooling, not the error tree
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in exempt or "reference" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                (isinstance(b, ast.Name) and b.id.endswith(("Error", "Exception", "Failed")))
                or (isinstance(b, ast.Attribute) and b.attr.endswith(("Error", "Exception")))
                for b in node.bases
            ):
                found.append(f"{path.name}: {node.name}")
    assert found == []
