"""The same e2ee-ops config as the devices tests: session server, database, receivers."""

from tests.integration.devices.conftest import http_receiver, ops_config, smtp_server

__all__ = ["http_receiver", "ops_config", "smtp_server"]
