"""OTP (RFC 2289 one-time passwords) as Dovecot stores it: `<algo> <seq> <seed> <16 hex>`.

The stored value is the pass phrase hashed `seq` times after the seed; the OTP login mechanism
moves it one step back on each login, but checking a plain pass phrase (`doveadm pw -t`, PLAIN
logins) recomputes it from the stored algorithm, count and seed, which is reproducible. Every
step folds the digest to 64 bits, which makes the result short enough to brute force.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable

from dinomail.passwords.digests import md4
from dinomail.passwords.errors import PasswordSchemeError
from dinomail.passwords.model import Scheme
from dinomail.passwords.salts import salt_bytes

SEQUENCE = 1024
SEED_BYTES = 8  # 16 hex characters, RFC 2289's longest seed

_STORED = re.compile(rb"(md4|md5|sha1) ([0-9]{1,9}) ([0-9A-Za-z]{1,16}) ([0-9A-Fa-f]{16})")


def _fold_md(digest: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(digest[:8], digest[8:16], strict=True))


def _fold_sha1(digest: bytes) -> bytes:
    # RFC 2289 appendix A: SHA-1's five words fold to two, each then byte-reversed.
    words = (digest[0:4], digest[8:12], digest[16:20])
    high = bytes(a ^ b ^ c for a, b, c in zip(*words, strict=True))
    low = bytes(a ^ b for a, b in zip(digest[4:8], digest[12:16], strict=True))
    return high[::-1] + low[::-1]


_STEPS: dict[bytes, Callable[[bytes], bytes]] = {
    b"md4": lambda data: _fold_md(md4(data)),
    b"md5": lambda data: _fold_md(hashlib.md5(data).digest()),
    b"sha1": lambda data: _fold_sha1(hashlib.sha1(data).digest()),
}


def otp_hash(algorithm: bytes, sequence: int, seed: bytes, password: bytes) -> bytes:
    step = _STEPS[algorithm]
    result = step(seed.lower() + password)
    for _ in range(sequence):
        result = step(result)
    return result


def _generate(password: bytes, user: str | None, rounds: int | None) -> bytes:
    seed = salt_bytes(SEED_BYTES).hex().encode("ascii")
    result = otp_hash(b"sha1", SEQUENCE, seed, password)
    return b"sha1 %d %s %s" % (SEQUENCE, seed, result.hex().encode("ascii"))


def _verify(password: bytes, raw: bytes, user: str | None) -> bool:
    stored = _STORED.fullmatch(raw)
    if stored is None:
        raise PasswordSchemeError("an OTP hash is '<md4|md5|sha1> <sequence> <seed> <16 hex>'")
    algorithm, sequence, seed, result = stored.groups()
    computed = otp_hash(algorithm, int(sequence), seed, password)
    return hmac.compare_digest(computed, bytes.fromhex(result.decode("ascii")))


SCHEMES = (
    Scheme("OTP", _generate, _verify, weak="64-bit result of a fast hash chain"),
)
