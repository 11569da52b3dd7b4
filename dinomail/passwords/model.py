"""What a password scheme is: how it makes raw hash bytes and how it checks a password."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from dinomail.passwords.encoding import Encoding

# generate(password, user, rounds) -> raw bytes; rounds is None for the scheme's default.
Generate = Callable[[bytes, str | None, int | None], bytes]
# verify(password, raw, user) -> match; raises PasswordSchemeError when raw is malformed.
Verify = Callable[[bytes, bytes, str | None], bool]


@dataclass(frozen=True, slots=True)
class Rounds:
    """The cost a scheme accepts through `rounds` (`doveadm pw -r`), within Dovecot's limits."""

    default: int
    minimum: int
    maximum: int

    def clamp(self, rounds: int) -> int:
        return max(self.minimum, min(self.maximum, rounds))


@dataclass(frozen=True, slots=True)
class Scheme:
    name: str
    generate: Generate
    # None: the scheme is deterministic, so checking is generating again and comparing.
    verify: Verify | None = None
    encoding: Encoding = Encoding.NONE
    # Non-zero for fixed-length raw hashes; it enables Dovecot's hex/base64 guess.
    raw_length: int = 0
    rounds: Rounds | None = None
    # Why this scheme must not be chosen for new hashes without explicit permission.
    weak: str | None = None

    def check(self, password: bytes, raw: bytes, user: str | None) -> bool:
        if self.verify is not None:
            return self.verify(password, raw, user)
        return hmac.compare_digest(self.generate(password, user, None), raw)
