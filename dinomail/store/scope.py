"""Which domains a caller may see: everything for a superadmin, a set for a domain admin."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa


@dataclass(frozen=True, slots=True)
class Scope:
    """`domain_ids` None means every domain (a superadmin, or the CLI)."""

    domain_ids: frozenset[int] | None = None

    @property
    def is_global(self) -> bool:
        return self.domain_ids is None

    def allows(self, domain_id: int) -> bool:
        return self.domain_ids is None or domain_id in self.domain_ids

    def filter(self, column: sa.ColumnElement) -> sa.ColumnElement[bool]:
        """A WHERE clause restricting `column` (a domain id) to the scope."""
        if self.domain_ids is None:
            return sa.true()
        if not self.domain_ids:
            return sa.false()
        return column.in_(sorted(self.domain_ids))


EVERYTHING = Scope()
