"""The store on SQLite and PostgreSQL: writes, validation, limits, conflicts, audit, changes."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from dinomail.schema import auditlog, changelog
from dinomail.store import (
    EVERYTHING,
    Conflict,
    Forbidden,
    LimitExceeded,
    NotFound,
    Scope,
    Store,
    admins,
    aliasdomains,
    aliases,
    apikeys,
    changes,
    domains,
    mailboxes,
)
from dinomail.store.common import ListRequest
from dinomail.validation import ValidationError

HASH = "{PLAIN}not-a-real-hash"


async def make_domain(store: Store, name: str = "example.org", **extra) -> dict:
    async with store.write() as conn:
        return await domains.create(conn, "test", EVERYTHING, {"name": name, **extra})


async def make_mailbox(store: Store, email: str, **extra) -> dict:
    async with store.write() as conn:
        return await mailboxes.create(
            conn, "test", EVERYTHING, {"email": email, **extra}, password_hash=HASH
        )


async def make_alias(store: Store, source: str, destination: str) -> dict:
    async with store.write() as conn:
        return await aliases.create(
            conn, "test", EVERYTHING, {"source": source, "destination": destination}
        )


async def test_domain_is_normalised_and_unique(store: Store) -> None:
    domain = await make_domain(store, "Exämple.ORG.")
    assert domain["name"] == "xn--exmple-cua.org"
    assert domain["active"] is True
    with pytest.raises(Conflict) as caught:
        await make_domain(store, "EXÄMPLE.org")
    assert caught.value.field == "name"


@pytest.mark.parametrize(
    "bad", ["", "localhost", "exa mple.org", "-bad.org", "a" * 64 + ".org", "1.2.3.4"]
)
async def test_bad_domain_names_are_refused(store: Store, bad: str) -> None:
    with pytest.raises(ValidationError) as caught:
        await make_domain(store, bad)
    assert caught.value.field == "name"
    async with store.read() as conn:
        assert await domains.count(conn, EVERYTHING) == 0


async def test_mailbox_must_belong_to_its_domain(store: Store) -> None:
    domain = await make_domain(store, "nanoy.fr")
    async with store.write() as conn:
        with pytest.raises(ValidationError) as caught:
            await mailboxes.create(
                conn, "t", EVERYTHING, {"email": "test@plop.fr", "domain_id": domain["id"]},
                password_hash=HASH,
            )
    assert caught.value.field == "email"
    assert caught.value.message == (
        "The domain of test@plop.fr (plop.fr) is not the same as the domain nanoy.fr"
    )


async def test_mailbox_email_lowercase_unique_and_domain_derived(store: Store) -> None:
    domain = await make_domain(store)
    box = await make_mailbox(store, "Alice@Example.org", quota=1000)
    assert box["email"] == "alice@example.org"
    assert box["domain_id"] == domain["id"]
    assert box["quota_used_bytes"] == 0
    assert "password" not in box
    with pytest.raises(Conflict):
        await make_mailbox(store, "ALICE@example.org")


@pytest.mark.parametrize(
    "bad", ["alice", "al ice@example.org", "a..b@example.org", ".a@example.org",
            "a" * 65 + "@example.org", "alice@", "@example.org"]
)
async def test_bad_addresses_are_refused(store: Store, bad: str) -> None:
    await make_domain(store)
    with pytest.raises(ValidationError) as caught:
        await make_mailbox(store, bad)
    assert caught.value.field == "email"


async def test_domain_limits(store: Store) -> None:
    await make_domain(
        store, max_mailboxes=2, max_aliases=1, max_quota_per_mailbox=100, total_quota=150,
        default_quota=50,
    )
    first = await make_mailbox(store, "a@example.org")
    assert first["quota"] == 50  # the domain's default
    with pytest.raises(LimitExceeded) as caught:
        await make_mailbox(store, "b@example.org", quota=101)
    assert caught.value.field == "quota"
    with pytest.raises(LimitExceeded):
        await make_mailbox(store, "b@example.org", quota=0)  # unlimited not allowed with a cap
    with pytest.raises(LimitExceeded):
        await make_mailbox(store, "b@example.org", quota=101)
    await make_mailbox(store, "b@example.org", quota=100)
    with pytest.raises(LimitExceeded) as caught:
        await make_mailbox(store, "c@example.org", quota=1)
    assert "maximum of 2 mailboxes" in caught.value.message
    await make_alias(store, "x@example.org", "a@example.org")
    with pytest.raises(LimitExceeded):
        await make_alias(store, "y@example.org", "a@example.org")


async def test_total_quota_counts_other_mailboxes(store: Store) -> None:
    await make_domain(store, total_quota=100)
    box = await make_mailbox(store, "a@example.org", quota=60)
    with pytest.raises(LimitExceeded):
        await make_mailbox(store, "b@example.org", quota=50)
    async with store.write() as conn:
        # Raising one's own quota counts only the others.
        updated = await mailboxes.update(conn, "t", EVERYTHING, box["id"], {"quota": 100})
    assert updated["quota"] == 100


async def test_aliases_several_destinations_catch_all_and_checks(store: Store) -> None:
    await make_domain(store)
    await make_mailbox(store, "alice@example.org")
    await make_alias(store, "info@example.org", "alice@example.org")
    await make_alias(store, "info@example.org", "bob@elsewhere.net")
    catch_all = await make_alias(store, "@Example.org", "alice@example.org")
    assert catch_all["source"] == "@example.org"
    with pytest.raises(Conflict):
        await make_alias(store, "info@example.org", "ALICE@example.org")
    with pytest.raises(NotFound) as not_found:
        await make_alias(store, "info@other.org", "alice@example.org")
    assert not_found.value.field == "domain" and not_found.value.code == "domain_not_yours"
    with pytest.raises(ValidationError) as caught:
        await make_alias(store, "loop@example.org", "loop@example.org")
    assert caught.value.field == "destination"
    async with store.read() as conn:
        page = await aliases.list_window(conn, EVERYTHING, ListRequest(q="info", limit=10))
        status = await aliases.destination_status(
            conn, EVERYTHING, ["alice@example.org", "ghost@example.org", "bob@elsewhere.net"]
        )
    assert page.total_count == 2
    assert status == {"alice@example.org": True, "ghost@example.org": False}


async def test_alias_domain_cannot_shadow_a_domain(store: Store) -> None:
    target = await make_domain(store)
    await make_domain(store, "other.org")
    async with store.write() as conn:
        alias_domain = await aliasdomains.create(
            conn, "t", EVERYTHING, {"name": "example.net", "target_domain_id": target["id"]}
        )
    assert alias_domain["target_domain_name"] == "example.org"
    async with store.write() as conn:
        with pytest.raises(Conflict):
            await aliasdomains.create(
                conn, "t", EVERYTHING, {"name": "other.org", "target_domain_id": target["id"]}
            )
    with pytest.raises(Conflict):
        await make_domain(store, "example.net")


async def test_scope_hides_other_domains(store: Store) -> None:
    mine = await make_domain(store, "mine.org")
    theirs = await make_domain(store, "theirs.org")
    await make_mailbox(store, "a@mine.org")
    other = await make_mailbox(store, "b@theirs.org")
    scope = Scope(frozenset({mine["id"]}))
    async with store.read() as conn:
        page = await mailboxes.list_window(conn, scope, ListRequest(limit=10))
        assert [row["email"] for row in page.rows] == ["a@mine.org"]
        with pytest.raises(NotFound):
            await mailboxes.get(conn, scope, other["id"])
        assert await domains.count(conn, scope) == 1
    async with store.write() as conn:
        with pytest.raises(NotFound):
            await mailboxes.create(
                conn, "t", scope, {"email": "c@theirs.org", "domain_id": theirs["id"]},
                password_hash=HASH,
            )
    async with store.write() as conn:
        with pytest.raises(Forbidden):
            await domains.create(conn, "t", scope, {"name": "new.org"})


async def test_failed_write_changes_nothing(store: Store) -> None:
    await make_domain(store)
    with pytest.raises(Conflict):
        async with store.write() as conn:
            await mailboxes.create(
                conn, "t", EVERYTHING, {"email": "a@example.org"}, password_hash=HASH
            )
            await mailboxes.create(
                conn, "t", EVERYTHING, {"email": "a@example.org"}, password_hash=HASH
            )
    async with store.read() as conn:
        assert await mailboxes.count(conn, EVERYTHING) == 0


async def test_audit_log_never_holds_a_secret(store: Store) -> None:
    await make_domain(store)
    box = await make_mailbox(store, "a@example.org")
    async with store.write() as conn:
        await mailboxes.set_password(conn, "admin:root", EVERYTHING, box["id"], "{PLAIN}s3cret")
        account = await admins.create(conn, "cli", username="root", password="correct horse")
        _, secret = await apikeys.create(conn, "admin:root", account["id"])
    async with store.read() as conn:
        rows = (await conn.execute(sa.select(auditlog).order_by(auditlog.c.id))).mappings().all()
    text = json.dumps([dict(row) for row in rows], default=str)
    assert "s3cret" not in text and "correct horse" not in text and secret not in text
    assert HASH not in text
    actions = [(row["object_type"], row["action"]) for row in rows]
    assert ("mailbox", "set_password") in actions and ("api_key", "create") in actions


async def test_admin_authentication_and_api_keys(store: Store) -> None:
    async with store.write() as conn:
        account = await admins.create(conn, "cli", username="root", password="correct horse")
        key, secret = await apikeys.create(conn, "t", account["id"], read_only=True)
    async with store.write() as conn:
        assert await admins.authenticate(conn, "root", "wrong password") is None
        assert await admins.authenticate(conn, "nobody", "correct horse") is None
        assert (await admins.authenticate(conn, "root", "correct horse"))["id"] == account["id"]
        found = await apikeys.authenticate(conn, secret, username="root")
        assert found is not None and found[0]["read_only"] is True
        assert await apikeys.authenticate(conn, secret, username="other") is None
        assert key["prefix"] == secret[:8] and len(secret) == 40
        await apikeys.revoke(conn, "t", account["id"], key["id"])
        assert await apikeys.authenticate(conn, secret) is None


async def test_quota_usage_is_recorded(store: Store) -> None:
    await make_domain(store)
    box = await make_mailbox(store, "a@example.org")
    async with store.write() as conn:
        known = await mailboxes.record_usage(
            conn, {"a@example.org": (1234, 5), "ghost@example.org": (1, 1)}
        )
        assert known == 1
        await mailboxes.record_usage(conn, {"a@example.org": (None, 7)})
    async with store.read() as conn:
        row = await mailboxes.get(conn, EVERYTHING, box["id"])
    assert (row["quota_used_bytes"], row["quota_used_messages"]) == (1234, 7)


async def test_change_log_follows_store_writes_and_raw_sql(store: Store) -> None:
    domain = await make_domain(store)
    async with store.read() as conn:
        start = await changes.latest_seq(conn)
    # A row written by hand, as an admin would in psql or sqlite3.
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO core_virtualuser (domain_id, email, password, quota, active) "
                "VALUES (:d, 'raw@example.org', '{PLAIN}x', 0, :t)"
            ),
            {"d": domain["id"], "t": True},
        )
        await conn.execute(
            sa.text("UPDATE core_virtualdomain SET active = :f WHERE id = :d"),
            {"f": False, "d": domain["id"]},
        )
    async with store.read() as conn:
        logged = await changes.changes_since(conn, start, 100)
        batch = await changes.fetch_changes(conn, logged)
    assert [(c.table_name, c.op) for c in logged] == [
        ("core_virtualuser", "I"), ("core_virtualdomain", "U"),
    ]
    assert [row.email for row in batch.mailboxes] == ["raw@example.org"]
    assert batch.domains[0].active is False

    async with store.engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM core_virtualdomain"))
    async with store.read() as conn:
        logged = await changes.changes_since(conn, start, 100)
        batch = await changes.fetch_changes(conn, logged)
        seq, data = await changes.load_mail_data(conn)
    # The cascade removed the mailbox too, and the trigger saw it.
    assert ("core_virtualuser", "D") in [(c.table_name, c.op) for c in logged]
    assert batch.removed_domains == [domain["id"]] and batch.mailboxes == []
    assert seq == logged[-1].seq and data.domains == [] and data.mailboxes == []


async def test_change_log_prune_moves_the_horizon(store: Store) -> None:
    await make_domain(store)
    async with store.write() as conn:
        last = await changes.latest_seq(conn)
        await changes.prune(conn, last)
    async with store.read() as conn:
        assert await changes.horizon(conn) == last
        assert await conn.scalar(sa.select(sa.func.count()).select_from(changelog)) == 0
    await make_domain(store, "second.org")
    async with store.read() as conn:
        # Sequence numbers are never reused after a prune.
        assert await changes.latest_seq(conn) > last


async def test_load_mail_data(store: Store) -> None:
    domain = await make_domain(store)
    await make_mailbox(store, "a@example.org", quota=10)
    await make_alias(store, "b@example.org", "a@example.org")
    async with store.write() as conn:
        await aliasdomains.create(
            conn, "t", EVERYTHING, {"name": "example.net", "target_domain_id": domain["id"]}
        )
    async with store.read() as conn:
        seq, data = await changes.load_mail_data(conn)
    assert seq > 0
    assert [(d.name, d.active) for d in data.domains] == [("example.org", True)]
    assert [(m.email, m.quota, m.password) for m in data.mailboxes] == [
        ("a@example.org", 10, HASH)
    ]
    assert [(a.source, a.destination) for a in data.aliases] == [
        ("b@example.org", "a@example.org")
    ]
    # A destination that is a local mailbox is the mailbox's own string, held once.
    assert data.aliases[0].destination is data.mailboxes[0].email
    assert [(a.name, a.target_domain_id) for a in data.alias_domains] == [
        ("example.net", domain["id"])
    ]


async def test_load_mail_data_in_pages(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pages of two rows: five mailboxes and three aliases take several pages, the last one
    # short, and none is lost or read twice at a page's edge.
    monkeypatch.setattr(changes, "LOAD_CHUNK", 2)
    await make_domain(store)
    emails = [f"user{n}@example.org" for n in range(5)]
    for email in emails:
        await make_mailbox(store, email)
    for n in range(4):
        await make_alias(store, f"alias{n}@example.org", emails[n])
    async with store.read() as conn:
        _, data = await changes.load_mail_data(conn)
    assert [m.email for m in data.mailboxes] == emails
    assert [a.source for a in data.aliases] == [f"alias{n}@example.org" for n in range(4)]
    assert [a.id for a in data.aliases] == sorted({a.id for a in data.aliases})
