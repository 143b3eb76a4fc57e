"""The git adapter's errors: missing program, not a repository, timeouts, git's own words."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from e2ee_ops.adapters.git import GitRepo
from e2ee_ops.errors import ConfigError, TimedOutError, UnreachableError, UsageError


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    subprocess.run(["git", "init", "-q", "-b", "main", str(tmp_path)], check=True)
    for key, value in (("user.email", "ops@example.com"), ("user.name", "Ops")):
        subprocess.run(["git", "-C", str(tmp_path), "config", key, value], check=True)
    (tmp_path / "f").write_text("1\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-qm", "one"], check=True)
    return GitRepo(tmp_path, timeout=10)


def test_reads_a_repository(repo: GitRepo) -> None:
    head = repo.head()
    assert repo.resolve_commit("HEAD") == head and len(head) == 40
    assert repo.current_branch() == "main"
    assert repo.dirty_paths() == []
    (repo.path / "new.txt").write_text("x")
    assert repo.dirty_paths() == ["new.txt"]
    assert repo.branch_sha("main") == head and repo.branch_sha("nope") is None
    assert repo.commits_between(head, head) == []


def test_bad_names_are_usage_errors(repo: GitRepo) -> None:
    with pytest.raises(UsageError, match="commit 'nosuch' does not exist"):
        repo.resolve_commit("nosuch")
    with pytest.raises(UsageError, match="is not a commit"):
        repo.resolve_commit("--all")  # never taken for an option
    with pytest.raises(UsageError, match="not a valid branch name"):
        repo.check_branch_name("bad..name")
    with pytest.raises(UsageError, match="no remote 'origin'"):
        repo.remote_url("origin")


def test_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not inside a git work tree"):
        GitRepo(tmp_path).toplevel()
    with pytest.raises(UsageError, match="is not a directory"):
        GitRepo(tmp_path / "missing").toplevel()


def test_unreachable_remote_names_gits_reason(repo: GitRepo, tmp_path: Path) -> None:
    repo.run("remote", "add", "origin", str(tmp_path / "gone.git"))
    with pytest.raises(UnreachableError, match="cannot reach the git remote 'origin': fatal:"):
        repo.remote_branch_sha("origin", "main")


def test_missing_git_and_a_hung_git(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not installed"):
        GitRepo(tmp_path, git=str(tmp_path / "no-git")).head()
    hung = tmp_path / "slow-git"
    hung.write_text("#!/bin/sh\nsleep 30\n")
    hung.chmod(0o755)
    with pytest.raises(TimedOutError, match="did not finish within 0.2 s"):
        GitRepo(tmp_path, git=str(hung), timeout=0.2).head()
