"""The rules of admins' second factors (`dinomail.store.twofactor`) and of their own password, on
SQLite and PostgreSQL; TOTP codes against pyotp, an independent implementation."""

from __future__ import annotations

import time

import pyotp
import pytest
import sqlalchemy as sa

from dinomail import schema, totp
from dinomail.settings import SettingsError, env_name, load_settings
from dinomail.store import (
    EVERYTHING,
    Conflict,
    Forbidden,
    NotFound,
    Scope,
    Store,
    admins,
    twofactor,
)
from dinomail.validation import ValidationError
from tests.support.adminapi import PASSWORD, fast_admin_hashing


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


async def _admin(store: Store, username: str, *, superadmin: bool = False) -> dict:
    async with store.write() as conn:
        return await admins.create(conn, "test", username=username, password=PASSWORD,
                                   is_superadmin=superadmin)


async def _actions(store: Store) -> list[str]:
    async with store.read() as conn:
        return list(await conn.scalars(
            sa.select(schema.auditlog.c.action).order_by(schema.auditlog.c.id)))


def test_totp_codes_match_pyotp() -> None:
    secret = totp.new_secret()
    reference = pyotp.TOTP(secret)
    now = time.time()
    for offset in (-90, -30, 0, 30, 3600):
        assert totp.code_at(secret, totp.time_step(now + offset)) == reference.at(now + offset)
    step = totp.time_step(now)
    assert totp.matching_step(secret, reference.at(now), at=now) == step
    assert totp.matching_step(secret, reference.at(now - 30), at=now) == step - 1
    assert totp.matching_step(secret, reference.at(now + 30), at=now) == step + 1
    # Two steps away is outside the window; a step already used is refused.
    assert totp.matching_step(secret, reference.at(now - 60), at=now) is None
    assert totp.matching_step(secret, reference.at(now), at=now, after=step) is None
    assert totp.matching_step(secret, "12345", at=now) is None
    assert totp.matching_step(secret, "abcdef", at=now) is None
    uri = totp.provisioning_uri(secret, "root", "DinoMail")
    parsed = pyotp.parse_uri(uri)
    assert parsed.secret == secret and parsed.issuer == "DinoMail"


async def test_totp_enrolment_and_single_use(store: Store) -> None:
    account = await _admin(store, "alice")
    admin_id = account["id"]
    async with store.write() as conn:
        secret = await twofactor.start_totp(conn, admin_id)
        assert await twofactor.start_totp(conn, admin_id) == secret
        assert not await twofactor.is_enabled(conn, admin_id)
        # A pending app logs nobody in.
        assert not await twofactor.check_totp(conn, admin_id, pyotp.TOTP(secret).now())
    app = pyotp.TOTP(secret)
    now = time.time()
    async with store.write() as conn:
        with pytest.raises(twofactor.CodeRefused) as refused:
            await twofactor.confirm_totp(conn, "test", admin_id, app.at(now - 120), at=now)
        assert refused.value.code == "wrong_code" and refused.value.field == "code"
    async with store.write() as conn:
        await twofactor.confirm_totp(conn, "test", admin_id, app.at(now), at=now)
        assert await twofactor.is_enabled(conn, admin_id)
        with pytest.raises(Conflict) as enrolled:
            await twofactor.start_totp(conn, admin_id)
        assert enrolled.value.code == "totp_enrolled"
    async with store.write() as conn:
        # The code that confirmed the app, and older ones, are spent; the next step's is not.
        assert not await twofactor.check_totp(conn, admin_id, app.at(now), at=now)
        assert not await twofactor.check_totp(conn, admin_id, app.at(now - 30), at=now)
        assert await twofactor.check_totp(conn, admin_id, app.at(now + 30), at=now)
        assert not await twofactor.check_totp(conn, admin_id, app.at(now + 30), at=now)
        await twofactor.remove_totp(conn, "test", admin_id)
        assert not await twofactor.is_enabled(conn, admin_id)
    assert (await _actions(store))[-2:] == ["enable_totp", "remove_totp"]


