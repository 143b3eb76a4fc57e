"""What the rollbacks share: table patterns (bare or schema-qualified) and short listings."""

from __future__ import annotations

from e2ee_ops.procedures.rollback import listing, matches_any


def test_a_pattern_matches_the_bare_name_or_the_qualified_one() -> None:
    assert matches_any("public.dm_messages", ["dm_*"])
    assert matches_any("audit.users", ["audit.*"])
    assert matches_any("app.public.dm_messages", ["dm_*"])  # the last part is the bare name
    assert not matches_any("public.users", ["dm_*", "audit.*"])
    assert not matches_any("dm_messages", [])
    assert not matches_any("DM_messages", ["dm_*"])  # case matters, as in PostgreSQL


def test_a_listing_shows_ten_by_default() -> None:
    names = [f"t{n}" for n in range(11)]
    assert listing(names[:10]) == "t0, t1, t2, t3, t4, t5, t6, t7, t8, t9"
    assert listing(names) == "t0, t1, t2, t3, t4, t5, t6, t7, t8, t9 and 1 more"
    assert listing(iter(["a", "b"]), limit=1) == "a and 1 more"
    assert listing([]) == ""
