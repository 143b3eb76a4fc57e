"""`rollback git` against real temporary repositories pushing to a bare remote."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import CliResult, cli
from tests.support.config import write_config


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


@dataclass
class Repos:
    work: Path
    remote: Path
    commits: list[str]  # oldest first

    def remote_branch(self, name: str) -> str | None:
        return _branch(self.remote, name)

    def local_branch(self, name: str) -> str | None:
        return _branch(self.work, name)


def _branch(repo: Path, name: str) -> str | None:
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}")
    except subprocess.CalledProcessError:
        return None


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    remote = tmp_path / "remote.git"
    work = tmp_path / "work"
    git(tmp_path, "init", "--quiet", "--bare", str(remote))
    git(tmp_path, "init", "--quiet", "-b", "main", str(work))
    git(work, "config", "user.email", "ops@example.com")
    git(work, "config", "user.name", "Ops")
    commits = []
    for n in range(1, 5):
        (work / "app.py").write_text(f"VERSION = {n}\n")
        git(work, "add", "app.py")
        git(work, "commit", "--quiet", "-m", f"release {n}")
        commits.append(git(work, "rev-parse", "HEAD"))
    git(work, "remote", "add", "origin", str(remote))
    git(work, "push", "--quiet", "origin", "main")
    return Repos(work, remote, commits)


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., CliResult]:
    config = write_config(tmp_path)

    def invoke(repos: Repos, *args: str) -> CliResult:
        return cli("--config", str(config), "rollback", "git", "--repo", str(repos.work), *args)

    return invoke


def test_plan_then_branch_reset_push_and_verify(repos: Repos, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = repos.commits[1]
    plan = run(repos, "--to", target[:10], "--branch", "rollback-e2ee-test", "-o", "json")
    assert plan.exit_code == 0, plan.stderr
    undone = [c["subject"] for c in plan.json["data"]["commits_undone"]]
    assert undone == ["release 4", "release 3"]
    assert "release 4" in plan.json["steps"][1]["description"]
    assert plan.json["data"]["remote_branch_before"] is None
    assert repos.local_branch("rollback-e2ee-test") is None  # the plan changed nothing
    assert git(repos.work, "branch", "--show-current") == "main"

    done = run(
        repos, "--to", target[:10], "--branch", "rollback-e2ee-test", "--execute", "--yes",
        "-o", "json",
    )  # fmt: skip
    assert done.exit_code == 0, done.stdout + done.stderr
    assert all(s["status"] == "OK" for s in done.json["steps"]), done.json["steps"]
    assert repos.remote_branch("rollback-e2ee-test") == target
    assert repos.local_branch("rollback-e2ee-test") == target
    assert git(repos.work, "branch", "--show-current") == "rollback-e2ee-test"
    assert (repos.work / "app.py").read_text() == "VERSION = 2\n"
    assert repos.remote_branch("main") == repos.commits[-1]  # production branch untouched

    entries = [json.loads(x) for x in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in entries] == ["plan", "outcome"]
    assert entries[1]["data"]["commit"] == target

    again = run(
        repos, "--to", target, "--branch", "rollback-e2ee-test", "--execute", "--yes", "-o", "json"
    )
    assert again.exit_code == 0, again.stdout + again.stderr
    assert "not pushed" in again.json["steps"][2]["outcome"]


def test_default_branch_name_carries_the_date(repos: Repos, run) -> None:  # type: ignore[no-untyped-def]
    result = run(repos, "--to", repos.commits[0], "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json["data"]["branch"].startswith("rollback-e2ee-20")
    assert len(result.json["data"]["branch"]) == len("rollback-e2ee-YYYYMMDD")


def test_dirty_work_tree_is_refused_before_anything(repos: Repos, run) -> None:  # type: ignore[no-untyped-def]
    (repos.work / "app.py").write_text("VERSION = 'hotfix in progress'\n")
    result = run(repos, "--to", repos.commits[0], "--branch", "rb", "--execute", "--yes")
    assert result.exit_code == 64
    assert "not clean" in result.stderr and "app.py" in result.stderr
    assert result.stderr.count("\n") == 1
    assert repos.local_branch("rb") is None and repos.remote_branch("rb") is None
    assert (repos.work / "app.py").read_text() == "VERSION = 'hotfix in progress'\n"


def test_unknown_commit_is_one_sentence(repos: Repos, run) -> None:  # type: ignore[no-untyped-def]
    result = run(repos, "--to", "0badc0ffee", "--branch", "rb", "--execute", "--yes")
    assert result.exit_code == 64
    assert "commit '0badc0ffee' does not exist" in result.stderr
    assert result.stderr.count("\n") == 1
    assert repos.local_branch("rb") is None


def test_unreachable_remote_leaves_nothing_half_done(repos: Repos, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    git(repos.work, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    result = run(repos, "--to", repos.commits[0], "--branch", "rb", "--execute", "--yes")
    assert result.exit_code == 3
    assert "cannot reach the git remote 'origin'" in result.stderr
    assert result.stderr.count("\n") == 1
    assert repos.local_branch("rb") is None
    assert git(repos.work, "branch", "--show-current") == "main"
    assert git(repos.work, "rev-parse", "HEAD") == repos.commits[-1]


def test_unknown_remote_and_existing_branch_elsewhere(repos: Repos, run) -> None:  # type: ignore[no-untyped-def]
    result = run(repos, "--to", repos.commits[0], "--remote", "upstream", "--branch", "rb")
    assert result.exit_code == 64 and "no remote 'upstream'" in result.stderr

    git(repos.work, "branch", "rb", repos.commits[2])
    result = run(repos, "--to", repos.commits[0], "--branch", "rb", "--execute", "--yes")
    assert result.exit_code == 64 and "already exists" in result.stderr
    assert repos.local_branch("rb") == repos.commits[2]
