"""`dinomail export` and `dinomail import`: a round trip through PostgreSQL and SQLite gives the
same document and the same lookups; a refused row changes nothing and is named; conflicts follow
--on-conflict; the document matches its published JSON Schema."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import sqlalchemy as sa

from dinomail import migrate
from dinomail.schema import auditlog, virtualdomain, virtualuser
from dinomail.store import Store, admins, apikeys
from dinomail.transfer import document
from dinomail.transfer.export import export_document
from dinomail.transfer.importer import ImportRefused, import_document
from tests.conftest import new_postgres_database
from tests.support.adminapi import PASSWORD, api_client, fast_admin_hashing
from tests.support.cli import dinomail
from tests.support.lookupd import running_lookupd, wait_until
from tests.support.mail_data import CASES
from tests.support.postfix import have_postmap, postmap_config, postmap_query_async
from tests.support.postgres import PostgresServer
from tests.support.readme import run_block, shell_blocks
from tests.support.socketmap_client import socketmap_query
from tests.support.transfer_data import fill_everything

pytestmark = pytest.mark.skipif(not have_postmap(), reason="postfix is not installed")


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


async def export_json(store: Store, domains: tuple[str, ...] = ()) -> dict[str, Any]:
    return json.loads("".join([piece async for piece in export_document(store, domains)]))


def without_date(doc: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in doc.items() if key != "exported_at"}


async def fresh_stores(postgres: PostgresServer, tmp_path: Path) -> list[Store]:
    sqlite = Store(f"sqlite:///{tmp_path / 'target.sqlite3'}")
    await migrate.upgrade(sqlite.engine)
    return [Store(new_postgres_database(postgres)), sqlite]


async def lookups(store: Store, tmp_path: Path, logins: list[str]) -> dict[str, Any]:
    """What Postfix (real postmap through socketmap) and Dovecot (passdb and userdb over the
    daemon's HTTP) are told, for every rule of the lookup tests and every login."""
    answers: dict[str, Any] = {}
    (tmp_path / "lookupd").mkdir(parents=True)
    config = postmap_config(tmp_path / "postfix")
    async with running_lookupd(store, tmp_path / "lookupd") as (_, settings):
        for name, key, _ in CASES:
            table = f"socketmap:inet:{settings.SOCKETMAP_LISTEN}:{name}"
            answers[f"{name} {key}"] = await postmap_query_async(config, key, table)
        async with httpx.AsyncClient(base_url=f"http://{settings.LOOKUPD_HTTP_LISTEN}") as http:
            for login in logins:
                for kind in ("passdb", "userdb"):
                    response = await http.get(f"/dovecot/{kind}/{login}")
                    answers[f"{kind} {login}"] = (response.status_code, response.text)
    return answers


async def test_round_trip_through_postgresql_and_sqlite(
    store: Store, postgres: PostgresServer, tmp_path: Path
) -> None:
    filled = await fill_everything(store)
    doc = await export_json(store)
    jsonschema.validate(doc, document.schema())
    assert (doc["format"], doc["version"]) == ("dinomail-export", 3)
    example = next(row for row in doc["domains"] if row["name"] == "example.org")
    assert example["dkim"]["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert example["client_config"]["mx_host"] == "mx.example.org"
    assert example["send_limits"]["reply"] == "DEFER_IF_PERMIT 4.7.1 slow down"
    frank = next(row for row in doc["mailboxes"] if row["email"] == "frank@example.org")
    assert frank["password"].startswith("{SHA512-CRYPT}$6$")
    assert frank["send_limits"]["messages_per_day"] == 50
    tenant = next(row for row in doc["admins"] if row["username"] == "tenant")
    assert tenant["domains"] == ["example.org", "xn--bcher-kva.example"]
    assert [key["read_only"] for key in tenant["api_keys"]] == [True]  # the revoked one is out
    assert all(row["password"].startswith("$argon2") for row in doc["admins"])

    logins = [row["email"] for row in doc["mailboxes"]] + ["nobody@example.org"]
    before = await lookups(store, tmp_path / "source", logins)
    assert before["passdb alice@example.org"][0] == 200
    for index, target in enumerate(await fresh_stores(postgres, tmp_path)):
        try:
            report = await import_document(target, doc)
            assert report.created == {"domains": 3, "alias_domains": 1, "mailboxes": 6,
                                      "aliases": 3, "admins": 2}
            assert not report.errors
            assert without_date(await export_json(target)) == without_date(doc)
            assert await lookups(target, tmp_path / f"target{index}", logins) == before
            async with target.write() as conn:
                assert await admins.authenticate(conn, "tenant", PASSWORD) is not None
                assert await apikeys.authenticate(conn, filled.tenant_key,
                                                  username="tenant") is not None
                assert await apikeys.authenticate(conn, filled.root_key) is not None
                assert await apikeys.authenticate(conn, filled.revoked_key) is None
        finally:
            await target.close()


async def test_export_of_some_domains_and_the_cli_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'source.sqlite3'}"
    store = Store(url)
    await migrate.upgrade(store.engine)
    try:
        await fill_everything(store)
    finally:
        await store.close()
    env = {"DINOMAIL_DATABASE_URL": url}
    out = tmp_path / "example.json"
    result = dinomail("export", "-o", str(out), "--domain", "Example.ORG", env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, document.schema())
    assert [row["name"] for row in doc["domains"]] == ["example.org"]
    assert [row["name"] for row in doc["alias_domains"]] == ["example.net"]
    assert {row["email"].split("@")[1] for row in doc["mailboxes"]} == {"example.org"}
    # Superadmins are not a domain's; the domain admin keeps only the exported domain.
    assert [(row["username"], row["domains"]) for row in doc["admins"]] == [
        ("tenant", ["example.org"])]

    whole = dinomail("export", env=env)
    assert whole.returncode == 0 and len(json.loads(whole.stdout)["domains"]) == 3
    unknown = dinomail("export", "-o", str(tmp_path / "x.json"), "--domain", "nowhere.org",
                       env=env)
    assert unknown.returncode == 2
    assert unknown.stderr == "dinomail: error: --domain nowhere.org: no such domain\n"
    assert not (tmp_path / "x.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dinomail")] == []


