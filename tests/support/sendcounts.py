"""Sending counts as the policy service keeps them, for tests that fill the table."""

from __future__ import annotations

from dinomail.sendwindows import bucket_start
from dinomail.store.policy import SendCount


def counts(kind: str, name: str, at: float, messages: int, recipients: int) -> list[SendCount]:
    second = int(at)
    return [SendCount(kind, name, size, bucket_start(second, size), messages, recipients)
            for size in (600, 3600)]
