"""Integrations with frameworks that use the data layer (FastAPI)."""
