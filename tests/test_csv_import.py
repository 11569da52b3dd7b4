"""`dinomail import-csv mailboxes|aliases FILE`: every line through the store's create calls in
one transaction; wrong lines named by number and nothing written; clear passwords hashed,
missing ones generated and shown once."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import sqlalchemy as sa

from dinomail import migrate
from dinomail.passwords import verify_password
from dinomail.schema import auditlog, virtualalias, virtualuser
from dinomail.store import EVERYTHING, Store, domains
from tests.support.cli import dinomail
from tests.support.mail_data import fill_mail_data
from tests.support.readme import run_block, shell_blocks


async def counts(store: Store) -> tuple[int, int, int]:
    async with store.read() as conn:
        return tuple([  # type: ignore[return-value]
            await conn.scalar(sa.select(sa.func.count()).select_from(table))
            for table in (virtualuser, virtualalias, auditlog)
        ])


def run(store: Store, tmp_path: Path, text: str, *args: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "lines.csv"
    path.write_text(text)
    return dinomail("import-csv", *args, str(path), env={"DINOMAIL_DATABASE_URL": store.url})


async def test_mailboxes(store: Store, tmp_path: Path) -> None:
    ids = await fill_mail_data(store)
    async with store.write() as conn:
        await domains.update(conn, "test", EVERYTHING, ids["example.org"],
                             {"max_quota_per_mailbox": 5000, "default_quota": 2000})
    before = await counts(store)
    bad = ("email,password,quota,active\n"
           "ok@example.org,Secret-1234,,\n"
           "bad address@example.org,x,,\n"
           "x@unknown.org,,,\n"
           "big@example.org,,9999,\n"
           "alice@example.org,,,\n"
           "maybe@example.org,,,perhaps\n")
    result = run(store, tmp_path, bad, "mailboxes")
    assert result.returncode == 2
    refused = [line for line in result.stderr.splitlines() if line.startswith("refused: ")]
    assert [line.split(":")[1].strip() for line in refused] == [
        "line 3", "line 4", "line 5", "line 6", "line 7"]
    assert "refused: line 4: domain: unknown.org is not a domain you manage" in refused
    assert "refused: line 6: email: the mailbox alice@example.org already exists" in refused
    assert "refused: line 7: active: must be true or false" in refused
    assert result.stderr.endswith(
        "dinomail: error: 5 wrong lines in lines.csv; nothing was created\n".replace(
            "lines.csv", str(tmp_path / "lines.csv")))
    assert await counts(store) == before

    good = ("Email,Password,Quota,Active\n"
            "new1@example.org,Secret-123,1000,yes\n"
            "\n"
            "new2@example.org,,,\n"
            "new3@Example.ORG,,,false\n")
    dry = run(store, tmp_path, good, "mailboxes", "--dry-run")
    assert (dry.returncode, dry.stdout) == (0, "")
    assert dry.stderr == "3 mailboxes would be created (dry run: nothing was changed).\n"
    assert await counts(store) == before

    # The mailbox password policy's setting holds here as on every other path.
    (tmp_path / "lines.csv").write_text(good)
    strict = dinomail("import-csv", "mailboxes", str(tmp_path / "lines.csv"),
                      env={"DINOMAIL_DATABASE_URL": store.url,
                           "DINOMAIL_MAILBOX_PASSWORD_MIN_LENGTH": "16"})
    assert strict.returncode == 2
    assert "refused: line 2: password: must be at least 16 characters" in strict.stderr
    assert await counts(store) == before

    # A file for the generated passwords that cannot be written: said before anything is made.
    unwritable = run(store, tmp_path, good, "mailboxes", "-o", str(tmp_path / "no" / "p.csv"))
    assert unwritable.returncode == 2
    assert unwritable.stderr.splitlines()[-1].startswith(
        f"dinomail: error: cannot write {tmp_path / 'no' / 'p.csv'}")
    assert await counts(store) == before

    done = run(store, tmp_path, good, "mailboxes")
    assert done.returncode == 0, done.stderr
    generated = list(csv.reader(io.StringIO(done.stdout)))
    assert generated[0] == ["email", "password"]
    assert [row[0] for row in generated[1:]] == ["new2@example.org", "new3@example.org"]
    assert "2 generated passwords above: they are shown only this once." in done.stderr
    passwords = {"new1@example.org": "Secret-123", **dict(generated[1:])}
    async with store.read() as conn:
        rows = {row.email: row for row in await conn.execute(
            sa.select(virtualuser).where(virtualuser.c.email.like("new%")))}
    assert set(rows) == set(passwords)
    for email, password in passwords.items():
        assert rows[email].password.startswith("{SHA512-CRYPT}$6$")
        assert verify_password(password, rows[email].password, user=email)
    assert (rows["new1@example.org"].quota, rows["new1@example.org"].active) == (1000, True)
    assert rows["new3@example.org"].active is False
    # One audit entry per mailbox, as through the API.
    assert await counts(store) == (before[0] + 3, before[1], before[2] + 3)


async def test_aliases_and_bad_headers(store: Store, tmp_path: Path) -> None:
    await fill_mail_data(store)
    before = await counts(store)
    bad = run(store, tmp_path, "source,destination\nsales@example.org,alice@example.org\n"
                               "sales@example.org,sales@example.org\n", "aliases")
    assert bad.returncode == 2
    assert "refused: line 3: destination: an alias cannot deliver to its own address" \
        in bad.stderr
    assert await counts(store) == before
    good = run(store, tmp_path, "source,destination\nsales@example.org,alice@example.org\n"
                                "sales@example.org,bob@example.org\n", "aliases")
    assert (good.returncode, good.stdout) == (0, "")
    assert good.stderr == "2 aliases created.\n"
    assert (await counts(store))[1] == before[1] + 2

    header = run(store, tmp_path, "email,colour\nx@example.org,red\n", "mailboxes")
    assert (header.returncode, header.stderr) == (2, (
        "refused: line 1: 'colour' is not a column of mailboxes (columns: email, password, "
        "quota, active)\n"
        f"dinomail: error: 1 wrong lines in {tmp_path / 'lines.csv'}; nothing was created\n"))
    extra = run(store, tmp_path, "source,destination\na@example.org,b@example.org,c\n",
                "aliases")
    assert extra.returncode == 2 and "refused: line 2: more values than columns" in extra.stderr


async def test_the_readme_commands(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'dinomail.sqlite3'}")
    await migrate.upgrade(store.engine)
    try:
        await fill_mail_data(store)
        # A passwords file left readable by others is made private before it gets them.
        (tmp_path / "passwords.csv").write_text("old\n")
        (tmp_path / "passwords.csv").chmod(0o644)
        result = run_block("\n".join(shell_blocks("Bulk creation from CSV")), tmp_path,
                           DINOMAIL_DATABASE_URL=store.url)
        assert (tmp_path / "passwords.csv").stat().st_mode & 0o777 == 0o600
        assert "2 mailboxes would be created" in result.stderr
        assert "2 mailboxes created." in result.stderr
        generated = list(csv.reader(io.StringIO((tmp_path / "passwords.csv").read_text())))
        assert [row[0] for row in generated] == ["email", "ben@example.org"]
        async with store.read() as conn:
            stored = dict((await conn.execute(sa.select(virtualuser.c.email,
                                                        virtualuser.c.password))).all())
        assert verify_password("Correct-Horse-1", stored["ann@example.org"])
        assert verify_password(generated[1][1], stored["ben@example.org"])
    finally:
        await store.close()
