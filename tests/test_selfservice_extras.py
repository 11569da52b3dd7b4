"""The owners' vacation reply and app password pages (`/me/vacation/`, `/me/app-passwords/`), on
SQLite and PostgreSQL: saved through the store for their own mailbox only, bad input shown
under its field with nothing changed, an app password's secret shown once and stored hashed."""

from __future__ import annotations

import re
from datetime import date

import pytest
import sqlalchemy as sa

from dinomail import schema
from dinomail.passwords import verify_password
from dinomail.store import EVERYTHING, Store, apppasswords, vacation
from tests.support.adminapi import add_domain
from tests.support.selfservice import add_owner, me_client, owner_log_in


@pytest.fixture
async def mailboxes(store: Store) -> dict[str, int]:
    await add_domain(store, "a.org")
    await add_domain(store, "b.org")
    anna = await add_owner(store, "anna@a.org")
    bob = await add_owner(store, "bob@b.org")
    return {"anna": anna["id"], "bob": bob["id"]}


def field_error(html: str, field: str) -> str:
    match = re.search(rf'id="error-{field}">.*?</p>', html, re.S)
    assert match, f"no error under {field}"
    return match.group(0)


async def test_vacation_reply_is_saved_changed_and_removed(
    store: Store, mailboxes: dict[str, int],
) -> None:
    async with me_client(store) as client:
        owner = await owner_log_in(client, "bob@b.org")
        page = await client.get("/me/vacation/")
        assert page.status_code == 200 and "Remove the vacation reply" not in page.text
        answer = await owner.post("/me/vacation/", {
            "enabled": "on", "subject": "Away", "body": "Back on Monday.\r\nBob",
            "starts": "2030-07-01", "ends": "2030-07-14", "interval_days": "3"})
        assert (answer.status_code, answer.headers["location"]) == (303, "/me/vacation/")
        async with store.read() as conn:
            row = await vacation.get(conn, EVERYTHING, mailboxes["bob"])
            assert await vacation.get(conn, EVERYTHING, mailboxes["anna"]) is None
        assert row is not None
        assert (row["enabled"], row["subject"], row["body"], row["starts"], row["ends"],
                row["interval_days"]) == (True, "Away", "Back on Monday.\nBob",
                                          date(2030, 7, 1), date(2030, 7, 14), 3)
        page = (await client.get("/me/vacation/")).text
        assert 'value="2030-07-14"' in page and "Your vacation reply was saved." in page

        for form, field, message in (
            ({"enabled": "on", "body": "x", "starts": "2030-07-14", "ends": "2030-07-01",
              "interval_days": "3"}, "ends", "The last day cannot come before the first."),
            ({"enabled": "on", "body": "", "interval_days": "3"}, "body",
             "A message is needed to turn the reply on."),
            ({"body": "x", "starts": "14/07/2030", "interval_days": "3"}, "starts",
             "Enter a day, as 2025-07-14."),
            ({"body": "x", "interval_days": "99"}, "interval_days",
             "Enter a number of days from 1 to 30."),
            ({"body": "x", "interval_days": "soon"}, "interval_days",
             "Enter a whole number of days."),
        ):
            answer = await owner.post("/me/vacation/", form)
            assert answer.status_code == 400, form
            assert message in field_error(answer.text, field), form
        async with store.read() as conn:
            assert await vacation.get(conn, EVERYTHING, mailboxes["bob"]) == row

        answer = await owner.post("/me/vacation/delete")
        assert answer.status_code == 303
        async with store.read() as conn:
            assert await vacation.get(conn, EVERYTHING, mailboxes["bob"]) is None


