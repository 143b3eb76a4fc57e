"""Resolved bearer tokens, kept for a few seconds so a request costs no token query.

An entry lives at most `ttl` seconds. This process forgets a token or a user at once
when it revokes the token or blocks or unblocks the user; the other instances forget
them when the relay's pub/sub message reaches them, and forget everything when they
(re)subscribe. While Redis is down that message cannot arrive, so another instance may
accept a revoked token, or a blocked user's, for up to `ttl` seconds. A token revoked
straight in the database (not through the API) is likewise accepted for up to `ttl`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

# Past this many entries the cache starts again empty rather than growing.
MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class Resolved:
    user_id: int
    scope: str
    blocked: bool


class TokenCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Resolved]] = {}
        # Counts forgets: a resolution read before one must not be stored after it.
        self.generation = 0

    def get(self, token_hash: str) -> Resolved | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if time.monotonic() >= entry[0]:
            del self._entries[token_hash]
            return None
        return entry[1]

    def put(self, token_hash: str, resolved: Resolved, generation: int) -> None:
        """Keep `resolved`, read from the database when `self.generation` was `generation`."""
        if self.ttl <= 0 or generation != self.generation:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[token_hash] = (time.monotonic() + self.ttl, resolved)

    def forget(self, *, token_hashes: Sequence[str] = (), user_ids: Sequence[int] = ()) -> None:
        self.generation += 1
        for token_hash in token_hashes:
            self._entries.pop(token_hash, None)
        if user_ids:
            users = set(user_ids)
            for token_hash in [h for h, (_, r) in self._entries.items() if r.user_id in users]:
                del self._entries[token_hash]

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
