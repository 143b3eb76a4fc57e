"""Bearer-token authentication and admin scope, over real HTTP against a real database."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import httpx
import psycopg
import pytest

from e2ee_ops.dburl import libpq_url

UNAUTHORIZED = {"detail": "missing or invalid bearer token"}
ADMIN_REQUIRED = {"detail": "admin scope required"}

ADMIN_CALLS = [
    ("GET", "/dm/metrics", None),
    ("GET", "/live-chat/metrics", None),
    ("POST", "/admin/users", {"username": "mallory"}),
    ("GET", "/admin/users/{uid}", None),
    ("POST", "/admin/users/{uid}/tokens", {"scope": "admin"}),
    ("POST", "/admin/users/{uid}/block", {"reason": "x"}),
    ("DELETE", "/admin/users/{uid}/block", None),
]


def _call(base: str, method: str, path: str, body, token: str | None) -> httpx.Response:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.request(method, base + path, json=body, headers=headers, timeout=10)


@pytest.fixture
def user(users):  # type: ignore[no-untyped-def]
    uid, client = users.new("alice")
    token = client.http.headers["Authorization"].removeprefix("Bearer ")
    return uid, token


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_endpoints_refuse_anonymous_and_user_tokens(
    reference_server, user, method, path, body
) -> None:  # type: ignore[no-untyped-def]
    uid, token = user
    path = path.format(uid=uid)
    missing = _call(reference_server.url, method, path, body, None)
    assert missing.status_code == 401
    assert missing.json() == UNAUTHORIZED
    unknown = _call(reference_server.url, method, path, body, "e2ee_not-a-real-token")
    assert unknown.status_code == 401
    assert unknown.json() == UNAUTHORIZED
    as_user = _call(reference_server.url, method, path, body, token)
    assert as_user.status_code == 403
    assert as_user.json() == ADMIN_REQUIRED


def test_refused_calls_change_nothing(reference_server, user, database_url) -> None:  # type: ignore[no-untyped-def]
    uid, token = user
    with psycopg.connect(libpq_url(database_url)) as conn:
        before = conn.execute("SELECT count(*) FROM users").fetchone()
        tokens_before = conn.execute("SELECT count(*) FROM api_tokens").fetchone()
    for t in (None, token):
        _call(reference_server.url, "POST", "/admin/users", {"username": "mallory"}, t)
        _call(reference_server.url, "POST", f"/admin/users/{uid}/tokens", {"scope": "admin"}, t)
        _call(reference_server.url, "POST", f"/admin/users/{uid}/block", {"reason": "x"}, t)
    with psycopg.connect(libpq_url(database_url)) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == before
        assert conn.execute("SELECT count(*) FROM api_tokens").fetchone() == tokens_before
        assert conn.execute(
            "SELECT blocked_at FROM users WHERE account_id = %s", (uid,)
        ).fetchone() == (None,)


def test_user_endpoints_need_a_token(reference_server, clean_db) -> None:  # type: ignore[no-untyped-def]
    for method, path in [
        ("GET", "/e2ee/devices"),
        ("GET", "/dm/conversations"),
        ("POST", "/dm/blocks"),
    ]:
        r = _call(reference_server.url, method, path, {"user_id": 1}, None)
        assert r.status_code == 401, path
        assert r.json() == UNAUTHORIZED
    wrong_scheme = httpx.get(
        reference_server.url + "/e2ee/devices", headers={"Authorization": "Basic YTpi"}
    )
    assert wrong_scheme.status_code == 401


def test_health_and_prometheus_need_no_token(reference_server) -> None:  # type: ignore[no-untyped-def]
    assert httpx.get(reference_server.url + "/health").status_code == 200
    assert httpx.get(reference_server.url + "/metrics").status_code == 200


def test_admin_token_works(reference_server, admin, admin_token) -> None:  # type: ignore[no-untyped-def]
    uid = admin.create_user("bob", email="bob@example.org")
    assert admin.request("GET", f"/admin/users/{uid}") == {
        "account_id": uid,
        "username": "bob",
        "email": "bob@example.org",
        "blocked": False,
        "block_reason": None,
        "blocked_at": None,
    }
    r = _call(reference_server.url, "GET", "/dm/metrics", None, admin_token)
    assert r.status_code == 200


def test_tokens_are_stored_hashed(admin, database_url) -> None:  # type: ignore[no-untyped-def]
    uid = admin.create_user("carol")
    issued = admin.request("POST", f"/admin/users/{uid}/tokens", json={"scope": "user"})
    token = issued["token"]
    assert issued["scope"] == "user"
    with psycopg.connect(libpq_url(database_url)) as conn:
        rows = conn.execute(
            "SELECT token_id, token_hash, scope FROM api_tokens WHERE user_id = %s", (uid,)
        ).fetchall()
        everything = conn.execute("SELECT * FROM api_tokens").fetchall()
    assert len(rows) == 1
    token_id, token_hash, scope = rows[0]
    assert token_id == issued["token_id"] and scope == "user"
    assert token_hash != token
    assert token_hash == hashlib.sha256(token.encode()).hexdigest()
    # The plain token is nowhere in the table, in any column of any row.
    assert token not in repr(everything)


def test_issued_user_token_authenticates_as_that_user(reference_server, admin) -> None:  # type: ignore[no-untyped-def]
    uid = admin.create_user("dave")
    other = admin.create_user("erin")
    token = admin.issue_token(uid)
    r = _call(reference_server.url, "POST", "/dm/conversations", {"peer_user_id": other}, token)
    assert r.status_code == 201
    assert sorted(r.json()["members"]) == sorted([uid, other])


def test_issuing_a_token_for_an_unknown_user_is_404(reference_server, admin) -> None:  # type: ignore[no-untyped-def]
    r = admin.http.post("/admin/users/999999999/tokens", json={"scope": "user"})
    assert r.status_code == 404


def test_create_account_cli(reference_server, clean_db) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "E2EE_DATABASE_URL": clean_db}
    done = subprocess.run(
        [sys.executable, "-m", "e2ee_ops.reference", "create-account", "root", "--scope", "admin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = json.loads(done.stdout)
    assert set(out) == {"account_id", "username", "token"}
    assert out["username"] == "root"
    token = out["token"]
    r = _call(reference_server.url, "GET", "/dm/metrics", None, token)
    assert r.status_code == 200
    r = _call(reference_server.url, "POST", "/admin/users", {"username": "made-by-root"}, token)
    assert r.status_code == 201
    with psycopg.connect(libpq_url(clean_db)) as conn:
        row = conn.execute(
            "SELECT t.scope, t.token_hash FROM api_tokens t JOIN users u"
            " ON u.account_id = t.user_id WHERE u.username = 'root'"
        ).fetchone()
    assert row == ("admin", hashlib.sha256(token.encode()).hexdigest())


def test_create_account_cli_user_scope_and_missing_url(reference_server, clean_db) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "E2EE_DATABASE_URL": clean_db}
    done = subprocess.run(
        [sys.executable, "-m", "e2ee_ops.reference", "create-account", "plain"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = json.loads(done.stdout)["token"]
    r = _call(reference_server.url, "GET", "/dm/metrics", None, token)
    assert r.status_code == 403 and r.json() == ADMIN_REQUIRED
    assert _call(reference_server.url, "GET", "/e2ee/devices", None, token).status_code == 200

    env.pop("E2EE_DATABASE_URL")
    failed = subprocess.run(
        [sys.executable, "-m", "e2ee_ops.reference", "create-account", "nobody"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 2
    assert "E2EE_DATABASE_URL is not set" in failed.stderr
    assert failed.stdout == ""
