"""Realistic data for the sandbox's demo: healthy and stuck devices, an old signed
prekey, an abusive sender and ordinary traffic, created through the real API.

Only what the API cannot do is done in SQL: ageing a signed prekey by 120 days
stands in for waiting 120 days.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from e2ee_ops.dburl import libpq_url
from e2ee_ops.reference.client import OnlineDevice, ReferenceClient


@dataclass
class SeededUser:
    account_id: int
    username: str
    token: str
    device_id: str


@dataclass
class DemoWorld:
    users: dict[str, SeededUser] = field(default_factory=dict)
    # Offline recipients of the abuse burst: people who never asked for those messages.
    bystanders: dict[str, SeededUser] = field(default_factory=dict)
    online: dict[str, OnlineDevice] = field(default_factory=dict)
    conversations: dict[tuple[str, str], int] = field(default_factory=dict)

    def stop(self) -> None:
        for device in self.online.values():
            device.stop()


HEALTHY = ("alice", "bob", "carol", "dave", "erin", "frank")
STUCK = {"grace": 3, "heidi": 8}  # one-time prekeys left: critical and warning
OLD_SIGNED_PREKEY = "ivan"
SPAMMER = "mallory"
BYSTANDERS = 24


def seed(api_url: str, admin_token: str, database_url: str) -> DemoWorld:
    world = DemoWorld()
    with ReferenceClient(api_url, admin_token) as admin:

        def add(name: str, prekeys: int, group: dict[str, SeededUser] | None = None) -> SeededUser:
            account_id = admin.create_user(name, email=f"{name}@example.test")
            token = admin.issue_token(account_id)
            with ReferenceClient(api_url, token) as client:
                device = client.register_device(f"{name}-phone", prekeys=prekeys)["device_id"]
            user = SeededUser(account_id, name, token, device)
            (world.users if group is None else group)[name] = user
            return user

        for name in HEALTHY:
            add(name, 50)
        for name, left in STUCK.items():
            add(name, left)
        add(OLD_SIGNED_PREKEY, 50)
        add(SPAMMER, 50)
        for i in range(BYSTANDERS):
            add(f"bystander{i:02d}", 20, world.bystanders)

    with psycopg.connect(libpq_url(database_url)) as conn:
        conn.execute(
            "UPDATE e2ee_key_bundles SET signed_prekey_uploaded_at = now() - interval '120 days' "
            "WHERE device_id = %s",
            (world.users[OLD_SIGNED_PREKEY].device_id,),
        )
    for user in world.users.values():
        world.online[user.username] = OnlineDevice(api_url, user.token, user.device_id).start()
    for a, b in (("alice", "bob"), ("carol", "dave"), ("erin", "frank"), ("bob", "carol")):
        send(world, api_url, a, b, count=2)
    return world


def send(
    world: DemoWorld, api_url: str, sender: str, recipient: str, *, count: int = 1
) -> list[int]:
    s = world.users[sender]
    r = world.users.get(recipient) or world.bystanders[recipient]
    ids = []
    with ReferenceClient(api_url, s.token) as client:
        key = (sender, recipient)
        if key not in world.conversations:
            world.conversations[key] = client.open_conversation(r.account_id)
        for _ in range(count):
            ids.append(
                client.send(world.conversations[key], s.device_id, r.account_id)["message_id"]
            )
    return ids


def abuse_burst(world: DemoWorld, api_url: str, *, per_recipient: int = 3) -> int:
    """The spammer fans out to everyone: many messages, many recipients, new conversations."""
    sent = 0
    for name in [*world.users, *world.bystanders]:
        if name != SPAMMER:
            sent += len(send(world, api_url, SPAMMER, name, count=per_recipient))
    return sent
