"""The repository speaks to any reader on any machine: no paths of one machine in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", "build", "dist", "node_modules"}
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".txt", ".sh", ""}
# A home or scratch directory of one machine (home, Users, root, work, tmp, mnt).
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:home|Users|root|work|tmp|mnt)/[\w.-]")


def repository_files() -> list[Path]:
    files = []
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts)
        if parts & SKIP_DIRS or any(p.endswith(("_cache", ".egg-info")) for p in parts):
            continue
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            files.append(path)
    return files


def test_the_machine_path_pattern_catches_what_it_is_for() -> None:
    assert MACHINE_PATH.search("see " + "/work" + "/main/README.md")
    assert MACHINE_PATH.search("cd " + "/home" + "/alice/src")
    assert not MACHINE_PATH.search("EnvironmentFile=/etc/e2ee-dm/api.env")
    assert not MACHINE_PATH.search("~/.config/e2ee-ops/config.yaml")


def test_no_absolute_machine_paths_anywhere_in_the_repository() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in repository_files()
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if MACHINE_PATH.search(line)
    ]
    assert found == [], "\n".join(found)
