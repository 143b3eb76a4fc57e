"""What a test needs from the machine: a skip on a developer's machine that lacks it, a
failure in CI (CI=true), where a missing tool would otherwise pass unseen."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(reason: str) -> None:
    """Skip with the reason, or fail with it in CI."""
    if in_ci():
        pytest.fail(f"{reason}; CI must provide it", pytrace=False)
    pytest.skip(reason)


def tool(name: str, install: str) -> str:
    """The path of a command-line tool, or skip (fail in CI) saying how to install it."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed ({install})")
    assert path is not None
    return path
