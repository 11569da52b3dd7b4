"""The bulk creation page: CSV lines pasted by an admin, created through the store in the
admin's scope, all or none; generated passwords downloaded as CSV, once."""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa

from dinomail.passwords import verify_password
from dinomail.schema import virtualalias, virtualuser
from dinomail.store import Store, admins
from tests.support.adminapi import PASSWORD, add_domain, fast_admin_hashing
from tests.support.pages import log_in, pages_client


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


async def rows(store: Store) -> tuple[dict[str, str], int]:
    async with store.read() as conn:
        mailboxes = dict((await conn.execute(
            sa.select(virtualuser.c.email, virtualuser.c.password))).all())
        alias_count = await conn.scalar(sa.select(sa.func.count()).select_from(virtualalias))
    return mailboxes, int(alias_count or 0)


async def test_bulk_creation_in_a_domain_admins_scope(store: Store) -> None:
    await add_domain(store, "a.org")
    b = await add_domain(store, "b.org")
    async with store.write() as conn:
        await admins.create(conn, "test", username="alice", password=PASSWORD,
                            domain_ids=[b["id"]])
    async with pages_client(store) as client:
        browser = await log_in(client, "alice")
        form = await browser.get("/bulk-import")
        assert form.status_code == 200 and "Bulk creation" in form.text
        assert "email,password,quota,active" in form.text

        refused = await browser.post("/bulk-import", {
            "kind": "mailboxes",
            "lines": "email,password\nok@b.org,Secret-123\nx@a.org,\ny@nowhere.org,\n"})
        assert refused.status_code == 400
        assert "line 3: domain: a.org is not a domain you manage" in refused.text
        assert "line 4: domain: nowhere.org is not a domain you manage" in refused.text
        assert "Nothing was created" in refused.text
        assert await rows(store) == ({}, 0)

        lines = "email,password,quota\nann@b.org,Secret-123,\nben@b.org,,1000\n"
        dry = await browser.post("/bulk-import", {"kind": "mailboxes", "lines": lines,
                                                  "dry_run": "on"})
        assert dry.status_code == 200
        assert "Every line is correct: 2 would be created." in dry.text
        assert await rows(store) == ({}, 0)

        done = await browser.post("/bulk-import", {"kind": "mailboxes", "lines": lines})
        assert done.status_code == 200
        assert done.headers["content-type"] == "text/csv; charset=utf-8"
        assert done.headers["content-disposition"] == \
            'attachment; filename="dinomail-passwords.csv"'
        generated = list(csv.reader(io.StringIO(done.text)))
        assert generated[0] == ["email", "password"] and len(generated) == 2
        assert generated[1][0] == "ben@b.org"
        stored, _ = await rows(store)
        assert verify_password("Secret-123", stored["ann@b.org"])
        assert verify_password(generated[1][1], stored["ben@b.org"])
        listed = await browser.get("/virtual-users/")
        assert "2 created." in listed.text  # the flash, shown on the next page

        aliases = await browser.post("/bulk-import", {
            "kind": "aliases", "lines": "source,destination\nteam@b.org,ann@b.org\n"
                                        "team@b.org,ben@b.org\n"})
        assert aliases.status_code == 303
        assert aliases.headers["location"] == "/virtual-aliases/"
        assert (await rows(store))[1] == 2

        empty = await browser.post("/bulk-import", {"kind": "users", "lines": ""})
        assert empty.status_code == 400
        assert "Choose mailboxes or aliases." in empty.text
        assert "This field is required." in empty.text