async def test_recovery_codes_hashed_single_use_regenerated(store: Store) -> None:
    admin_id = (await _admin(store, "alice"))["id"]
    async with store.write() as conn:
        codes = await twofactor.new_recovery_codes(conn, "test", admin_id)
    assert len(codes) == twofactor.RECOVERY_CODE_COUNT == 10
    async with store.read() as conn:
        stored = list(await conn.scalars(sa.select(schema.adminrecoverycode.c.code_hash)))
    assert len(stored) == 10 and not set(codes) & set(stored)
    async with store.write() as conn:
        assert await twofactor.use_recovery_code(conn, "test", admin_id, codes[0].upper())
        assert not await twofactor.use_recovery_code(conn, "test", admin_id, codes[0])
        assert not await twofactor.use_recovery_code(conn, "test", admin_id, "aaaaa-aaaaa")
        assert (await twofactor.status(conn, admin_id)).recovery_left == 9
        again = await twofactor.new_recovery_codes(conn, "test", admin_id)
        assert not await twofactor.use_recovery_code(conn, "test", admin_id, codes[1])
        assert await twofactor.use_recovery_code(conn, "test", admin_id, again[1])


async def test_passkeys_named_per_admin_and_challenges_used_once(store: Store) -> None:
    alice = (await _admin(store, "alice"))["id"]
    bob = (await _admin(store, "bob"))["id"]
    async with store.write() as conn:
        key = await twofactor.add_passkey(conn, "test", alice, name="phone", credential_id="AAA",
                                          public_key="pk", sign_count=0)
        await twofactor.add_passkey(conn, "test", alice, name="laptop", credential_id="BBB",
                                    public_key="pk", sign_count=0)
        await twofactor.add_passkey(conn, "test", bob, name="phone", credential_id="CCC",
                                    public_key="pk", sign_count=0)
    async with store.write() as conn:
        with pytest.raises(Conflict) as named:
            await twofactor.add_passkey(conn, "test", alice, name="phone", credential_id="DDD",
                                        public_key="pk", sign_count=0)
        assert named.value.code == "passkey_name_exists" and named.value.params == {
            "name": "phone"}
    async with store.write() as conn:
        with pytest.raises(ValidationError):
            await twofactor.add_passkey(conn, "test", alice, name=" ", credential_id="EEE",
                                        public_key="pk", sign_count=0)
    async with store.write() as conn:
        # Bob cannot remove Alice's passkey, and learns nothing of it.
        with pytest.raises(NotFound):
            await twofactor.remove_passkey(conn, "test", bob, key["id"])
        assert await twofactor.passkey_for_login(conn, bob, "AAA") is None
        assert (await twofactor.passkey_for_login(conn, alice, "AAA"))["public_key"] == "pk"
        await twofactor.remove_passkey(conn, "test", alice, key["id"])
        assert [row["name"] for row in await twofactor.list_passkeys(conn, alice)] == ["laptop"]

        await twofactor.save_challenge(conn, alice, twofactor.LOGIN, "challenge-1")
        assert not await twofactor.take_challenge(conn, bob, twofactor.LOGIN, "challenge-1")
        assert not await twofactor.take_challenge(conn, alice, twofactor.REGISTER, "challenge-1")
        assert await twofactor.take_challenge(conn, alice, twofactor.LOGIN, "challenge-1")
        assert not await twofactor.take_challenge(conn, alice, twofactor.LOGIN, "challenge-1")
        for number in range(twofactor.MAX_CHALLENGES + 3):
            await twofactor.save_challenge(conn, alice, twofactor.LOGIN, f"c{number}")
        kept = await conn.scalar(sa.select(sa.func.count()).select_from(
            schema.webauthnchallenge))
        assert kept == twofactor.MAX_CHALLENGES


