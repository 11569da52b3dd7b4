"""What export format versions 2 and 3 added (admins' language and second factors, domains' app
password rule and self-service switches, mailboxes' vacation replies and app passwords, the
forwarding stored as aliases, and in version 3 the owners' authenticator apps and their
recovery codes) survives an export and an import into PostgreSQL and SQLite row for row, and
still works there; version 1 and 2 documents still import; a wrong value of any of them is
named, and nothing is written."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import jsonschema
import pytest
import sqlalchemy as sa

from dinomail import migrate, totp
from dinomail.schema import (
    admin,
    adminpasskey,
    adminrecoverycode,
    admintotp,
    apppassword,
    auditlog,
    dkimretiring,
    domainselfservice,
    mailboxrecoverycode,
    mailboxtotp,
    vacation,
    virtualalias,
    virtualdomain,
    virtualuser,
)
from dinomail.store import EVERYTHING, Store, admins, dns, ownerlogin, twofactor
from dinomail.store.common import aware
from dinomail.transfer import document
from dinomail.transfer.export import export_document
from dinomail.transfer.importer import ImportRefused, import_document
from tests.conftest import new_postgres_database
from tests.support.adminapi import PASSWORD, fast_admin_hashing
from tests.support.cli import dinomail
from tests.support.lookupd import running_lookupd
from tests.support.postgres import PostgresServer
from tests.support.transfer_data import (
    APP_PASSWORD_MAILBOX,
    Extras,
    fill_everything,
    fill_extras,
)


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


async def export_json(store: Store) -> dict[str, Any]:
    return json.loads("".join([piece async for piece in export_document(store)]))


def _moment(value: datetime | None) -> datetime | None:
    return None if value is None else aware(value)


async def extra_rows(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """The rows the version 2 and 3 fields come from, by names rather than ids, times made
    aware."""
    owner = admin.c.username
    email = virtualuser.c.email
    async with store.read() as conn:
        async def rows(query: sa.Select) -> list[tuple[Any, ...]]:
            found = [tuple(_moment(value) if isinstance(value, datetime) else value
                           for value in row) for row in await conn.execute(query)]
            return sorted(found, key=repr)

        return {
            "admins": await rows(sa.select(owner, admin.c.language, admin.c.read_only)),
            "totp": await rows(
                sa.select(owner, admintotp.c.secret, admintotp.c.created_at,
                          admintotp.c.confirmed_at, admintotp.c.last_step)
                .join_from(admintotp, admin)),
            "passkeys": await rows(
                sa.select(owner, adminpasskey.c.name, adminpasskey.c.credential_id,
                          adminpasskey.c.public_key, adminpasskey.c.sign_count,
                          adminpasskey.c.created_at, adminpasskey.c.last_used_at)
                .join_from(adminpasskey, admin)),
            "recovery_codes": await rows(
                sa.select(owner, adminrecoverycode.c.code_hash, adminrecoverycode.c.used_at)
                .join_from(adminrecoverycode, admin)),
            "domains": await rows(
                sa.select(virtualdomain.c.name, virtualdomain.c.require_app_passwords)),
            "self_service": await rows(
                sa.select(virtualdomain.c.name, domainselfservice.c.self_service,
                          domainselfservice.c.external_forwarding)
                .join_from(domainselfservice, virtualdomain)),
            "vacation": await rows(
                sa.select(email, vacation.c.enabled, vacation.c.subject, vacation.c.body,
                          vacation.c.starts, vacation.c.ends, vacation.c.interval_days)
                .join_from(vacation, virtualuser)),
            "app_passwords": await rows(
                sa.select(email, apppassword.c.name, apppassword.c.protocols,
                          apppassword.c.password, apppassword.c.created,
                          apppassword.c.last_used)
                .join_from(apppassword, virtualuser)),
            "aliases": await rows(sa.select(virtualalias.c.source, virtualalias.c.destination)),
            "owner_totp": await rows(
                sa.select(email, mailboxtotp.c.secret, mailboxtotp.c.created_at,
                          mailboxtotp.c.confirmed_at, mailboxtotp.c.last_step)
                .join_from(mailboxtotp, virtualuser)),
            "owner_recovery_codes": await rows(
                sa.select(email, mailboxrecoverycode.c.code_hash, mailboxrecoverycode.c.used_at)
                .join_from(mailboxrecoverycode, virtualuser)),
            "dkim_retiring": await rows(
                sa.select(virtualdomain.c.name, dkimretiring.c.selector,
                          dkimretiring.c.algorithm, dkimretiring.c.public_key,
                          dkimretiring.c.replaced_at)
                .join_from(dkimretiring, virtualdomain)),
        }


async def filled_source(tmp_path: Path) -> tuple[dict[str, Any], Extras, dict[str, Any]]:
    """An SQLite installation with every version 2 and 3 item: its export, secrets and rows."""
    store = Store(f"sqlite:///{tmp_path / 'source.sqlite3'}")
    await migrate.upgrade(store.engine)
    try:
        extras = await fill_extras(store, await fill_everything(store))
        return await export_json(store), extras, await extra_rows(store)
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def target_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'target.sqlite3'}"
        store = Store(url)
        await migrate.upgrade(store.engine)
        await store.close()
        return url
    return new_postgres_database(request.getfixturevalue("postgres"))


def test_the_document_carries_every_new_item() -> None:
    # The names the exporter writes are those the schema describes.
    defs = document.schema()["$defs"]
    for section, kind in (("domains", "domain"), ("mailboxes", "mailbox"), ("admins", "admin")):
        for name in (*document.VERSION_2_FIELDS[section],
                     *document.VERSION_3_FIELDS.get(section, ())):
            assert name in defs[kind]["properties"], (kind, name)
            assert name not in defs[kind]["required"]


async def test_round_trip_keeps_every_row(
    store: Store, postgres: PostgresServer, tmp_path: Path
) -> None:
    extras = await fill_extras(store, await fill_everything(store))
    doc = await export_json(store)
    before = await extra_rows(store)
    jsonschema.validate(doc, document.schema())
    assert doc["version"] == 3
    root = next(row for row in doc["admins"] if row["username"] == "root")
    assert root["language"] == "fr" and root["totp"]["secret"] == extras.totp_secret
    assert [key["name"] for key in root["passkeys"]] == ["YubiKey", "Laptop"]
    assert sum(code["used_at"] is not None for code in root["recovery_codes"]) == 1
    tenant = next(row for row in doc["admins"] if row["username"] == "tenant")
    assert tenant["totp"]["confirmed_at"] is None and "language" not in tenant
    alice = next(row for row in doc["mailboxes"] if row["email"] == APP_PASSWORD_MAILBOX)
    assert alice["vacation"]["starts"] == "2026-12-20"
    assert [(p["name"], p["protocols"]) for p in alice["app_passwords"]] == [
        ("phone", ["imap", "smtp"]), ("old laptop", ["pop3", "sieve"])]
    assert extras.app_password not in json.dumps(doc)  # hashes only
    assert alice["totp"]["secret"] == extras.owner_totp_secret
    assert alice["totp"]["last_step"] == totp.time_step(extras.totp_confirmed_at)
    assert len(alice["recovery_codes"]) == 10
    assert sum(code["used_at"] is not None for code in alice["recovery_codes"]) == 1
    assert not any(code in json.dumps(doc) for code in extras.owner_recovery_codes)
    bob = next(row for row in doc["mailboxes"] if row["email"] == "bob@example.org")
    assert bob["totp"]["confirmed_at"] is None and bob["totp"]["last_step"] is None
    assert "recovery_codes" not in bob
    example = next(row for row in doc["domains"] if row["name"] == "example.org")
    assert example["require_app_passwords"] is True
    assert example["self_service"] == {"self_service": True, "external_forwarding": False}
    # Newest first; the current selector is the domain's own.
    assert [(key["selector"], key["algorithm"]) for key in example["dkim_retiring"]] == [
        ("dm202701", "rsa"), ("dm202612", "ed25519")]
    assert example["dkim"]["selector"] == example["dkim_key_name"] == "dm202702"
    # Nothing there for the objects without them: documents stay as they were.
    dormant = next(row for row in doc["domains"] if row["name"] == "dormant.org")
    assert not set(document.VERSION_2_FIELDS["domains"]) & set(dormant)
    assert len(before["passkeys"]) == 2 and len(before["app_passwords"]) == 2
    assert len(before["dkim_retiring"]) == 2 and len(before["owner_totp"]) == 2
    assert ("bob@example.org", "dan@dormant.org") in before["aliases"]

    sqlite = Store(f"sqlite:///{tmp_path / 'target.sqlite3'}")
    await migrate.upgrade(sqlite.engine)
    for target in (Store(new_postgres_database(postgres)), sqlite):
        try:
            report = await import_document(target, doc)
            assert not report.errors
            assert await extra_rows(target) == before
            async with target.write() as conn:
                root_id = (await admins.get_by_username(conn, "root"))["id"]
                tenant_id = (await admins.get_by_username(conn, "tenant"))["id"]
                # Still the second factor of the login; the unconfirmed one is still not.
                assert await twofactor.is_enabled(conn, root_id)
                assert not await twofactor.is_enabled(conn, tenant_id)
                spent = totp.code_at(extras.totp_secret, totp.time_step(extras.totp_confirmed_at))
                assert not await twofactor.check_totp(conn, root_id, spent,
                                                      at=extras.totp_confirmed_at)
                assert await twofactor.check_totp(
                    conn, root_id, totp.code_at(extras.totp_secret, totp.time_step()))
                assert not await twofactor.use_recovery_code(conn, "t", root_id,
                                                             extras.recovery_codes[0])
                assert await twofactor.use_recovery_code(conn, "t", root_id,
                                                         extras.recovery_codes[1])
                assert await admins.authenticate(conn, "root", PASSWORD) is not None
                # The owner's app too: in effect, its spent code still spent.
                alice_id = await conn.scalar(sa.select(virtualuser.c.id).where(
                    virtualuser.c.email == APP_PASSWORD_MAILBOX))
                assert alice_id is not None and await ownerlogin.totp_enabled(conn, alice_id)
                owner_spent = totp.code_at(extras.owner_totp_secret,
                                           totp.time_step(extras.totp_confirmed_at))
                assert not await ownerlogin.check_totp(conn, alice_id, owner_spent,
                                                       at=extras.totp_confirmed_at)
                assert await ownerlogin.check_totp(
                    conn, alice_id, totp.code_at(extras.owner_totp_secret, totp.time_step()))
                # Its recovery codes: the one used before the export still used.
                assert await ownerlogin.recovery_codes_left(conn, alice_id) == 9
                assert not await ownerlogin.check_code(conn, "t", alice_id,
                                                       extras.owner_recovery_codes[0])
                assert await ownerlogin.check_code(conn, "t", alice_id,
                                                   extras.owner_recovery_codes[1])
        finally:
            await target.close()


async def test_a_restored_app_password_opens_its_protocols(
    target_url: str, tmp_path: Path
) -> None:
    doc, extras, _ = await filled_source(tmp_path)
    store = Store(target_url)
    try:
        await import_document(store, doc)
        (tmp_path / "lookupd").mkdir()
        async with running_lookupd(store, tmp_path / "lookupd") as (_, settings), \
                httpx.AsyncClient(base_url=f"http://{settings.LOOKUPD_HTTP_LISTEN}") as http:

            async def verify(password: str, service: str) -> object:
                answer = await http.post(
                    "/dovecot/verify",
                    content=urlencode({"user": APP_PASSWORD_MAILBOX, "password": password,
                                       "service": service}),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
                assert answer.status_code == 200
                return answer.json()["result"]

            assert await verify(extras.app_password, "imap") == "ok"
            assert await verify(extras.app_password, "submission") == "ok"
            assert await verify("wrong-wrong-wrong", "imap") == "mismatch"
            # The domain still requires app passwords: the main password opens no protocol.
            assert await verify(PASSWORD, "imap") == "mismatch"
    finally:
        await store.close()


def _older(doc: dict[str, Any], version: int) -> dict[str, Any]:
    """`doc` as a DinoMail writing `version` would have written it: without later fields."""
    old = copy.deepcopy(doc)
    old["version"] = version
    for since, fields in document.FIELDS_SINCE.items():
        if since <= version:
            continue
        for section, names in fields.items():
            for row in old[section]:
                for name in names:
                    row.pop(name, None)
    return old


async def test_a_version_1_document_still_imports(target_url: str, tmp_path: Path) -> None:
    doc, _, source_rows = await filled_source(tmp_path)
    old = _older(doc, 1)
    jsonschema.validate(old, document.schema())
    store = Store(target_url)
    try:
        report = await import_document(store, old)
        assert not report.errors and report.created["mailboxes"] == 6
        rows = await extra_rows(store)
        assert rows["aliases"] == source_rows["aliases"]  # forwarding was aliases already
        assert [rows[name] for name in ("totp", "passkeys", "recovery_codes", "self_service",
                                        "vacation", "app_passwords", "dkim_retiring",
                                        "owner_totp", "owner_recovery_codes")] == [[]] * 9
        assert {language for _, language, _ in rows["admins"]} == {None}

        # Updating from it leaves what version 1 cannot say as it is: no lost second factor.
        await import_document(store, doc, on_conflict="update")
        assert await extra_rows(store) == source_rows
        await import_document(store, old, on_conflict="update")
        assert await extra_rows(store) == source_rows
        # A document of the current version says it all: an admin without a TOTP loses it.
        root = next(row for row in doc["admins"] if row["username"] == "root")
        del root["totp"]
        await import_document(store, doc, on_conflict="update")
        assert [row[0] for row in (await extra_rows(store))["totp"]] == ["tenant"]

        with pytest.raises(ImportRefused) as refused:
            await import_document(store, {**old, "mailboxes": [
                {**old["mailboxes"][0], "vacation": None}]})
        assert str(refused.value) == (
            "$.mailboxes[0].vacation: is a field of version 2 documents, not version 1")
        with pytest.raises(ImportRefused) as refused:
            await import_document(store, {**old, "mailboxes": [
                {**old["mailboxes"][0], "totp": None}]})
        assert str(refused.value) == (
            "$.mailboxes[0].totp: is a field of version 3 documents, not version 1")
        with pytest.raises(ImportRefused) as refused:
            await import_document(store, {**old, "version": 4})
        assert str(refused.value) == (
            "$.version: version 4 is not one this DinoMail reads (1, 2, 3)")
    finally:
        await store.close()


async def test_a_version_2_document_still_imports(target_url: str, tmp_path: Path) -> None:
    doc, _, source_rows = await filled_source(tmp_path)
    old = _older(doc, 2)
    jsonschema.validate(old, document.schema())
    assert all("totp" not in row for row in old["mailboxes"])
    store = Store(target_url)
    try:
        report = await import_document(store, old)
        assert not report.errors and report.created["mailboxes"] == 6
        rows = await extra_rows(store)
        # Everything but the owners' apps and their codes, which version 2 did not carry.
        assert rows["owner_totp"] == rows["owner_recovery_codes"] == []
        assert {**rows, "owner_totp": source_rows["owner_totp"],
                "owner_recovery_codes": source_rows["owner_recovery_codes"]} == source_rows

        # Updating from it leaves the owners' apps as they are: no owner loses one.
        await import_document(store, doc, on_conflict="update")
        assert await extra_rows(store) == source_rows
        await import_document(store, old, on_conflict="update")
        assert await extra_rows(store) == source_rows
        # A version 3 document says it all: a mailbox without a TOTP loses it.
        _, alice = _find(doc, "mailboxes", "email", APP_PASSWORD_MAILBOX)
        # Recovery codes come with an app: not without it.
        del alice["totp"]
        with pytest.raises(ImportRefused) as refused:
            await import_document(store, doc, on_conflict="update")
        assert str(refused.value).endswith(
            ".recovery_codes: come with an authenticator app: give its totp too")
        del alice["recovery_codes"]
        await import_document(store, doc, on_conflict="update")
        rows = await extra_rows(store)
        assert [row[0] for row in rows["owner_totp"]] == ["bob@example.org"]
        assert rows["owner_recovery_codes"] == []

        with pytest.raises(ImportRefused) as refused:
            await import_document(store, {**old, "mailboxes": [
                {**old["mailboxes"][0], "totp": None}]})
        assert str(refused.value) == (
            "$.mailboxes[0].totp: is a field of version 3 documents, not version 2")
        with pytest.raises(ImportRefused) as refused:
            await import_document(store, {**old, "mailboxes": [
                {**old["mailboxes"][0], "recovery_codes": []}]})
        assert str(refused.value) == (
            "$.mailboxes[0].recovery_codes: is a field of version 3 documents, not version 2")
    finally:
        await store.close()


def _find(doc: dict[str, Any], section: str, key: str, value: str) -> tuple[int, dict[str, Any]]:
    return next((index, row) for index, row in enumerate(doc[section]) if row[key] == value)


# (where, field path below the row, the value, what the refusal's path ends with)
BAD_VALUES: list[tuple[str, str, Any, str]] = [
    ("root", "language", "de", "language"),
    ("root", "totp.secret", "not base32!", "totp.secret"),
    ("root", "totp.confirmed_at", "yesterday", "totp.confirmed_at"),
    ("root", "totp.created_at", "2026-12-06T04:30:00", "totp.created_at"),
    ("root", "totp.last_step", -1, "totp.last_step"),
    ("root", "passkeys.0.credential_id", "not base64url!", "passkeys[0].credential_id"),
    ("root", "passkeys.0.public_key", "", "passkeys[0].public_key"),
    ("root", "passkeys.0.sign_count", "many", "passkeys[0].sign_count"),
    ("root", "passkeys.1.name", "YubiKey", "passkeys[1].name"),
    ("root", "passkeys.0.last_used_at", 5, "passkeys[0].last_used_at"),
    ("root", "passkeys.0.created_at", None, "passkeys[0].created_at"),
    ("root", "totp", "JBSWY3DPEHPK3PXP", "totp"),
    ("root", "recovery_codes.0.code_hash", "ABC", "recovery_codes[0].code_hash"),
    ("root", "recovery_codes.0.used_at", "soon", "recovery_codes[0].used_at"),
    ("example.org", "require_app_passwords", "yes", "require_app_passwords"),
    ("example.org", "self_service.external_forwarding", None,
     "self_service.external_forwarding"),
    ("example.org", "self_service.colour", True, "self_service.colour"),
    ("example.org", "self_service.self_service", 1, "self_service.self_service"),
    ("example.org", "self_service", [], "self_service"),
    ("example.org", "dkim_retiring.0.selector", "dm_2027", "dkim_retiring[0].selector"),
    ("example.org", "dkim_retiring.0.selector", "DM202702", "dkim_retiring[0].selector"),
    ("example.org", "dkim_retiring.1.selector", "dm202701", "dkim_retiring[1].selector"),
    ("example.org", "dkim_retiring.0.algorithm", "dsa", "dkim_retiring[0].algorithm"),
    ("example.org", "dkim_retiring.0.public_key", "not base64!", "dkim_retiring[0].public_key"),
    ("example.org", "dkim_retiring.1.public_key", "AAAA", "dkim_retiring[1].public_key"),
    ("example.org", "dkim_retiring.0.public_key", None, "dkim_retiring[0].public_key"),
    ("example.org", "dkim_retiring.0.replaced_at", "yesterday", "dkim_retiring[0].replaced_at"),
    ("example.org", "dkim_retiring.0.private_key", "x", "dkim_retiring[0].private_key"),
    ("example.org", "dkim_retiring", {"dm202701": 1}, "dkim_retiring"),
    ("alice", "vacation.interval_days", 99, "vacation.interval_days"),
    ("alice", "vacation.enabled", "yes", "vacation.enabled"),
    ("alice", "vacation.starts", "tomorrow", "vacation.starts"),
    ("alice", "vacation.ends", "2026-13-01", "vacation.ends"),
    ("alice", "vacation.ends", "2026-12-01", "vacation.ends"),  # before the first day
    ("alice", "vacation.body", "", "vacation.body"),  # required while enabled
    ("alice", "vacation.subject", "x" * 256, "vacation.subject"),
    ("alice", "app_passwords.0.protocols", ["imap", "ftp"], "app_passwords[0].protocols"),
    ("alice", "app_passwords.0.protocols", "imap", "app_passwords[0].protocols"),
    ("alice", "app_passwords.0.password", "plain text", "app_passwords[0].password"),
    ("alice", "app_passwords.0.name", "", "app_passwords[0].name"),
    ("alice", "app_passwords.1.name", "phone", "app_passwords[1].name"),
    ("alice", "app_passwords.0.created", None, "app_passwords[0].created"),
    ("alice", "app_passwords.0.last_used", "2026-02-30T00:00:00Z",
     "app_passwords[0].last_used"),
    ("alice", "app_passwords", {"phone": 1}, "app_passwords"),
    ("alice", "totp.secret", "JBSWY3DP", "totp.secret"),  # too short
    ("alice", "totp.last_step", "soon", "totp.last_step"),
    ("alice", "totp.confirmed_at", "2026-12-06", "totp.confirmed_at"),
    ("alice", "totp.colour", "red", "totp.colour"),
    ("alice", "totp", ["JBSWY3DPEHPK3PXP"], "totp"),
]


def _spoil(doc: dict[str, Any], where: str, path: str, value: Any) -> str:
    """Put `value` at `path` of the row `where`; the JSON path of that row."""
    if where == "root":
        index, row = _find(doc, "admins", "username", "root")
        prefix = f"$.admins[{index}]"
    elif where == "alice":
        index, row = _find(doc, "mailboxes", "email", APP_PASSWORD_MAILBOX)
        prefix = f"$.mailboxes[{index}]"
    else:
        index, row = _find(doc, "domains", "name", where)
        prefix = f"$.domains[{index}]"
    *parents, last = path.split(".")
    target: Any = row
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return prefix


async def _counts(url: str) -> list[int]:
    store = Store(url)
    try:
        async with store.read() as conn:
            return [await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0
                    for table in (virtualdomain, virtualuser, admin, admintotp, adminpasskey,
                                  adminrecoverycode, domainselfservice, vacation, apppassword,
                                  auditlog, dkimretiring, mailboxtotp)]
    finally:
        await store.close()


async def test_each_wrong_new_value_is_named_and_nothing_is_written(
    target_url: str, tmp_path: Path
) -> None:
    doc, _, _ = await filled_source(tmp_path)
    store = Store(target_url)
    try:
        for where, path, value, expected in BAD_VALUES:
            spoiled = copy.deepcopy(doc)
            prefix = _spoil(spoiled, where, path, value)
            with pytest.raises(ImportRefused) as refused:
                await import_document(store, spoiled)
            # The first refusal names the value (a refused domain refuses its mailboxes too).
            first = refused.value.errors[0]
            assert first.path == f"{prefix}.{expected}", (path, first)
            assert "\n" not in str(first) and first.message
    finally:
        await store.close()
    assert await _counts(target_url) == [0] * 12


async def test_the_command_refuses_a_wrong_value_in_one_line(tmp_path: Path) -> None:
    doc, _, _ = await filled_source(tmp_path)
    url = f"sqlite:///{tmp_path / 'target.sqlite3'}"
    env = {"DINOMAIL_DATABASE_URL": url}
    assert dinomail("migrate", env=env).returncode == 0
    path = tmp_path / "doc.json"
    for where, field, value, message in (
        ("root", "totp.secret", "0000", "must be a base32 secret"),
        ("alice", "vacation.interval_days", 0, "must be between 1 and 30 days"),
    ):
        spoiled = copy.deepcopy(doc)
        prefix = _spoil(spoiled, where, field, value)
        path.write_text(json.dumps(spoiled))
        result = dinomail("import", str(path), env=env)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.startswith(f"dinomail: error: {prefix}.{field}: {message}")
        assert result.stderr.endswith("; nothing was imported\n")
        assert result.stderr.count("\n") == 1
    assert await _counts(url) == [0] * 12


async def test_a_passkey_of_another_admin_here_is_refused(target_url: str, tmp_path: Path) -> None:
    doc, _, _ = await filled_source(tmp_path)
    store = Store(target_url)
    try:
        await import_document(store, doc)
        before = await extra_rows(store)
        _, root = _find(doc, "admins", "username", "root")
        other = {**root, "username": "someone", "api_keys": [], "recovery_codes": []}
        del other["totp"]
        with pytest.raises(ImportRefused) as refused:
            await import_document(store, {**doc, "admins": [other]}, on_conflict="skip")
        assert str(refused.value) == (
            "$.admins[0].passkeys[0].credential_id: this passkey belongs to another admin here")
        # Root itself, updated, keeps its passkeys.
        await import_document(store, {**doc, "admins": [root]}, on_conflict="update")
        # Given twice in one document: refused before the database is asked.
        with pytest.raises(ImportRefused) as refused:
            await import_document(store, {**doc, "domains": [], "alias_domains": [],
                                          "mailboxes": [], "aliases": [],
                                          "admins": [{**other, "username": "a"},
                                                     {**other, "username": "b"}]})
        assert str(refused.value) == (
            "$.admins[1].passkeys[0].credential_id: this passkey is given twice")
        assert await extra_rows(store) == before
    finally:
        await store.close()


async def test_retiring_dkim_selectors_are_replaced_whole_on_update(
    target_url: str, tmp_path: Path
) -> None:
    doc, _, source_rows = await filled_source(tmp_path)
    store = Store(target_url)
    try:
        await import_document(store, doc)
        assert (await extra_rows(store))["dkim_retiring"] == source_rows["dkim_retiring"]
        index, example = _find(doc, "domains", "name", "example.org")
        newer = copy.deepcopy(doc)
        newer["domains"][index]["dkim_retiring"] = example["dkim_retiring"][:1]
        # Skipped, the domain keeps both; updated, it has only the one of the document.
        await import_document(store, newer, on_conflict="skip")
        assert len((await extra_rows(store))["dkim_retiring"]) == 2
        await import_document(store, newer, on_conflict="update")
        assert [row[1] for row in (await extra_rows(store))["dkim_retiring"]] == ["dm202701"]
        del newer["domains"][index]["dkim_retiring"]
        await import_document(store, newer, on_conflict="update")
        assert (await extra_rows(store))["dkim_retiring"] == []
        # Restored, a retiring selector is still one the DNS page can retire.
        await import_document(store, doc, on_conflict="update")
        async with store.write() as conn:
            domain_id = await conn.scalar(sa.select(virtualdomain.c.id)
                                          .where(virtualdomain.c.name == "example.org"))
            assert domain_id is not None
            await dns.retire_dkim_selector(conn, "t", EVERYTHING, domain_id, "dm202612")
            assert [row["selector"] for row in await dns.retiring_keys(
                conn, EVERYTHING, domain_id)] == ["dm202701"]
    finally:
        await store.close()
