"""A post-mortem produced after a real Redis outage and recovery in the sandbox."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import yaml

from e2ee_ops import sandbox
from e2ee_ops.reference.client import ReferenceClient
from tests.integration.cli.conftest import token_of
from tests.support.cli import cli


def test_postmortem_after_a_redis_outage(
    sandbox_state, sandbox_config, admin_client, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    # Our own journal, so other tests' entries stay out of this incident.
    settings = yaml.safe_load(sandbox_config.read_text())
    settings["journal"]["path"] = str(tmp_path / "journal.jsonl")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings))

    def run(*args: str):  # type: ignore[no-untyped-def]
        return cli("--config", str(config), *args)

    receiver_id = admin_client.create_user(f"pm-{uuid.uuid4().hex[:8]}")
    receiver_token = admin_client.issue_token(receiver_id)
    with ReferenceClient(sandbox_state.api_url, receiver_token) as r:
        receiver_device = r.register_device("phone", prekeys=20)["device_id"]

    opened = run("incident", "open", "--severity", "P1", "--title", "Redis down")
    assert opened.exit_code == 0, opened.stdout + opened.stderr
    try:
        sandbox.stop_service(sandbox_state.dir, "redis")
        with ReferenceClient(sandbox_state.api_url, token_of(sandbox_state, "demo")) as demo:
            conv = demo.open_conversation(receiver_id)
            device = sandbox_state.accounts["demo"].device_id
            for _ in range(3):
                demo.send(conv, device, receiver_id)
        recovered = run("redis", "recover", "--execute", "--yes")
        # The receiver is offline: its 3 messages stay undelivered, a WARNING.
        assert recovered.exit_code == 1, recovered.stdout + recovered.stderr
        closed = run("incident", "close", "--resolution", "Redis restarted by redis recover")
        assert closed.exit_code == 0
    finally:
        sandbox.start_service(sandbox_state.dir, "redis")
        if run("--output", "json", "incident", "status").json["data"].get("open"):
            run("incident", "close", "--resolution", "test cleanup")

    out = tmp_path / "postmortem.md"
    made = run("postmortem", "checklist", "--out", str(out))
    assert made.exit_code == 0, made.stderr
    text = out.read_text()
    assert text.startswith("# Post-mortem: Redis outage")
    assert "- [x] Document outage duration — " in text
    assert "- [x] Count messages stored but not delivered — " in text
    assert re.search(r"- \[ \] Verify all messages eventually delivered — \d+ not delivered", text)
    assert "- [ ] Verify all messages eventually delivered — " in text
    assert "- [ ] Review Redis logs for root cause — not verifiable by any command" in text
    assert "| redis recover | Redis outage of " in text
    assert "- [x] resolve — `redis recover`" in text
    # The timeline as a picture: opened, commands, the outage with its evidence, closed.
    chart = text.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert chart.startswith("gantt\n") and "dateFormat YYYY-MM-DD HH" in chart
    assert re.search(r"opened P1 by .* :milestone, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d, 0s", chart)
    assert "redis recover WARNING :active, milestone, " in chart
    assert "Redis down, start from the oldest message of the last hour not yet delivered" in chart
    assert "end from Redis answered PING (redis recover) :crit, " in chart
    assert "recovery verified (canary over SSE, stored vs delivered) :done, " in chart
    assert "closed, Redis restarted by redis recover :done, milestone, " in chart

    status = run("--output", "json", "incident", "status").json["data"]
    assert status["open"] is False and status["steps"]["postmortem"]
    assert Path(sandbox_state.dir).exists()

    # The receiver comes online and takes its messages: the shared sandbox is left clean.
    with ReferenceClient(sandbox_state.api_url, receiver_token) as r:
        pending = [m["message_id"] for m in r.poll(receiver_device)["messages"]]
        assert len(pending) == 3
        assert r.ack(receiver_device, pending) == 3
