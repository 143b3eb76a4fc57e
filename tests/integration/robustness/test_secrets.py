"""Secrets never show: masked whole, refused when unsafe."""

from __future__ import annotations

import pytest

from e2ee_ops.errors import REDACTED, redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://ops:p@ss@word@db:5432/e2ee", f"postgresql://ops:{REDACTED}@db:5432/e2ee"),
        ("redis://:s3cr@t@localhost:6379/0", f"redis://:{REDACTED}@localhost:6379/0"),
        ("https://u:pw@h/p?q=a@b", f"https://u:{REDACTED}@h/p?q=a@b"),
    ],
)
def test_url_password_with_at_signs_is_masked_whole(url: str, shown: str) -> None:
    assert redact(f"cannot reach {url} now") == f"cannot reach {shown} now"
