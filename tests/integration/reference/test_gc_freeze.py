"""What the server builds at start-up is moved out of the cyclic collector's reach
(`E2EE_GC_FREEZE`, on by default): under load a full collection then walks only what
requests and streams create."""

from __future__ import annotations

import asyncio
import gc

import pytest

from e2ee_ops.reference import app as app_module
from e2ee_ops.reference.settings import ServerSettings


def test_freezing_moves_every_living_object_to_the_permanent_generation() -> None:
    assert gc.get_freeze_count() == 0
    gc.collect()
    living = len(gc.get_objects())
    try:
        app_module.freeze_start_up()
        assert gc.get_freeze_count() >= living - 100
        assert len(gc.get_objects()) < 100
    finally:
        gc.unfreeze()


@pytest.mark.parametrize(("value", "frozen"), [(None, True), ("1", True), ("0", False)])
def test_start_up_is_frozen_unless_switched_off(
    database_url: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    value: str | None,
    frozen: bool,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(app_module, "freeze_start_up", lambda: calls.append("frozen"))
    env = {"E2EE_DATABASE_URL": database_url, "E2EE_REDIS_URL": redis_url}
    if value is not None:
        env["E2EE_GC_FREEZE"] = value
    app = app_module.create_app(ServerSettings.from_env(env))

    async def start_and_stop() -> None:
        async with app.router.lifespan_context(app):
            assert calls == (["frozen"] if frozen else [])

    asyncio.run(start_and_stop())
    assert calls == (["frozen"] if frozen else [])
