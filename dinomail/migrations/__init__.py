"""Alembic migrations; run them with `dinomail migrate` (see `dinomail.migrate`)."""
