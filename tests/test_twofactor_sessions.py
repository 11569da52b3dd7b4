"""Turning two-factor login on ends the admin's other page sessions (opened with the password
alone), as a new password does; the session where it was turned on goes on. An authenticator
app confirmed and a first passkey do it; a second passkey does not."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator

import pyotp
import pytest

from dinomail import migrate, totp
from dinomail.store import EVERYTHING, Store, admins, domains, twofactor
from tests.support.adminapi import PASSWORD, fast_admin_hashing
from tests.support.page_client import PageSession, log_in, pages_client, password_step
from tests.support.soft_passkey import challenge_of, registration_answer

SECRET = re.compile(r'<code id="totp-secret"[^>]*>([A-Z2-7 ]+)</code>')
RECOVERY = re.compile(r"<li><code>([a-z2-7]{5}-[a-z2-7]{5})</code></li>")
ENDED = "Your other sessions have ended"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@pytest.fixture
async def pages_store(tmp_path) -> AsyncIterator[Store]:  # type: ignore[no-untyped-def]
    """The pages on SQLite; the store's rule runs on PostgreSQL too (the last test)."""
    store = Store(f"sqlite:///{tmp_path / 'dinomail.sqlite3'}")
    await migrate.upgrade(store.engine)
    async with store.write() as conn:
        nanoy = await domains.create(conn, "test", EVERYTHING, {"name": "nanoy.fr"})
        for name in ("alice", "bob"):
            await admins.create(conn, "test", username=name, password=PASSWORD,
                                domain_ids=[nanoy["id"]])
    yield store
    await store.close()


async def logged_in(session: PageSession) -> bool:
    answer = await session.get("/account/")
    assert answer.status_code in (200, 303)
    return answer.status_code == 200


async def add_passkey(session: PageSession, name: str) -> str:
    """Add a passkey through the form, as a browser would; the text of the page after it."""
    page = await session.get("/account/two-factor/passkeys/new")
    credential = registration_answer(challenge_of(page.text), rp_id="testserver",
                                     origin="https://testserver")
    answer = await session.post("/account/two-factor/passkeys/new",
                                {"name": name, "credential": credential})
    assert answer.status_code in (200, 303), answer.text
    shown = answer.text if answer.status_code == 200 else (await session.get(
        answer.headers["location"])).text
    assert f"The passkey {name} was added." in shown
    return shown


async def test_an_app_and_a_first_passkey_end_the_other_sessions(pages_store: Store) -> None:
    store = pages_store
    async with pages_client(store) as here, pages_client(store) as there:
        mine = await log_in(here, "alice")
        other = await log_in(there, "alice")
        assert await logged_in(mine) and await logged_in(other)

        page = await mine.get("/account/two-factor/app")
        secret = SECRET.search(page.text)
        assert secret, page.text
        app = pyotp.TOTP(secret.group(1).replace(" ", ""))
        answer = await mine.post("/account/two-factor/app", {"code": app.now()})
        assert answer.status_code == 200, answer.text
        codes = RECOVERY.findall(answer.text)
        assert len(codes) == 10 and ENDED in answer.text
        # This session goes on, with its CSRF token; the other one has ended.
        assert not await logged_in(other)
        assert await logged_in(mine)
        made = await mine.post("/account/two-factor/recovery-codes")
        assert made.status_code == 200 and len(RECOVERY.findall(made.text)) == 10
        codes = RECOVERY.findall(made.text)

        # Logged in again there, with the second factor: the first passkey ends it again.
        other = await log_in(there, "alice", code=app.at(time.time() + 30))
        assert await logged_in(other)
        assert ENDED in await add_passkey(mine, "YubiKey")
        assert not await logged_in(other)
        assert await logged_in(mine)

        # A second passkey is no new kind of factor: other sessions go on.
        other = await log_in(there, "alice", code=codes[0])
        assert ENDED not in await add_passkey(mine, "Laptop")
        assert await logged_in(other) and await logged_in(mine)


async def test_a_passkey_as_the_only_factor_ends_the_other_sessions(
    pages_store: Store,
) -> None:
    store = pages_store
    async with pages_client(store) as here, pages_client(store) as there:
        mine = await log_in(here, "bob")
        other = await log_in(there, "bob")
        shown = await add_passkey(mine, "Phone")
        assert ENDED in shown and "Vos autres sessions" not in shown
        assert not await logged_in(other)
        assert await logged_in(mine)
        # There, the password alone opens nothing now: the second step is asked.
        answer = await password_step(there, "bob")
        assert answer.headers["location"].startswith("/login/two-factor")
        assert not await logged_in(other)


async def test_the_store_ends_sessions_on_a_new_kind_of_factor_only(store: Store) -> None:
    async with store.write() as conn:
        alice = (await admins.create(conn, "test", username="alice", password=PASSWORD))["id"]
        bob = (await admins.create(conn, "test", username="bob", password=PASSWORD))["id"]
        start = await admins.session_generation(conn, alice)
        secret = await twofactor.start_totp(conn, alice)
        # Waiting for its first code, the app is not in effect: nothing ends.
        assert await admins.session_generation(conn, alice) == start
        valid = {totp.code_at(secret, totp.time_step() + delta) for delta in (-2, -1, 0, 1, 2)}
        wrong = next(code for code in ("000000", "111111", "222222") if code not in valid)
        with pytest.raises(twofactor.CodeRefused):
            await twofactor.confirm_totp(conn, "test", alice, wrong)
        assert await admins.session_generation(conn, alice) == start
        await twofactor.confirm_totp(conn, "test", alice,
                                     totp.code_at(secret, totp.time_step()))
        assert await admins.session_generation(conn, alice) == start + 1
        for index in range(2):
            await twofactor.add_passkey(conn, "test", alice, name=f"key {index}",
                                        credential_id=f"YWxpY2Ut{index}",
                                        public_key="pQECAyYgASFYIGNvc2U", sign_count=0)
        assert await admins.session_generation(conn, alice) == start + 2
        # Another admin's sessions are theirs.
        assert await admins.session_generation(conn, bob) == start
