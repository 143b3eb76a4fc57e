"""`rollback_git`'s decisions, step by step, with a repository that records what it is asked:
the checks before anything changes, the exact plan, and each outcome while acting."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from e2ee_ops.adapters.git import Commit
from e2ee_ops.errors import ActionFailed, UsageError
from e2ee_ops.procedures.rollback_git import GitTargets, rollback_git
from e2ee_ops.status import NOT_RUN, Status

SHA = "a" * 40
HEAD = "h" * 40
OTHER = "o" * 40
URL = "git@example.com:ops/app.git"


@dataclass
class FakeRepo:
    """A repository whose answers are set by the test and whose calls are recorded."""

    path: Path = Path("work")
    branch_at: str | None = None  # where the rollback branch is locally
    remote_at: list[str | None] = field(default_factory=lambda: [None])  # successive answers
    dirty: list[str] = field(default_factory=list)
    undone: list[Commit] = field(default_factory=lambda: [Commit("c" * 40, "release 4")])
    ancestor: bool = True
    on_branch: str | None = "main"
    fail: dict[str, Exception] = field(default_factory=dict)  # method name -> what it raises
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, *args))
        if name in self.fail:
            raise self.fail[name]

    def toplevel(self) -> Path:
        self._call("toplevel")
        return self.path

    def check_branch_name(self, name: str) -> None:
        self._call("check_branch_name", name)

    def resolve_commit(self, rev: str) -> str:
        self._call("resolve_commit", rev)
        return SHA

    def branch_sha(self, name: str) -> str | None:
        self._call("branch_sha", name)
        return self.branch_at

    def dirty_paths(self) -> list[str]:
        self._call("dirty_paths")
        return self.dirty

    def remote_url(self, remote: str) -> str:
        self._call("remote_url", remote)
        return URL

    def remote_branch_sha(self, remote: str, branch: str) -> str | None:
        self._call("remote_branch_sha", remote, branch)
        return self.remote_at.pop(0) if len(self.remote_at) > 1 else self.remote_at[0]

    def head(self) -> str:
        self._call("head")
        return HEAD

    def current_branch(self) -> str | None:
        self._call("current_branch")
        return self.on_branch

    def commits_between(self, base: str, tip: str) -> list[Commit]:
        self._call("commits_between", base, tip)
        return self.undone

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        self._call("is_ancestor", ancestor, descendant)
        return self.ancestor

    def create_and_switch(self, branch: str) -> None:
        self._call("create_and_switch", branch)

    def switch(self, branch: str) -> None:
        self._call("switch", branch)

    def reset_hard(self, sha: str) -> None:
        self._call("reset_hard", sha)

    def push_with_lease(self, remote: str, branch: str, sha: str, *, expect: str | None) -> None:
        self._call("push_with_lease", remote, branch, sha, expect)


def targets(repo: FakeRepo, progress: list[str] | None = None) -> GitTargets:
    t = GitTargets(repo=repo, remote="origin", branch="rb-1")  # type: ignore[arg-type]
    if progress is not None:
        t.progress = progress.append
    return t


def outcomes(plan: Any) -> list[tuple[str | None, str | None]]:
    return [(s.status.name if s.status else None, s.outcome) for s in plan.steps]


# ---- before anything changes --------------------------------------------------------------


def test_the_checks_ask_the_repository_in_order_with_the_given_names() -> None:
    repo = FakeRepo()
    rollback_git(targets(repo), to="v1.2", execute=False)
    assert repo.calls == [
        ("toplevel",),
        ("check_branch_name", "rb-1"),
        ("resolve_commit", "v1.2"),
        ("branch_sha", "rb-1"),
        ("dirty_paths",),
        ("remote_url", "origin"),
        ("remote_branch_sha", "origin", "rb-1"),
        ("head",),
        ("current_branch",),
        ("commits_between", SHA, HEAD),
        ("is_ancestor", SHA, HEAD),
    ]


def test_a_branch_of_that_name_elsewhere_is_refused_with_both_commits() -> None:
    repo = FakeRepo(branch_at=OTHER)
    with pytest.raises(UsageError) as caught:
        rollback_git(targets(repo), to="v1", execute=True)
    assert caught.value.message == (
        f"branch rb-1 already exists at {OTHER[:12]}, not at {SHA[:12]}"
    )
    assert caught.value.hint == "give another name with --branch NAME"
    assert ("dirty_paths",) not in repo.calls


def test_a_dirty_work_tree_is_refused_listing_five_paths() -> None:
    repo = FakeRepo(dirty=[f"f{n}.py" for n in range(7)])
    with pytest.raises(UsageError) as caught:
        rollback_git(targets(repo), to="v1", execute=True)
    assert caught.value.message == (
        "the work tree of work is not clean (f0.py, f1.py, f2.py, f3.py, f4.py and 2 more); "
        "a hard reset would discard those changes"
    )
    assert caught.value.hint == "commit or stash them first"
    assert ("remote_url", "origin") not in repo.calls


# ---- the plan ------------------------------------------------------------------------------


def test_the_plan_of_a_new_branch_names_every_step_and_changes_nothing() -> None:
    repo = FakeRepo(
        undone=[Commit("d" * 40, "release 4"), Commit("c" * 40, "release 3")],
        remote_at=[OTHER],
    )
    plan = rollback_git(targets(repo), to="v1", execute=False)
    assert plan.title == f"rollback git --to {SHA[:12]}"
    assert [s.description for s in plan.steps] == [
        f"create branch rb-1 from HEAD (main at {HEAD[:12]}) and switch to it",
        f"reset rb-1 to {SHA[:12]} (git reset --hard), undoing 2 commit(s): "
        f"{'d' * 12} release 4, {'c' * 12} release 3",
        f"push rb-1 to origin ({URL}) with --force-with-lease (there now: {OTHER[:12]})",
        f"verify with git ls-remote that origin's rb-1 points at {SHA[:12]}",
    ]
    assert plan.summary is None
    assert plan.executed is False
    assert all(s.status is None and s.outcome is None for s in plan.steps)
    assert plan.data == {
        "commit": SHA,
        "branch": "rb-1",
        "remote": "origin",
        "remote_url": URL,
        "head": HEAD,
        "current_branch": "main",
        "commits_undone": [
            {"sha": "d" * 40, "subject": "release 4"},
            {"sha": "c" * 40, "subject": "release 3"},
        ],
        "remote_branch_before": OTHER,
    }
    assert not any(
        c[0] in ("create_and_switch", "reset_hard", "push_with_lease") for c in repo.calls
    )


def test_the_plan_says_detached_no_commit_not_an_ancestor_and_no_remote_branch() -> None:
    repo = FakeRepo(on_branch=None, undone=[], ancestor=False)
    steps = [s.description for s in rollback_git(targets(repo), to="v1", execute=False).steps]
    assert steps[0] == f"create branch rb-1 from HEAD (detached {HEAD[:12]}) and switch to it"
    assert steps[1] == (
        f"reset rb-1 to {SHA[:12]} (git reset --hard), undoing no commit; "
        f"note: {SHA[:12]} is not an ancestor of HEAD"
    )
    assert steps[2] == (
        f"push rb-1 to origin ({URL}) with --force-with-lease (there now: no such branch)"
    )


def test_the_plan_lists_ten_undone_commits_and_counts_the_rest() -> None:
    undone = [Commit(f"{n:x}" * 40, f"release {n}") for n in range(12)]
    repo = FakeRepo(undone=undone)
    step = rollback_git(targets(repo), to="v1", execute=False).steps[1].description
    shown = ", ".join(f"{c.short} {c.subject}" for c in undone[:10])
    assert step == (
        f"reset rb-1 to {SHA[:12]} (git reset --hard), undoing 12 commit(s): {shown} and 2 more"
    )


def test_an_existing_branch_already_pushed_is_only_switched_to_and_verified() -> None:
    repo = FakeRepo(branch_at=SHA, remote_at=[SHA])
    plan = rollback_git(targets(repo), to="v1", execute=False)
    assert (
        plan.steps[0].description == f"switch to the existing branch rb-1 (already at {SHA[:12]})"
    )
    assert plan.summary == f"origin's rb-1 already points at {SHA[:12]}; only verified"

    progress: list[str] = []
    done = rollback_git(targets(repo, progress), to="v1", execute=True)
    assert outcomes(done) == [
        ("OK", "switched to rb-1"),
        ("OK", f"rb-1 is at {SHA[:12]}, 1 commit(s) undone"),
        ("OK", f"not pushed: origin's rb-1 is at {SHA[:12]} already"),
        ("OK", f"origin's rb-1 points at {SHA[:12]}"),
    ]
    assert [s.executed for s in done.steps] == [True, True, False, True]
    assert ("switch", "rb-1") in repo.calls
    assert not any(c[0] in ("create_and_switch", "push_with_lease") for c in repo.calls)
    assert progress == [
        "OK: switched to rb-1",
        f"OK: rb-1 is at {SHA[:12]}, 1 commit(s) undone",
        f"OK: origin's rb-1 points at {SHA[:12]}",
    ]


# ---- acting --------------------------------------------------------------------------------


def test_execute_creates_resets_pushes_with_the_lease_seen_and_verifies() -> None:
    repo = FakeRepo(remote_at=[OTHER, SHA])
    plan = rollback_git(targets(repo), to="v1", execute=True)
    assert plan.executed is True
    assert plan.status is Status.OK
    assert outcomes(plan) == [
        ("OK", f"created rb-1 at {HEAD[:12]} and switched to it"),
        ("OK", f"rb-1 is at {SHA[:12]}, 1 commit(s) undone"),
        ("OK", "pushed rb-1 to origin"),
        ("OK", f"origin's rb-1 points at {SHA[:12]}"),
    ]
    acts = [c for c in repo.calls if c[0] not in ("remote_branch_sha",)][-3:]
    assert acts == [
        ("create_and_switch", "rb-1"),
        ("reset_hard", SHA),
        ("push_with_lease", "origin", "rb-1", SHA, OTHER),
    ]
    assert repo.calls[-1] == ("remote_branch_sha", "origin", "rb-1")


@pytest.mark.parametrize(
    ("failing", "branch_at", "failed_at"),
    [("create_and_switch", None, 0), ("switch", SHA, 0), ("reset_hard", None, 1)],
)
def test_a_failing_branch_or_reset_stops_with_gits_sentence(
    failing: str, branch_at: str | None, failed_at: int
) -> None:
    repo = FakeRepo(branch_at=branch_at, fail={failing: ActionFailed("git said no")})
    plan = rollback_git(targets(repo), to="v1", execute=True)
    assert plan.status is Status.CRITICAL
    assert plan.steps[failed_at].outcome == "git said no"
    assert plan.steps[failed_at].status is Status.CRITICAL
    assert [s.outcome for s in plan.steps[failed_at + 1 :]] == [NOT_RUN] * (3 - failed_at)
    assert not any(c[0] == "push_with_lease" for c in repo.calls)


def test_a_refused_push_says_the_branch_is_local_only() -> None:
    repo = FakeRepo(fail={"push_with_lease": ActionFailed("stale info")})
    plan = rollback_git(targets(repo), to="v1", execute=True)
    assert outcomes(plan)[2:] == [
        ("CRITICAL", "push refused or failed (stale info); rb-1 exists locally only"),
        (None, NOT_RUN),
    ]


def test_verification_that_cannot_reach_the_remote_fails() -> None:
    repo = FakeRepo(remote_at=[None])
    checks = 0

    def remote_branch_sha(remote: str, branch: str) -> str | None:
        nonlocal checks
        checks += 1
        if checks > 1:
            raise ActionFailed("remote gone")
        return None

    repo.remote_branch_sha = remote_branch_sha  # type: ignore[method-assign]
    plan = rollback_git(targets(repo), to="v1", execute=True)
    assert outcomes(plan)[3] == ("CRITICAL", "cannot verify: remote gone")


@pytest.mark.parametrize(
    ("after", "said"),
    [(OTHER, OTHER[:12]), (None, "nothing")],
)
def test_a_remote_branch_elsewhere_after_the_push_fails(after: str | None, said: str) -> None:
    repo = FakeRepo(remote_at=[None, after])
    plan = rollback_git(targets(repo), to="v1", execute=True)
    assert plan.status is Status.CRITICAL
    assert outcomes(plan)[3] == ("CRITICAL", f"origin's rb-1 points at {said}, not {SHA[:12]}")
