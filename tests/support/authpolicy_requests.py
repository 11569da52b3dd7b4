"""Dovecot 2.3's authentication policy requests: the JSON bodies it sends, a wrong password tried
through a policy, and a clock the test moves."""

from __future__ import annotations

import hashlib
from typing import Any

from lookupd.authpolicy import AuthPolicy

NONCE = b"change-this-to-a-random-string"


def pwhash(login: str, password: str, bits: int = 12) -> str:
    """What Dovecot sends as `pwhash` (auth_policy_hash_mech = sha256, truncate = 12)."""
    digest = hashlib.sha256(NONCE + login.encode() + b"\0" + password.encode()).digest()
    size = (bits + 7) // 8
    value = int.from_bytes(digest[:size], "big") >> (8 * size - bits)
    return value.to_bytes(size, "big").hex()


def body(login: str, password: str, remote: str, **report: bool) -> dict[str, Any]:
    """A request body as Dovecot 2.3 builds it: template attributes sorted, then report
    fields, then tls."""
    fields: dict[str, Any] = {
        "device_id": "", "login": login, "protocol": "imap",
        "pwhash": pwhash(login, password), "remote": remote, "session_id": "",
    }
    fields.update(report)
    fields["tls"] = True
    return fields


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(policy: AuthPolicy, login: str, password: str, remote: str) -> tuple[int, str]:
    """One try with a wrong password: allow, then the report; returns the allow answer."""
    answer = policy.allow(body(login, password, remote))
    if answer[0] >= 0:
        policy.report(body(login, password, remote, success=False, policy_reject=False))
    else:
        policy.report(body(login, password, remote, success=False, policy_reject=True))
    return answer
