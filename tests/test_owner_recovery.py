"""A mailbox owner's recovery codes, without a browser, on SQLite and PostgreSQL: ten made when
the authenticator app is confirmed and shown once, each accepted once at `/me/login/code` in
place of a code of the app (wrong ones counted by the login limiter), made again on
`/me/two-factor` with the password or a code (the old ones stop working), and removed with the
app, by the owner or by an admin (page or API)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from dinomail.schema import auditlog, mailboxrecoverycode
from dinomail.store import EVERYTHING, Conflict, Store, ownerlogin
from tests.support.admin_pages import log_in, pages_client
from tests.support.adminapi import add_admin, add_domain, api_client, fast_admin_hashing
from tests.support.owner_twofactor import (
    audit_actions,
    enrol_with_codes,
    field_error,
    later_code,
    password_then,
    recovery_codes,
)
from tests.support.selfservice import (
    OWNER_PASSWORD,
    add_owner,
    csrf_token,
    me_client,
    owner_log_in,
)

EMAIL = "bob@b.org"
WRONG = "This code is wrong, expired or already used."
NEW_CODES = "/me/two-factor/recovery-codes"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@pytest.fixture
async def bob(store: Store) -> int:
    await add_domain(store, "b.org")
    return int((await add_owner(store, EMAIL))["id"])


async def stored_codes(store: Store, mailbox_id: int) -> list[tuple[str, bool]]:
    """The mailbox's code rows: (hash, used)."""
    async with store.read() as conn:
        rows = await conn.execute(
            sa.select(mailboxrecoverycode.c.code_hash, mailboxrecoverycode.c.used_at)
            .where(mailboxrecoverycode.c.user_id == mailbox_id).order_by(mailboxrecoverycode.c.id))
        return [(row.code_hash, row.used_at is not None) for row in rows]


async def audit_of(store: Store, action: str) -> list[tuple[object, object]]:
    async with store.read() as conn:
        rows = await conn.execute(sa.select(auditlog.c.old_values, auditlog.c.new_values)
                                  .where(auditlog.c.action == action).order_by(auditlog.c.id))
        return [(json.loads(row.old_values or "null"), json.loads(row.new_values or "null"))
                for row in rows]


async def test_codes_are_shown_once_stored_hashed_and_open_one_login_each(
    store: Store, bob: int
) -> None:
    async with me_client(store) as client:
        _, codes = await enrol_with_codes(await owner_log_in(client, EMAIL))
    rows = await stored_codes(store, bob)
    assert len(rows) == 10 and not any(used for _, used in rows)
    assert not set(codes) & {code_hash for code_hash, _ in rows}
    async with me_client(store) as client:
        token = await password_then(client)
        # As typed from paper: capitals and spaces are forgiven.
        typed = codes[0].upper().replace("-", " ")
        answer = await client.post("/me/login/code", data={"code": typed, "csrf_token": token})
        assert (answer.status_code, answer.headers["location"]) == (303, "/me/")
        home = await client.get("/me/")
        assert home.status_code == 200 and "You used a recovery code: 9 are left." in home.text
        page = await client.get("/me/two-factor")
        assert 'id="recovery-left"' in page.text and "9 unused recovery codes left." in page.text
        assert recovery_codes(page.text) == []
    assert (EMAIL, "use_recovery_code", EMAIL) in await audit_actions(store)
    async with me_client(store) as client:
        token = await password_then(client)
        refused = await client.post("/me/login/code", data={"code": codes[0], "csrf_token": token})
        assert refused.status_code == 400 and WRONG in field_error(refused.text, "code")
        assert (await client.get("/me/")).status_code == 303
        answer = await client.post("/me/login/code", data={"code": codes[1], "csrf_token": token})
        assert (answer.status_code, answer.headers["location"]) == (303, "/me/")
    assert sum(used for _, used in await stored_codes(store, bob)) == 2


async def test_wrong_recovery_codes_count_toward_the_lockout(store: Store, bob: int) -> None:
    async with me_client(store) as client:
        _, codes = await enrol_with_codes(await owner_log_in(client, EMAIL))
        await client.post("/me/logout", data={"csrf_token": csrf_token(await client.get("/me/"))})
        token = await password_then(client)
        for _ in range(5):
            answer = await client.post("/me/login/code",
                                       data={"code": "aaaaa-bbbbb", "csrf_token": token})
            assert answer.status_code == 400 and WRONG in answer.text
        blocked = await client.post("/me/login/code", data={"code": codes[0], "csrf_token": token})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        assert (await client.get("/me/")).status_code == 303
    # The good code was not looked at, so not spent.
    assert not any(used for _, used in await stored_codes(store, bob))


