"""The reference E2EE DM server the toolkit operates: FastAPI + PostgreSQL + Redis."""
