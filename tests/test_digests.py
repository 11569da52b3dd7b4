"""MD4 and the MD5 compression function against their RFCs' published test suites."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest

from dinomail.passwords.digest_schemes import cram_md5_context
from dinomail.passwords.digests import (
    BLOCK_SIZE,
    MD5_INITIAL_STATE,
    md4,
    md5_compress,
    md_padding,
)

ALPHANUMERIC = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
DIGITS = b"1234567890" * 8

# RFC 1320, appendix A.5.
RFC_1320_SUITE = [
    (b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
    (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
    (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
    (b"message digest", "d9130a8164549fe818874806e1c7014b"),
    (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
    (ALPHANUMERIC, "043f8582f241db351ce627e153e7f0e4"),
    (DIGITS, "e33b4ddc9c38f2199c3e7b164fcc0536"),
]

# RFC 1321, appendix A.5.
RFC_1321_SUITE = [
    (b"", "d41d8cd98f00b204e9800998ecf8427e"),
    (b"a", "0cc175b9c0f1b6a831c399e269772661"),
    (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
    (b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
    (b"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
    (ALPHANUMERIC, "d174ab98d277d9f5a5611c2c9f419d9f"),
    (DIGITS, "57edf4a22be3c955ac49da2e2107b67a"),
]


def md5_through_compression(message: bytes) -> str:
    padded = message + md_padding(len(message))
    state = MD5_INITIAL_STATE
    for offset in range(0, len(padded), BLOCK_SIZE):
        state = md5_compress(state, padded[offset : offset + BLOCK_SIZE])
    return struct.pack("<4I", *state).hex()


@pytest.mark.parametrize(("message", "digest"), RFC_1320_SUITE)
def test_md4_rfc_1320_suite(message: bytes, digest: str) -> None:
    assert md4(message).hex() == digest


@pytest.mark.parametrize(("message", "digest"), RFC_1321_SUITE)
def test_md5_compression_rfc_1321_suite(message: bytes, digest: str) -> None:
    assert md5_through_compression(message) == digest


@pytest.mark.parametrize("length", [55, 56, 63, 64, 65, 119, 120, 128, 1000])
def test_padding_at_block_boundaries(length: int) -> None:
    # MD4 shares this padding; the RFC 1320 suite's 62- and 80-byte inputs span two blocks.
    message = bytes(range(256)) * 4
    message = message[:length]
    assert len(message + md_padding(length)) % BLOCK_SIZE == 0
    assert md5_through_compression(message) == hashlib.md5(message).hexdigest()


def test_md5_compress_wants_one_block() -> None:
    with pytest.raises(ValueError):
        md5_compress(MD5_INITIAL_STATE, b"short")


def test_cram_md5_context_of_known_passwords() -> None:
    # Values printed by `doveadm pw -s CRAM-MD5` (Dovecot 2.3.19).
    assert cram_md5_context(b"secret").hex() == (
        "cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56"
    )
    # A key longer than the 64-byte block is replaced by its MD5 digest, as in HMAC.
    long_key = b"k" * 65
    assert cram_md5_context(long_key) == cram_md5_context(hashlib.md5(long_key).digest())


def test_cram_md5_context_is_the_hmac_state() -> None:
    # Finishing the stored inner and outer states must give HMAC-MD5 itself.
    key, message = b"secret", b"<1896.697170952@postoffice.example.net>"
    a, b, c, d, e, f, g, h = struct.unpack("<8I", cram_md5_context(key))

    def finish(state: tuple[int, int, int, int], data: bytes) -> bytes:
        # The state already holds one block (the pad), which the length must count.
        padded = data + md_padding(BLOCK_SIZE + len(data))
        for offset in range(0, len(padded), BLOCK_SIZE):
            state = md5_compress(state, padded[offset : offset + BLOCK_SIZE])
        return struct.pack("<4I", *state)

    assert finish((a, b, c, d), finish((e, f, g, h), message)) == hmac.digest(key, message, "md5")
