"""CLI tests use the session sandbox of tests/integration/conftest.py."""

from tests.integration.conftest import token_of

__all__ = ["token_of"]  # imported by the CLI test modules
