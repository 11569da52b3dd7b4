"""The original documentation's Postfix queries, and Postfix maps that run them."""

from __future__ import annotations

from pathlib import Path

from tests.support.postgres import PostgresServer

POSTFIX_QUERIES = {
    "virtual-mailbox-domains": "SELECT 1 FROM core_virtualdomain WHERE name='%s'",
    "virtual-mailbox-maps": "SELECT 1 FROM core_virtualuser WHERE email='%s'",
    "virtual-alias-maps": "SELECT destination FROM core_virtualalias WHERE source='%s'",
    "email2email": "SELECT email FROM core_virtualuser WHERE email='%s'",
}


def _pgsql_map(tmp_path: Path, postgres: PostgresServer, url: str, name: str) -> str:
    database = url.rsplit("/", 1)[1]
    path = tmp_path / f"{name}.cf"
    path.write_text(
        f"user = postgres\nhosts = 127.0.0.1:{postgres.port}\ndbname = {database}\n"
        f"query = {POSTFIX_QUERIES[name]}\n"
    )
    return f"pgsql:{path}"
