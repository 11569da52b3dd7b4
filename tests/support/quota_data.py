"""Mailboxes made for the quota tests, and the usage the store holds for one."""

from __future__ import annotations

from dinomail.store import EVERYTHING, Store, domains, mailboxes


async def make_mailboxes(store: Store, count: int) -> list[str]:
    emails = [f"user{n}@example.org" for n in range(count)]
    async with store.write() as conn:
        await domains.create(conn, "test", EVERYTHING, {"name": "example.org"})
        for email in emails:
            await mailboxes.create(conn, "test", EVERYTHING, {"email": email},
                                   password_hash="{PLAIN}x")
    return emails


async def usage_of(store: Store, email: str) -> tuple[int, int]:
    async with store.read() as conn:
        row = await mailboxes.get_by_email(conn, EVERYTHING, email)
    return row["quota_used_bytes"], row["quota_used_messages"]
