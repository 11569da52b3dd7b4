"""SCRAM-SHA-1 and SCRAM-SHA-256 credentials (RFC 5802, RFC 7677) as Dovecot stores them.

`<iterations>,<base64 salt>,<base64 StoredKey>,<base64 ServerKey>`. The server keeps only the
two keys, which lets the SCRAM mechanism work without the password; checking a password
compares StoredKey. Like Dovecot, the password is used as UTF-8 without SASLprep.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from dinomail.passwords.encoding import decode_base64
from dinomail.passwords.errors import PasswordSchemeError
from dinomail.passwords.model import Generate, Rounds, Scheme, Verify
from dinomail.passwords.salts import salt_bytes

# RFC 5802 says at least 4096; Dovecot rejects stored counts outside these bounds.
ITERATIONS = Rounds(default=4096, minimum=4096, maximum=2**31 - 1)
SALT_LENGTH = 16

_DIGITS = re.compile(r"[0-9]{1,10}")


def _keys(digest: str, password: bytes, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac(digest, password, salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", digest)
    stored_key = hashlib.new(digest, client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", digest)
    return stored_key, server_key


def _scheme(name: str, digest: str) -> tuple[Generate, Verify]:
    size = hashlib.new(digest).digest_size

    def generate(password: bytes, user: str | None, rounds: int | None) -> bytes:
        iterations = ITERATIONS.default if rounds is None else rounds
        salt = salt_bytes(SALT_LENGTH)
        stored_key, server_key = _keys(digest, password, salt, iterations)
        encoded = (base64.b64encode(value).decode() for value in (salt, stored_key, server_key))
        return ",".join((str(iterations), *encoded)).encode("ascii")

    def verify(password: bytes, raw: bytes, user: str | None) -> bool:
        fields = raw.decode("ascii", "replace").split(",")
        if len(fields) != 4:
            raise PasswordSchemeError(f"a {name} hash has 4 comma-separated fields")
        count, salt, stored_key, server_key = fields
        valid_count = _DIGITS.fullmatch(count) and ITERATIONS.clamp(int(count)) == int(count)
        if not valid_count:
            raise PasswordSchemeError(f"invalid {name} iteration count {count!r}")
        if len(decode_base64(stored_key)) != size or len(decode_base64(server_key)) != size:
            raise PasswordSchemeError(f"the {name} keys are not {size}-byte base64 values")
        expected, _ = _keys(digest, password, decode_base64(salt), int(count))
        return hmac.compare_digest(expected, decode_base64(stored_key))

    return generate, verify


SCHEMES = (
    Scheme("SCRAM-SHA-1", *_scheme("SCRAM-SHA-1", "sha1"), rounds=ITERATIONS),
    Scheme("SCRAM-SHA-256", *_scheme("SCRAM-SHA-256", "sha256"), rounds=ITERATIONS),
)
