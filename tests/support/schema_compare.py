"""Comparing a migrated database with the schema module."""

from __future__ import annotations


def _declared_for(dialect: str):  # type: ignore[no-untyped-def]
    """Alembic compares every index of the metadata; skip those declared for another database
    only (`Index(...).ddl_if(dialect=...)`, such as PostgreSQL's trigram indexes)."""

    def include_object(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
        condition = getattr(obj, "_ddl_if", None)
        return condition is None or condition.dialect in (None, dialect)

    return include_object