async def test_required_setting(store: Store) -> None:
    root = await _admin(store, "root", superadmin=True)
    alice = await _admin(store, "alice")
    async with store.write() as conn:
        assert not await twofactor.must_enrol(conn, root, "nobody")
        assert await twofactor.must_enrol(conn, root, "superadmins")
        assert not await twofactor.must_enrol(conn, alice, "superadmins")
        assert await twofactor.must_enrol(conn, alice, "all")
        await twofactor.add_passkey(conn, "test", alice["id"], name="key", credential_id="A",
                                    public_key="pk", sign_count=0)
        assert not await twofactor.must_enrol(conn, alice, "all")


async def test_removal_by_superadmin_only_audited(store: Store) -> None:
    alice = (await _admin(store, "alice"))["id"]
    async with store.write() as conn:
        secret = await twofactor.start_totp(conn, alice)
        await twofactor.confirm_totp(conn, "test", alice, pyotp.TOTP(secret).now())
        await twofactor.add_passkey(conn, "test", alice, name="key", credential_id="A",
                                    public_key="pk", sign_count=0)
        await twofactor.new_recovery_codes(conn, "test", alice)
        generation = await admins.session_generation(conn, alice)
    async with store.write() as conn:
        with pytest.raises(NotFound):
            await twofactor.remove_all(conn, "admin:bob", Scope(frozenset({1})), alice)
    async with store.write() as conn:
        assert await twofactor.is_enabled(conn, alice)
        with pytest.raises(NotFound):
            await twofactor.remove_all(conn, "admin:root", EVERYTHING, 999_999)
    async with store.write() as conn:
        await twofactor.remove_all(conn, "admin:root", EVERYTHING, alice)
        left = await twofactor.status(conn, alice)
        assert not left.enabled and left.recovery_left == 0
        assert await admins.session_generation(conn, alice) == generation + 1
        entry = (await conn.execute(sa.select(schema.auditlog).order_by(
            schema.auditlog.c.id.desc()).limit(1))).mappings().one()
    assert entry["actor"] == "admin:root" and entry["action"] == "remove_two_factor"
    assert '"passkeys": ["key"]' in entry["old_values"] and '"totp": true' in entry["old_values"]
    assert secret not in entry["old_values"] + entry["new_values"]


async def test_own_password_change(store: Store) -> None:
    alice = (await _admin(store, "alice"))["id"]
    async with store.write() as conn:
        before = await admins.password_hash(conn, alice)
        generation = await admins.session_generation(conn, alice)
    for current, new, error in (
        ("", "a long new password", ValidationError),
        ("wrong password", "a long new password", Forbidden),
        (PASSWORD, "short", ValidationError),
    ):
        async with store.write() as conn:
            with pytest.raises(error) as refused:
                await admins.change_own_password(conn, "test", alice, current=current, new=new)
        if error is Forbidden:
            assert refused.value.code == "wrong_current_password"  # type: ignore[union-attr]
    async with store.write() as conn:
        assert await admins.password_hash(conn, alice) == before
        await admins.change_own_password(conn, "admin:alice", alice, current=PASSWORD,
                                         new="a long new password")
        assert await admins.session_generation(conn, alice) == generation + 1
        assert await admins.authenticate(conn, "alice", "a long new password") is not None
    assert (await _actions(store))[-1] == "set_password"


@pytest.mark.parametrize(("key", "value"), [
    ("TWO_FACTOR_REQUIRED", "everyone"), ("WEBAUTHN_RP_ID", "not a host"),
])
def test_bad_settings_name_the_key(key: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={env_name(key): value})
    assert caught.value.key == key


def test_good_settings() -> None:
    settings = load_settings(environ={"DINOMAIL_TWO_FACTOR_REQUIRED": "superadmins",
                                      "DINOMAIL_WEBAUTHN_RP_ID": "mail.example.org"})
    assert settings.TWO_FACTOR_REQUIRED == "superadmins"
    assert settings.WEBAUTHN_RP_ID == "mail.example.org"
    assert load_settings(environ={}).TWO_FACTOR_REQUIRED == "nobody"
