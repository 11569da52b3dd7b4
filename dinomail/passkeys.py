"""WebAuthn ceremonies (passkeys and security keys) with py_webauthn: the options a browser is
given, and the checks of its answers.

Stateless: the caller keeps the challenge (bound to the session, taken once from the store) and
the registered public keys (`dinomail.store.twofactor`), and passes the relying party id and the
origin the browser must have used. Credential ids, keys and challenges travel and are stored as
base64url text. Not tied to admins: mailbox owners can use it too.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

# What a browser may post back: a passkey's answer is a few kilobytes at most.
MAX_ANSWER_LENGTH = 64 * 1024
# Milliseconds the browser waits for the authenticator.
TIMEOUT_MS = 120_000


class PasskeyRefused(Exception):
    """An answer that is malformed, for another challenge or site, or badly signed."""


@dataclass(frozen=True)
class Ceremony:
    """Options for `navigator.credentials.create/get` (JSON) and their challenge."""

    options_json: str
    challenge: str


@dataclass(frozen=True)
class NewPasskey:
    credential_id: str
    public_key: str
    sign_count: int


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _descriptors(credential_ids: list[str]) -> list[PublicKeyCredentialDescriptor]:
    return [PublicKeyCredentialDescriptor(id=from_b64url(item)) for item in credential_ids]


def registration(
    *, rp_id: str, rp_name: str, user_id: int, user_name: str, existing: list[str]
) -> Ceremony:
    options = generate_registration_options(
        rp_id=rp_id, rp_name=rp_name, user_name=user_name,
        user_id=f"dinomail-admin-{user_id}".encode(), timeout=TIMEOUT_MS,
        # The same authenticator twice would be one factor counted as two.
        exclude_credentials=_descriptors(existing),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
    )
    return Ceremony(options_to_json(options), b64url(options.challenge))


def authentication(*, rp_id: str, credential_ids: list[str]) -> Ceremony:
    options = generate_authentication_options(
        rp_id=rp_id, timeout=TIMEOUT_MS, allow_credentials=_descriptors(credential_ids),
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return Ceremony(options_to_json(options), b64url(options.challenge))


def parse_answer(text: str) -> dict[str, Any]:
    """The browser's answer as posted, with the challenge and credential id it names."""
    if not text or len(text) > MAX_ANSWER_LENGTH:
        raise PasskeyRefused("no answer from the authenticator")
    try:
        answer = json.loads(text)
        client_data = json.loads(from_b64url(answer["response"]["clientDataJSON"]))
        challenge = client_data["challenge"]
        credential_id = answer["rawId"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise PasskeyRefused("the answer is not a WebAuthn credential") from None
    if not isinstance(answer, dict) or not isinstance(challenge, str) or not isinstance(
        credential_id, str
    ):
        raise PasskeyRefused("the answer is not a WebAuthn credential")
    return {"answer": answer, "challenge": challenge, "credential_id": credential_id}


def verify_new(answer: dict[str, Any], *, challenge: str, rp_id: str, origin: str) -> NewPasskey:
    try:
        verified = verify_registration_response(
            credential=answer, expected_challenge=from_b64url(challenge),
            expected_rp_id=rp_id, expected_origin=origin,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as error:
        raise PasskeyRefused(str(error)) from None
    return NewPasskey(b64url(verified.credential_id), b64url(verified.credential_public_key),
                      verified.sign_count)


def verify_login(
    answer: dict[str, Any], *, challenge: str, rp_id: str, origin: str, public_key: str,
    sign_count: int,
) -> int:
    """The authenticator's new signature count, once its signature is checked."""
    try:
        verified = verify_authentication_response(
            credential=answer, expected_challenge=from_b64url(challenge),
            expected_rp_id=rp_id, expected_origin=origin,
            credential_public_key=from_b64url(public_key),
            credential_current_sign_count=sign_count,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as error:
        raise PasskeyRefused(str(error)) from None
    return verified.new_sign_count