async def test_app_password_is_shown_once_and_revoked(
    store: Store, mailboxes: dict[str, int],
) -> None:
    async with store.write() as conn:
        annas = await apppasswords.create(
            conn, "test", EVERYTHING, mailboxes["anna"], name="laptop", protocols=["imap"],
            password_hash=await apppasswords.hash_secret("anna-secret"))
    async with me_client(store) as client:
        owner = await owner_log_in(client, "bob@b.org")
        page = await client.get("/me/app-passwords/")
        assert "You have no app password yet." in page.text and "laptop" not in page.text
        answer = await owner.post("/me/app-passwords/", {
            "name": "phone", "protocol_imap": "on", "protocol_smtp": "on"})
        assert answer.status_code == 200
        secret = re.search(r'id="new-secret" class="secret" type="text" value="([^"]+)"',
                           answer.text)
        assert secret, answer.text
        async with store.read() as conn:
            stored = (await conn.execute(sa.select(schema.apppassword).where(
                schema.apppassword.c.name == "phone"))).mappings().one()
        assert stored["user_id"] == mailboxes["bob"] and stored["protocols"] == "imap,smtp"
        assert secret.group(1) not in stored["password"]
        assert verify_password(secret.group(1), stored["password"])
        # Shown once: the list shows the name, never the secret again.
        page = (await client.get("/me/app-passwords/")).text
        assert "phone" in page and "imap, smtp" in page and secret.group(1) not in page

        for form, field, message in (
            ({"name": "phone", "protocol_imap": "on"}, "name",
             "The app password phone already exists."),
            ({"name": "tablet"}, "protocols", "Choose at least one."),
            ({"name": "", "protocol_imap": "on"}, "name", "This field is required."),
        ):
            answer = await owner.post("/me/app-passwords/", form)
            assert answer.status_code == 400, form
            assert message in field_error(answer.text, field), form
        async with store.read() as conn:
            assert [row["name"] for row in await apppasswords.list_for(
                conn, EVERYTHING, mailboxes["bob"])] == ["phone"]

        # Another mailbox's app password is "not found", and stays.
        answer = await owner.post(f"/me/app-passwords/{annas['id']}/revoke")
        assert answer.status_code == 404
        answer = await owner.post(f"/me/app-passwords/{stored['id']}/revoke")
        assert (answer.status_code, answer.headers["location"]) == (303, "/me/app-passwords/")
        async with store.read() as conn:
            assert await apppasswords.list_for(conn, EVERYTHING, mailboxes["bob"]) == []
            assert len(await apppasswords.list_for(conn, EVERYTHING, mailboxes["anna"])) == 1


async def test_extras_need_an_owner_session_and_a_token(
    store: Store, mailboxes: dict[str, int],
) -> None:
    async with me_client(store) as client:
        for url in ("/me/vacation/", "/me/app-passwords/"):
            answer = await client.get(url)
            assert (answer.status_code, answer.headers["location"]) == (303, "/me/login")
        await owner_log_in(client, "bob@b.org")
        for url in ("/me/vacation/", "/me/vacation/delete", "/me/app-passwords/",
                    "/me/app-passwords/1/revoke"):
            answer = await client.post(url, data={"name": "x", "protocol_imap": "on",
                                                  "body": "x", "interval_days": "3"})
            assert answer.status_code == 403, url
    async with store.read() as conn:
        assert await vacation.get(conn, EVERYTHING, mailboxes["bob"]) is None
        assert await apppasswords.list_for(conn, EVERYTHING, mailboxes["bob"]) == []


async def test_the_owners_layout_and_app_passwords_page_in_french(
    store: Store, mailboxes: dict[str, int],
) -> None:
    async with me_client(store) as client:
        owner = await owner_log_in(client, "bob@b.org")
        await owner.post("/me/language", {"language": "fr", "next": "/me/"})
        answer = await owner.post("/me/app-passwords/", {"name": "phone", "protocol_imap": "on"})
        assert answer.status_code == 200
        page = answer.text
        # The owners' layout: their own menu and sections, nothing of the admin's but the
        # legal notice.
        for text in ('<html lang="fr">', "Titulaire de la boîte", "Déconnexion", "Ma boîte",
                     'href="/me/app-passwords/" aria-current="page"',
                     'action="/me/logout"', 'action="/me/language"',
                     'href="/legals">Mentions légales'):
            assert text in page, text
        for text in ('id="site-search"', "/api-keys", "github.com"):
            assert text not in page, text
        # The secret shown once, and the list with its revoke button.
        assert "Votre nouveau mot de passe d’application « phone »" in page
        assert "Copiez-la maintenant\u00a0: elle n'est affichée que cette fois." in page
        assert re.search(r'id="new-secret" class="secret" type="text" value="[^"]+"', page)
        assert '<th scope="col" class="actions-col">Administration</th>' in page
        assert re.search(r'action="/me/app-passwords/\d+/revoke">', page)
        assert "Révoquer<span class=\"visually-hidden\"> phone</span>" in page
        # The language switch comes back to the same page, query string included.
        listed = (await client.get("/me/app-passwords/?from=menu")).text
        assert 'name="next" value="/me/app-passwords/?from=menu"' in listed
