"""Runbook: Rollback/Hotfix, Code Rollback (Git).

The runbook's `git checkout -b rollback-e2ee-$(date +%Y%m%d)`, `git reset --hard COMMIT`
and `git push origin BRANCH --force`, made safe: the commit must exist and the work tree
be clean (a hard reset would throw uncommitted work away), the remote must answer before
anything changes, the push uses --force-with-lease against the value just seen on the
remote (never a blind --force), and afterwards `git ls-remote` must show the branch at
the commit. Running it again the same day finds the branch in place and only verifies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from e2ee_ops.errors import E2eeOpsError, UsageError
from e2ee_ops.procedures.rollback import listing
from e2ee_ops.status import Plan, Status, Step, StepRunner

if TYPE_CHECKING:
    from e2ee_ops.adapters.git import Commit, GitRepo


@dataclass
class GitTargets:
    repo: GitRepo
    remote: str
    branch: str
    progress: Callable[[str], None] = lambda _m: None


@dataclass(frozen=True)
class _Assessment:
    sha: str
    head: str
    current_branch: str | None
    undone: list[Commit]
    ancestor: bool  # the commit is an ancestor of HEAD: a real rollback
    local: str | None  # where the rollback branch points locally now
    remote_url: str
    remote: str | None  # where it points on the remote now


def _assess(t: GitTargets, to: str) -> _Assessment:
    """Every check the runbook's commands would trip over, before anything changes."""
    repo = t.repo
    repo.toplevel()
    repo.check_branch_name(t.branch)
    sha = repo.resolve_commit(to)
    local = repo.branch_sha(t.branch)
    if local is not None and local != sha:
        raise UsageError(
            f"branch {t.branch} already exists at {local[:12]}, not at {sha[:12]}",
            hint="give another name with --branch NAME",
        )
    dirty = repo.dirty_paths()
    if dirty:
        raise UsageError(
            f"the work tree of {repo.path} is not clean ({listing(dirty, limit=5)}); "
            "a hard reset would discard those changes",
            hint="commit or stash them first",
        )
    url = repo.remote_url(t.remote)
    remote = repo.remote_branch_sha(t.remote, t.branch)  # also: is the remote reachable?
    head = repo.head()
    return _Assessment(
        sha=sha,
        head=head,
        current_branch=repo.current_branch(),
        undone=repo.commits_between(sha, head),
        ancestor=repo.is_ancestor(sha, head),
        local=local,
        remote_url=url,
        remote=remote,
    )


def _plan(t: GitTargets, a: _Assessment) -> Plan:
    short = a.sha[:12]
    on = f"{a.current_branch} at {a.head[:12]}" if a.current_branch else f"detached {a.head[:12]}"
    undone = listing((f"{c.short} {c.subject}" for c in a.undone), limit=10)
    steps = [
        Step(
            f"switch to the existing branch {t.branch} (already at {short})"
            if a.local is not None
            else f"create branch {t.branch} from HEAD ({on}) and switch to it"
        ),
        Step(
            f"reset {t.branch} to {short} (git reset --hard), undoing "
            + (f"{len(a.undone)} commit(s): {undone}" if a.undone else "no commit")
            + ("" if a.ancestor else f"; note: {short} is not an ancestor of HEAD")
        ),
        Step(
            f"push {t.branch} to {t.remote} ({a.remote_url}) with --force-with-lease "
            f"(there now: {a.remote[:12] if a.remote else 'no such branch'})"
        ),
        Step(f"verify with git ls-remote that {t.remote}'s {t.branch} points at {short}"),
    ]
    return Plan(
        title=f"rollback git --to {short}",
        steps=steps,
        summary=None
        if a.remote != a.sha
        else f"{t.remote}'s {t.branch} already points at {short}; only verified",
        data={
            "commit": a.sha,
            "branch": t.branch,
            "remote": t.remote,
            "remote_url": a.remote_url,
            "head": a.head,
            "current_branch": a.current_branch,
            "commits_undone": [asdict(c) for c in a.undone],
            "remote_branch_before": a.remote,
        },
    )


def rollback_git(t: GitTargets, *, to: str, execute: bool) -> Plan:
    """The plan; with `execute`, branch, reset, push with lease and verify."""
    a = _assess(t, to)
    plan = _plan(t, a)
    if not execute:
        return plan
    run = StepRunner(plan, t.progress)
    repo, short = t.repo, a.sha[:12]
    try:
        if a.local is None:
            repo.create_and_switch(t.branch)
            run.done(f"created {t.branch} at {a.head[:12]} and switched to it")
        else:
            repo.switch(t.branch)
            run.done(f"switched to {t.branch}")
    except E2eeOpsError as exc:
        return run.fail(str(exc))
    try:
        repo.reset_hard(a.sha)
    except E2eeOpsError as exc:
        return run.fail(str(exc))
    run.done(f"{t.branch} is at {short}, {len(a.undone)} commit(s) undone")
    if a.remote == a.sha:
        run.skip(f"not pushed: {t.remote}'s {t.branch} is at {short} already")
    else:
        try:
            repo.push_with_lease(t.remote, t.branch, a.sha, expect=a.remote)
        except E2eeOpsError as exc:
            return run.fail(f"push refused or failed ({exc}); {t.branch} exists locally only")
        run.done(f"pushed {t.branch} to {t.remote}")
    try:
        now = repo.remote_branch_sha(t.remote, t.branch)
    except E2eeOpsError as exc:
        return run.fail(f"cannot verify: {exc}")
    if now != a.sha:
        return run.fail(
            f"{t.remote}'s {t.branch} points at {now[:12] if now else 'nothing'}, not {short}"
        )
    run.done(f"{t.remote}'s {t.branch} points at {short}", Status.OK)
    return plan
