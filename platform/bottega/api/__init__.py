"""The central API tier: FastAPI + SQLAlchemy, one folder per domain (installed with `bottega[server]`)."""
