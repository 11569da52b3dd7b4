"""ARGON2I and ARGON2ID, in libsodium's string format, as Dovecot makes them.

Dovecot maps `rounds` to libsodium's opslimit and picks the memory from libsodium's presets by
it (password-scheme-sodium.c): interactive below the "moderate" opslimit, moderate below the
"sensitive" one, sensitive from there. Argon2id also never goes under 3 passes (a workaround
for libsodium 1.0.13). Checking reads the type and costs from the string, so either name checks
either type, with any costs, as libsodium's crypto_pwhash_str_verify does.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import Type
from argon2.exceptions import VerificationError, VerifyMismatchError
from argon2.low_level import hash_secret, verify_secret

from dinomail.passwords.errors import PasswordSchemeError
from dinomail.passwords.model import Generate, Rounds, Scheme
from dinomail.passwords.salts import salt_bytes

SALT_LENGTH = 16
HASH_LENGTH = 32
MIB = 1024  # argon2 memory costs are in KiB
UINT_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class SodiumPresets:
    """libsodium's crypto_pwhash_<type>_{OPSLIMIT,MEMLIMIT}_* constants (memory in KiB)."""

    type: Type
    interactive: tuple[int, int]
    moderate: tuple[int, int]
    sensitive: tuple[int, int]
    minimum_passes: int

    def costs(self, rounds: int) -> tuple[int, int]:
        """(time cost, memory cost) for a Dovecot `rounds` value."""
        if rounds >= self.sensitive[0]:
            memory = self.sensitive[1]
        elif rounds >= self.moderate[0]:
            memory = self.moderate[1]
        else:
            memory = self.interactive[1]
        return max(rounds, self.minimum_passes), memory


ARGON2I = SodiumPresets(
    Type.I, (4, 32 * MIB), (6, 128 * MIB), (8, 512 * MIB), minimum_passes=3
)
ARGON2ID = SodiumPresets(
    Type.ID, (2, 64 * MIB), (3, 256 * MIB), (4, 1024 * MIB), minimum_passes=3
)
_PREFIXES = {b"$argon2i$": Type.I, b"$argon2id$": Type.ID}


def _generator(presets: SodiumPresets) -> Generate:
    def generate(password: bytes, user: str | None, rounds: int | None) -> bytes:
        time_cost, memory_cost = presets.costs(presets.interactive[0] if rounds is None else rounds)
        return hash_secret(
            password, salt_bytes(SALT_LENGTH), time_cost=time_cost, memory_cost=memory_cost,
            parallelism=1, hash_len=HASH_LENGTH, type=presets.type,
        )

    return generate


def _verify(password: bytes, raw: bytes, user: str | None) -> bool:
    argon_type = next(
        (kind for prefix, kind in _PREFIXES.items() if raw.startswith(prefix)), None
    )
    if argon_type is None:
        raise PasswordSchemeError("an Argon2 hash starts with $argon2i$ or $argon2id$")
    try:
        return verify_secret(raw, password, argon_type)
    except VerifyMismatchError:
        return False
    except (VerificationError, ValueError) as error:
        raise PasswordSchemeError(f"malformed Argon2 string: {error}") from None


SCHEMES = (
    Scheme(
        "ARGON2I", _generator(ARGON2I), _verify,
        rounds=Rounds(ARGON2I.interactive[0], ARGON2I.minimum_passes, UINT_MAX),
    ),
    Scheme(
        "ARGON2ID", _generator(ARGON2ID), _verify,
        rounds=Rounds(ARGON2ID.interactive[0], 1, UINT_MAX),
    ),
)
