"""`python -m e2ee_ops` is `e2ee-ops`."""

from e2ee_ops.cli.main import run

run()
