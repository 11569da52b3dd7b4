"""A small mail setup filled through the store, shared by the lookup tests.

example.org: alice (mailbox), bob (mailbox), info → alice + bob@elsewhere.net,
catch-all @example.org → alice, carol (inactive mailbox); example.net is an alias domain of
example.org; dormant.org is an inactive domain with a mailbox; bücher.example (IDNA) has eve.
"""

from __future__ import annotations

from dinomail.store import EVERYTHING, Store, aliasdomains, aliases, domains, mailboxes

PASSWORD_HASH = "{PLAIN}secret"


async def fill_mail_data(store: Store) -> dict[str, int]:
    ids: dict[str, int] = {}
    async with store.write() as conn:
        async def domain(name: str, **extra: object) -> int:
            row = await domains.create(conn, "test", EVERYTHING, {"name": name, **extra})
            ids[row["name"]] = row["id"]
            return row["id"]

        async def mailbox(email: str, **extra: object) -> None:
            row = await mailboxes.create(
                conn, "test", EVERYTHING, {"email": email, **extra}, password_hash=PASSWORD_HASH
            )
            ids[row["email"]] = row["id"]

        async def alias(source: str, destination: str) -> None:
            await aliases.create(
                conn, "test", EVERYTHING, {"source": source, "destination": destination}
            )

        example = await domain("example.org")
        await mailbox("alice@example.org", quota=1_000_000)
        await mailbox("bob@example.org")
        await mailbox("carol@example.org", active=False)
        await alias("info@example.org", "alice@example.org")
        await alias("info@example.org", "bob@elsewhere.net")
        await alias("@example.org", "alice@example.org")
        await aliasdomains.create(
            conn, "test", EVERYTHING, {"name": "example.net", "target_domain_id": example}
        )
        await domain("dormant.org", active=False)
        await mailbox("dan@dormant.org")
        await domain("bücher.example")
        await mailbox("eve@bücher.example")
    return ids
