"""The README's self-service section, checked against the product: its settings block loads,
its API example is accepted as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dinomail.settings import load_settings
from dinomail.store import Store
from tests.support.adminapi import add_admin, add_domain, add_mailbox, api_client
from tests.support.readme import _FENCE, section

HEADING = "Self-service for mailbox owners"


def _blocks(language: str) -> list[str]:
    return [body for lang, body in _FENCE.findall(section(HEADING)) if lang == language]


def test_the_settings_block_loads(tmp_path: Path) -> None:
    toml, = _blocks("toml")
    path = tmp_path / "dinomail.toml"
    path.write_text(toml)
    settings = load_settings(str(path), environ={})
    assert (settings.SELF_SERVICE, settings.FORWARDING_MAX_DESTINATIONS) == (True, 10)
    assert "/me/login" in section(HEADING)


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_the_api_example_is_accepted(store: Store) -> None:
    curl, = _blocks("sh")
    body = json.loads(re.search(r"-d '([^']+)'", curl).group(1))  # type: ignore[union-attr]
    method = re.search(r"-X (\w+)", curl).group(1)  # type: ignore[union-attr]
    path = re.search(r"https://[^/\s]+(/\S+)", curl).group(1)  # type: ignore[union-attr]
    domain = await add_domain(store, "example.org")
    mailbox = await add_mailbox(store, "owen@example.org")
    root = await add_admin(store, "root", superadmin=True)
    async with api_client(store) as client:
        url = re.sub(r"/\d+/", f"/{mailbox['id']}/", path)
        answer = await client.request(method, url, headers=root.headers, json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["destinations"] == body["destinations"]
        assert answer.json()["keep_copy"] is True
    assert domain["name"] == "example.org"
