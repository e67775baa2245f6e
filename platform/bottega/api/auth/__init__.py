"""Authentication (API keys) and authorization (per-project roles)."""
