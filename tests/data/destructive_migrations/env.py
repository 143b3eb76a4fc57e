"""The reference server's Alembic environment, run for these test-only revisions."""

import runpy
from pathlib import Path

import e2ee_ops.reference

runpy.run_path(str(Path(e2ee_ops.reference.__file__).parent / "migrations" / "env.py"))