async def test_new_codes_need_the_password_or_a_code(store: Store, bob: int) -> None:
    async with me_client(store) as client:
        owner = await owner_log_in(client, EMAIL)
        app, first = await enrol_with_codes(owner)
        before = await stored_codes(store, bob)
        # Without the session's token nothing is looked at.
        assert (await client.post(NEW_CODES, data={"proof": OWNER_PASSWORD})).status_code == 403
        answer = await owner.post(NEW_CODES)
        assert answer.status_code == 400
        assert "This field is required." in field_error(answer.text, "proof")
        answer = await owner.post(NEW_CODES, {"proof": "not my password"})
        assert answer.status_code == 400 and recovery_codes(answer.text) == []
        assert "neither your current password nor a valid code" in field_error(
            answer.text, "proof")
        assert await stored_codes(store, bob) == before

        answer = await owner.post(NEW_CODES, {"proof": OWNER_PASSWORD})
        assert answer.status_code == 200
        second = recovery_codes(answer.text)
        assert len(second) == 10 and not set(second) & set(first)
        # With a code of the app, then with a recovery code (spent, then replaced).
        answer = await owner.post(NEW_CODES, {"proof": later_code(app)})
        third = recovery_codes(answer.text)
        assert answer.status_code == 200 and len(third) == 10
        answer = await owner.post(NEW_CODES, {"proof": third[0]})
        fourth = recovery_codes(answer.text)
        assert answer.status_code == 200 and len(fourth) == 10
        # An old set's code is no proof.
        answer = await owner.post(NEW_CODES, {"proof": second[0]})
        assert answer.status_code == 400
    async with store.write() as conn:
        for old in (first[0], second[1], third[1]):
            assert not await ownerlogin.check_code(conn, "t", bob, old)
        assert await ownerlogin.check_code(conn, "t", bob, fourth[0])
        assert await ownerlogin.recovery_codes_left(conn, bob) == 9
    assert [new for _, new in await audit_of(store, "new_recovery_codes")] == [
        {"recovery_codes": 10}] * 3


async def test_wrong_proofs_count_toward_the_lockout(store: Store, bob: int) -> None:
    async with me_client(store) as client:
        owner = await owner_log_in(client, EMAIL)
        await enrol_with_codes(owner)
        for _ in range(5):
            assert (await owner.post(NEW_CODES, {"proof": "guess"})).status_code == 400
        answer = await owner.post(NEW_CODES, {"proof": OWNER_PASSWORD})
        assert answer.status_code == 429 and recovery_codes(answer.text) == []
        assert "Too many failed logins" in field_error(answer.text, "proof")


async def test_no_codes_without_an_app(store: Store, bob: int) -> None:
    async with store.write() as conn:
        with pytest.raises(Conflict) as refused:
            await ownerlogin.new_recovery_codes(conn, EMAIL, EVERYTHING, bob)
        assert refused.value.code == "totp_not_enrolled"
    async with me_client(store) as client:
        owner = await owner_log_in(client, EMAIL)
        answer = await owner.post(NEW_CODES, {"proof": OWNER_PASSWORD})
        assert (answer.status_code, answer.headers["location"]) == (303, "/me/two-factor")
        page = await client.get("/me/two-factor")
        assert "Set up an authenticator app first: recovery codes come with it." in page.text
        assert 'id="recovery-left"' not in page.text
    assert await stored_codes(store, bob) == []


async def test_the_owner_removing_the_app_removes_its_codes(store: Store, bob: int) -> None:
    async with me_client(store) as client:
        owner = await owner_log_in(client, EMAIL)
        _, codes = await enrol_with_codes(owner)
        answer = await owner.post("/me/two-factor/remove", {"current_password": OWNER_PASSWORD})
        assert answer.status_code == 303
    assert await stored_codes(store, bob) == []
    assert await audit_of(store, "remove_totp") == [
        ({"totp": True, "recovery_codes": 10}, {"totp": False})]
    async with store.write() as conn:
        assert not await ownerlogin.check_code(conn, "t", bob, codes[0])


async def test_an_admin_removing_the_app_removes_its_codes(store: Store, bob: int) -> None:
    await add_admin(store, "root", superadmin=True)
    api_root = await add_admin(store, "api-root", superadmin=True)
    async with me_client(store) as client:
        await enrol_with_codes(await owner_log_in(client, EMAIL))
    async with pages_client(store) as client:
        root = await log_in(client, "root")
        answer = await root.post(f"/virtual-users/{bob}/two-factor/remove")
        assert answer.status_code == 303
        page = await root.get(f"/virtual-users/{bob}/edit")
        assert "was removed, with its recovery codes" in page.text
    assert await stored_codes(store, bob) == []
    async with me_client(store) as client:
        await owner_log_in(client, EMAIL)  # the password alone again

    # Through the API: the same.
    async with me_client(store) as client:
        _, codes = await enrol_with_codes(await owner_log_in(client, EMAIL))
    assert len(await stored_codes(store, bob)) == 10
    async with api_client(store) as client:
        done = await client.delete(f"/api/mailbox/{bob}/twofactor/", headers=api_root.headers)
        assert done.status_code == 204
    assert await stored_codes(store, bob) == []
    async with store.write() as conn:
        assert not await ownerlogin.check_code(conn, "t", bob, codes[0])


async def test_recovery_code_pages_in_french(store: Store, bob: int) -> None:
    async with me_client(store) as client:
        owner = await owner_log_in(client, EMAIL)
        await owner.post("/me/language", {"language": "fr", "next": "/me/two-factor"})
        _, codes = await enrol_with_codes(owner, french=True)
        page = await client.get("/me/two-factor")
        assert "Il reste 10 codes de secours inutilisés." in page.text
        assert "Votre mot de passe, ou un code de l’application" in page.text
        answer = await owner.post(NEW_CODES, {"proof": "faux"})
        assert "Ce n’est ni votre mot de passe actuel ni un code valide" in field_error(
            answer.text, "proof")
        answer = await owner.post(NEW_CODES, {"proof": codes[0]})
        assert "ils ne sont affichés que cette fois" in answer.text
        assert "Chacun vous connecte une fois à ces pages" in answer.text
        await owner.post("/me/logout")
        await password_then(client)
        page = await client.get("/me/login/code")
        assert "ou un code de secours" in page.text
