"""git, run as a program (argv lists, never a shell string), each call with a timeout.

Credentials are git's business (its helpers, ssh agent); git is told never to prompt
for them, so an unattended run fails instead of hanging. Failures become the e2ee-ops
error tree with git's own last line of complaint.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from e2ee_ops.adapters.process import run_process
from e2ee_ops.errors import (
    ConfigError,
    GitError,
    TimedOutError,
    UnreachableError,
    UsageError,
)


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str

    @property
    def short(self) -> str:
        return self.sha[:12]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return (fatal or lines or ["no output"])[0]


class GitRepo:
    """One local repository, named by any path inside its work tree."""

    def __init__(self, path: Path, *, timeout: float = 60.0, git: str = "git") -> None:
        self.path = path.expanduser()
        self.timeout = timeout
        self.git = git

    def run(self, *args: str, timeout: float | None = None) -> str:
        """Run `git ARGS` in the repository; stdout on success, GitError otherwise."""
        argv = [self.git, "-C", str(self.path), *args]
        limit = self.timeout if timeout is None else timeout
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_ASKPASS": ""}
        try:
            done = run_process(argv, timeout=limit, env=env)  # a timeout kills git and its ssh
        except FileNotFoundError:
            raise ConfigError(f"{self.git} is not installed or not on PATH") from None
        except subprocess.TimeoutExpired:
            raise TimedOutError(
                f"`git {args[0]}` in {self.path} did not finish within {limit:g} s",
                hint="check the network and the remote, or raise rollback.git_timeout_seconds",
            ) from None
        if done.returncode != 0:
            raise GitError(
                f"`git {' '.join(args[:2])}` failed in {self.path}: {_last_line(done.stderr)}",
                stderr=done.stderr,
            )
        return done.stdout

    # ----------------------------------------------------------------- reading

    def toplevel(self) -> Path:
        if not self.path.is_dir():
            raise UsageError(f"{self.path} is not a directory", hint="give --repo PATH")
        try:
            return Path(self.run("rev-parse", "--show-toplevel").strip())
        except GitError:
            raise UsageError(
                f"{self.path} is not inside a git work tree", hint="give --repo PATH"
            ) from None

    def resolve_commit(self, rev: str) -> str:
        """The full sha of `rev`, which must name a commit present in this repository."""
        if rev.startswith("-"):
            raise UsageError(f"{rev!r} is not a commit")
        try:
            return self.run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
        except GitError:
            raise UsageError(
                f"commit {rev!r} does not exist in {self.path}",
                hint="pick one from `git log --oneline -10` (fetch first if it is only remote)",
            ) from None

    def head(self) -> str:
        return self.run("rev-parse", "--verify", "HEAD").strip()

    def current_branch(self) -> str | None:
        """The checked-out branch, None when HEAD is detached."""
        name = self.run("branch", "--show-current").strip()
        return name or None

    def dirty_paths(self) -> list[str]:
        """Tracked changes and untracked (not ignored) files, as `git status` lists them."""
        return [line[3:] for line in self.run("status", "--porcelain").splitlines() if line]

    def commits_between(self, base: str, tip: str) -> list[Commit]:
        """Commits reachable from `tip` but not from `base`, newest first."""
        out = self.run("log", "--format=%H%x09%s", f"{base}..{tip}", "--")
        return [Commit(*line.split("\t", 1)) for line in out.splitlines() if "\t" in line]

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        try:
            self.run("merge-base", "--is-ancestor", ancestor, descendant)
        except GitError as exc:
            if exc.stderr.strip():
                raise
            return False
        return True

    def branch_sha(self, name: str) -> str | None:
        try:
            return self.run("rev-parse", "--verify", "--quiet", f"refs/heads/{name}").strip()
        except GitError:
            return None

    def check_branch_name(self, name: str) -> None:
        try:
            self.run("check-ref-format", "--branch", name)
        except GitError:
            raise UsageError(f"{name!r} is not a valid branch name") from None

    def remote_url(self, remote: str) -> str:
        try:
            return self.run("remote", "get-url", remote).strip()
        except GitError:
            raise UsageError(
                f"the repository {self.path} has no remote {remote!r}",
                hint="give --remote NAME (see `git remote -v`)",
            ) from None

    def remote_branch_sha(self, remote: str, branch: str) -> str | None:
        """Where `branch` points on `remote` now (asked over the network), None if absent."""
        try:
            out = self.run("ls-remote", "--heads", remote, f"refs/heads/{branch}")
        except GitError as exc:
            raise UnreachableError(
                f"cannot reach the git remote {remote!r}: {_last_line(exc.stderr)}",
                host=remote,
                hint="check the remote's URL, the network and your credentials",
            ) from None
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref == f"refs/heads/{branch}":
                return sha
        return None

    # ----------------------------------------------------------------- changing

    def create_and_switch(self, branch: str) -> None:
        """`git switch -c BRANCH`: the new branch starts at HEAD and becomes current."""
        self.run("switch", "--quiet", "-c", branch)

    def switch(self, branch: str) -> None:
        self.run("switch", "--quiet", branch)

    def reset_hard(self, sha: str) -> None:
        self.run("reset", "--quiet", "--hard", sha)

    def push_with_lease(self, remote: str, branch: str, sha: str, *, expect: str | None) -> None:
        """Point `remote`'s `branch` at `sha`, only if it still is at `expect` (None: absent).

        The lease names the value we saw, not a remote-tracking ref that may be stale, so
        a push someone made since the plan was shown is never overwritten.
        """
        self.run(
            "push",
            "--porcelain",
            f"--force-with-lease=refs/heads/{branch}:{expect or ''}",
            remote,
            f"{sha}:refs/heads/{branch}",
        )