@pytest.fixture
async def exported(tmp_path: Path) -> dict[str, Any]:
    store = Store(f"sqlite:///{tmp_path / 'source.sqlite3'}")
    await migrate.upgrade(store.engine)
    try:
        await fill_everything(store)
        return await export_json(store)
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


async def counts(url: str) -> tuple[int, int, int]:
    store = Store(url)
    try:
        async with store.read() as conn:
            return tuple([  # type: ignore[return-value]
                await conn.scalar(sa.select(sa.func.count()).select_from(table))
                for table in (virtualdomain, virtualuser, auditlog)
            ])
    finally:
        await store.close()


async def test_a_bad_row_is_named_and_nothing_is_written(
    exported: dict[str, Any], target_url: str, tmp_path: Path
) -> None:
    exported["mailboxes"][3]["email"] = "not an address"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(exported))
    env = {"DINOMAIL_DATABASE_URL": target_url}
    result = dinomail("import", str(path), env=env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert result.stderr.startswith("dinomail: error: $.mailboxes[3].email: ")
    assert result.stderr.endswith("nothing was imported\n")
    assert await counts(target_url) == (0, 0, 0)

    dry = dinomail("import", "--dry-run", str(path), env=env)
    assert dry.returncode == 2
    assert "Dry run: nothing was changed." in dry.stdout
    assert "mailboxes              5         0         0         1" in dry.stdout
    assert "refused: $.mailboxes[3].email" in dry.stderr
    assert await counts(target_url) == (0, 0, 0)


async def test_dry_run_then_import_then_conflicts(
    exported: dict[str, Any], target_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(exported))
    env = {"DINOMAIL_DATABASE_URL": target_url}
    dry = dinomail("import", "--dry-run", str(path), env=env)
    assert (dry.returncode, dry.stderr) == (0, "")
    assert "mailboxes              6         0         0         0" in dry.stdout
    assert await counts(target_url) == (0, 0, 0)

    done = dinomail("import", str(path), env=env)
    assert (done.returncode, done.stderr) == (0, "")
    assert "mailboxes              6         0         0         0" in done.stdout
    assert await counts(target_url) == (3, 6, 1)  # one audit entry for the whole import

    again = dinomail("import", str(path), env=env)
    assert again.returncode == 2
    assert again.stderr.startswith(
        "dinomail: error: $.domains[0]: the domain example.org exists already "
        "(--on-conflict fail)")
    assert await counts(target_url) == (3, 6, 1)

    skip = dinomail("import", "--on-conflict", "skip", str(path), env=env)
    assert skip.returncode == 0
    assert "mailboxes              0         0         6         0" in skip.stdout

    # One mailbox changed in the document, one new: update replaces and adds.
    exported["mailboxes"][0]["quota"] = 1234
    exported["mailboxes"][0]["send_limits"] = {
        "messages_per_hour": 7, "messages_per_day": None, "recipients_per_hour": None,
        "recipients_per_day": None}
    exported["mailboxes"].append({**exported["mailboxes"][1], "email": "new@example.org"})
    path.write_text(json.dumps(exported))
    update = dinomail("import", "--on-conflict", "update", str(path), env=env)
    assert (update.returncode, update.stderr) == (0, "")
    assert "mailboxes              1         6         0         0" in update.stdout
    assert "aliases                0         0         3         0" in update.stdout
    store = Store(target_url)
    try:
        again_doc = await export_json(store)
    finally:
        await store.close()
    assert without_date(again_doc) == without_date(exported)


async def test_not_json_and_not_an_export(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'target.sqlite3'}"
    env = {"DINOMAIL_DATABASE_URL": url}
    assert dinomail("migrate", env=env).returncode == 0
    path = tmp_path / "doc.json"
    path.write_text('{"format": "dinomail-export",')
    result = dinomail("import", str(path), env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(f"dinomail: error: {path} is not JSON: ")
    path.write_text('{"format": "something-else", "version": 1}')
    result = dinomail("import", str(path), env=env)
    assert (result.returncode, result.stderr) == (
        2, "dinomail: error: $.format: must be 'dinomail-export': not a DinoMail export; "
           "nothing was imported\n")
    result = dinomail("import", str(tmp_path / "missing.json"), env=env)
    assert result.returncode == 2 and "cannot read" in result.stderr


async def test_refusals_against_the_database(exported: dict[str, Any], target_url: str) -> None:
    # A domain of the document that is an alias domain here, and a mailbox of a domain that
    # exists nowhere: both named, nothing written.
    store = Store(target_url)
    try:
        small = {**exported, "domains": [], "alias_domains": [], "aliases": [], "admins": [],
                 "mailboxes": exported["mailboxes"][:1]}
        with pytest.raises(ImportRefused) as refused:
            await import_document(store, small)
        assert str(refused.value.errors[0]).startswith(
            "$.mailboxes[0].email: example.org is a domain neither of the document nor")
        jsonschema.validate(small, document.schema())
    finally:
        await store.close()
    assert await counts(target_url) == (0, 0, 0)


async def test_the_schema_is_served(store: Store) -> None:
    async with api_client(store) as client:
        response = await client.get("/api/export-schema.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/schema+json"
    assert response.json() == document.schema()
    jsonschema.Draft202012Validator.check_schema(response.json())


def test_the_readme_commands(tmp_path: Path) -> None:
    export_block, import_block = shell_blocks("Export and import")
    source = tmp_path / "old"
    target = tmp_path / "new"
    source.mkdir()
    target.mkdir()
    old_url = f"sqlite:///{source / 'dinomail.sqlite3'}"

    async def fill() -> None:
        store = Store(old_url)
        await migrate.upgrade(store.engine)
        try:
            await fill_everything(store)
        finally:
            await store.close()

    asyncio.run(fill())
    run_block(export_block, source, DINOMAIL_DATABASE_URL=old_url)
    (target / "dinomail-export.json").write_bytes((source / "dinomail-export.json").read_bytes())
    new_url = f"sqlite:///{target / 'dinomail.sqlite3'}"
    result = run_block(import_block, target, DINOMAIL_DATABASE_URL=new_url)
    assert result.stdout.count("mailboxes              6         0         0         0") == 2
    assert dinomail("export", env={"DINOMAIL_DATABASE_URL": new_url}).stdout.split("\n")[1:] \
        == (source / "dinomail-export.json").read_text().split("\n")[1:]


async def test_a_running_lookup_daemon_sees_the_import(
    exported: dict[str, Any], target_url: str, tmp_path: Path
) -> None:
    """The import's rows reach a daemon that was running before it, through the change log."""
    store = Store(target_url)
    try:
        async with running_lookupd(store, tmp_path) as (daemon, settings):
            before = await socketmap_query(settings.SOCKETMAP_LISTEN, "aliases",
                                           "info@example.org")
            assert before == "NOTFOUND "
            await import_document(store, exported)
            await wait_until(
                lambda: daemon.holder.current is not None
                and daemon.holder.current.row_counts()["mailboxes"] == 6,
                what="the imported mailboxes in the snapshot",
            )
            after = await socketmap_query(settings.SOCKETMAP_LISTEN, "aliases",
                                          "info@example.org")
            assert after == "OK alice@example.org,bob@elsewhere.net"
    finally:
        await store.close()


def test_progress_on_a_terminal_only(exported: dict[str, Any], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'target.sqlite3'}"
    env = {"DINOMAIL_DATABASE_URL": url}
    assert dinomail("migrate", env=env).returncode == 0
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(exported))
    # Standard error on a terminal: the progress of each section is shown there.
    controller, terminal = pty.openpty()
    try:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DINOMAIL_")}
        done = subprocess.run([sys.executable, "-m", "dinomail", "import", str(path)],
                              env={**environ, **env}, stdout=subprocess.PIPE,
                              stderr=terminal, timeout=60)
        os.close(terminal)
        shown = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(controller, 4096):
                shown += chunk
    finally:
        os.close(controller)
    assert done.returncode == 0
    assert b"\rmailboxes: 6/6" in shown and b"\raliases: 3/3" in shown
    # Not on a terminal: nothing but errors on standard error.
    (tmp_path / "target.sqlite3").unlink()
    assert dinomail("migrate", env=env).returncode == 0
    quiet = dinomail("import", str(path), env=env)
    assert (quiet.returncode, quiet.stderr) == (0, "")
