"""e2ee-ops: operator toolkit for an E2EE direct-message service."""

__version__ = "0.1.0"
