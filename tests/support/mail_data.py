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


# What each lookup of `fill_mail_data`'s data answers (None: not found), rule by rule.
NOT_FOUND = None
EXPECTED = {
    "domains": {
        "example.org": "example.org",
        "example.net": "example.net",  # an alias domain is ours too
        "BÜCHER.example": "xn--bcher-kva.example",  # Unicode and IDNA forms both match
        "xn--bcher-kva.example": "xn--bcher-kva.example",
        "dormant.org": NOT_FOUND,  # inactive domain
        "unknown.org": NOT_FOUND,
    },
    "mailboxes": {
        "alice@example.org": "example.org/alice/",
        "Alice+tag@Example.org": "example.org/alice/",  # case and extension
        "eve@bücher.example": "xn--bcher-kva.example/eve/",
        "carol@example.org": NOT_FOUND,  # inactive mailbox
        "dan@dormant.org": NOT_FOUND,  # mailbox of an inactive domain
        "info@example.org": NOT_FOUND,  # an alias, not a mailbox
    },
    "aliases": {
        "info@example.org": "alice@example.org,bob@elsewhere.net",
        "info+x@example.org": "alice+x@example.org,bob+x@elsewhere.net",
        "alice@example.org": "alice@example.org",  # a mailbox is not swallowed by the catch-all
        "alice+tag@example.org": "alice+tag@example.org",
        "nobody@example.org": "alice@example.org",  # the catch-all
        "alice@example.net": "alice@example.org",  # alias domain → target
        "nobody@example.net": "nobody@example.org",
        "x@unknown.org": NOT_FOUND,
        "dan@dormant.org": NOT_FOUND,
        "example.org": NOT_FOUND,  # bare domains are not aliases
    },
    "senders": {
        "alice@example.org": "alice@example.org",
        "bob+x@example.org": "bob@example.org",
        "info@example.org": "alice@example.org",  # the local mailbox the alias delivers to
        "alice@example.net": "alice@example.org",
        "x@unknown.org": NOT_FOUND,
    },
}


CASES = [(name, key, value) for name, keys in EXPECTED.items() for key, value in keys.items()]
