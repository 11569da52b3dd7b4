"""A mailbox owner's authenticator app moves with an export and an import (SQLite to SQLite and
to PostgreSQL): on the new server, logging in to `/me/` asks for a code of the same app after
the password, and the code last used on the old server is not accepted again. Its recovery codes
move with it, as hashes: one used on the old server stays used, the others open one login."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import pyotp
import pytest
import sqlalchemy as sa

from dinomail import migrate
from dinomail.schema import virtualuser
from dinomail.store import EVERYTHING, Store, ownerlogin
from dinomail.transfer import document
from dinomail.transfer.export import export_document
from dinomail.transfer.importer import import_document
from tests.conftest import new_postgres_database
from tests.support.adminapi import add_domain, fast_admin_hashing
from tests.support.selfservice import add_owner, csrf_token, me_client, try_owner_login

OWNER = "bob@b.org"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@pytest.fixture(params=["sqlite", "postgresql"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path / 'target.sqlite3'}")
        await migrate.upgrade(store.engine)
    else:
        store = Store(new_postgres_database(request.getfixturevalue("postgres")))
    yield store
    await store.close()


async def exported_owner_with_app(
    tmp_path: Path
) -> tuple[dict[str, Any], pyotp.TOTP, str, list[str]]:
    """An installation whose owner enrolled an app, used a code and their first recovery code:
    its export, the app, the code used (its step is the last accepted) and the recovery
    codes."""
    store = Store(f"sqlite:///{tmp_path / 'source.sqlite3'}")
    await migrate.upgrade(store.engine)
    try:
        await add_domain(store, "b.org")
        owner_id = int((await add_owner(store, OWNER))["id"])
        async with store.write() as conn:
            app = pyotp.TOTP(await ownerlogin.start_totp(conn, EVERYTHING, owner_id))
            used = app.now()
            codes = await ownerlogin.confirm_totp(conn, OWNER, EVERYTHING, owner_id, used)
            assert await ownerlogin.check_code(conn, OWNER, owner_id, codes[0])
        doc = json.loads("".join([piece async for piece in export_document(store)]))
    finally:
        await store.close()
    return doc, app, used, codes


async def test_the_owner_logs_in_with_the_same_app_after_an_import(
    target: Store, tmp_path: Path
) -> None:
    doc, app, used, _ = await exported_owner_with_app(tmp_path)
    jsonschema.validate(doc, document.schema())
    assert doc["version"] == document.VERSION == 3
    (mailbox,) = doc["mailboxes"]
    assert mailbox["totp"]["secret"] == app.secret
    assert mailbox["totp"]["confirmed_at"] is not None
    assert mailbox["totp"]["last_step"] is not None

    report = await import_document(target, doc)
    assert not report.errors and report.created["mailboxes"] == 1

    async with me_client(target) as client:
        answer = await try_owner_login(client, OWNER)
        # The password is not enough: the second step is asked for.
        assert (answer.status_code, answer.headers["location"]) == (303, "/me/login/code")
        assert (await client.get("/me/")).headers["location"] == "/me/login"
        token = csrf_token(await client.get("/me/login/code"))
        # The code used on the old server is spent on this one too.
        refused = await client.post("/me/login/code", data={"code": used, "csrf_token": token})
        assert refused.status_code == 400
        assert "This code is wrong, expired or already used." in refused.text
        wrong = str((int(app.at(time.time() + 30)) + 1) % 1_000_000).zfill(6)
        refused = await client.post("/me/login/code", data={"code": wrong, "csrf_token": token})
        assert refused.status_code == 400
        # A new code of the same app opens the pages.
        answer = await client.post("/me/login/code",
                                   data={"code": app.at(time.time() + 30), "csrf_token": token})
        assert (answer.status_code, answer.headers["location"]) == (303, "/me/")
        assert (await client.get("/me/")).status_code == 200


async def test_without_the_app_in_the_document_the_password_is_enough(
    target: Store, tmp_path: Path
) -> None:
    doc, _, _, _ = await exported_owner_with_app(tmp_path)
    del doc["mailboxes"][0]["totp"]
    del doc["mailboxes"][0]["recovery_codes"]
    await import_document(target, doc)
    async with me_client(target) as client:
        answer = await try_owner_login(client, OWNER)
        assert (answer.status_code, answer.headers["location"]) == (303, "/me/")


async def test_the_owner_logs_in_with_a_recovery_code_after_an_import(
    target: Store, tmp_path: Path
) -> None:
    doc, _, _, codes = await exported_owner_with_app(tmp_path)
    jsonschema.validate(doc, document.schema())
    (mailbox,) = doc["mailboxes"]
    # Hashes only, the one used marked so.
    assert len(mailbox["recovery_codes"]) == 10
    assert [code["used_at"] is not None for code in mailbox["recovery_codes"]].count(True) == 1
    assert not any(code in json.dumps(doc) for code in codes)
    # Codes without their app are refused by the schema as by the import.
    without_app = {**mailbox}
    del without_app["totp"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**doc, "mailboxes": [without_app]}, document.schema())

    await import_document(target, doc)
    async with me_client(target) as client:
        await try_owner_login(client, OWNER)
        token = csrf_token(await client.get("/me/login/code"))
        # The code used on the old server is spent on this one too.
        refused = await client.post("/me/login/code", data={"code": codes[0], "csrf_token": token})
        assert refused.status_code == 400
        assert "This code is wrong, expired or already used." in refused.text
        answer = await client.post("/me/login/code",
                                   data={"code": codes[1].upper(), "csrf_token": token})
        assert (answer.status_code, answer.headers["location"]) == (303, "/me/")
        home = await client.get("/me/")
        assert home.status_code == 200 and "You used a recovery code: 8 are left." in home.text
    async with target.read() as conn:
        mailbox_id = await conn.scalar(sa.select(virtualuser.c.id))
        assert mailbox_id is not None
        assert await ownerlogin.recovery_codes_left(conn, mailbox_id) == 8
