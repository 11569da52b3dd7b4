"""MD4 and the MD5 compression function, written out because the standard library lacks them.

hashlib's MD4 comes from OpenSSL, which disables it from version 3 on; PLAIN-MD4, NTLM and the
OTP md4 variant need it. CRAM-MD5 stores the MD5 state after a single compression of each HMAC
pad, which no hash API exposes. Both follow their RFCs line by line and are checked against the
RFC test suites (tests/test_digests.py); speed is not a goal, the inputs are passwords.
"""

from __future__ import annotations

import math
import struct

MASK_32 = 0xFFFFFFFF
BLOCK_SIZE = 64

MD5_INITIAL_STATE = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
MD4_INITIAL_STATE = MD5_INITIAL_STATE


def _rotate_left(value: int, count: int) -> int:
    value &= MASK_32
    return ((value << count) | (value >> (32 - count))) & MASK_32


def md_padding(message_length: int) -> bytes:
    """The padding MD4 and MD5 append: 0x80, zeros, then the bit length (little-endian)."""
    zeros = (55 - message_length) % BLOCK_SIZE
    return b"\x80" + b"\0" * zeros + struct.pack("<Q", (message_length * 8) & (2**64 - 1))


# RFC 1321 3.4: T[i] = floor(2**32 * abs(sin(i))), i = 1..64.
_MD5_T = tuple(int(abs(math.sin(i)) * 2**32) & MASK_32 for i in range(1, 65))
_MD5_SHIFTS = (7, 12, 17, 22) * 4 + (5, 9, 14, 20) * 4 + (4, 11, 16, 23) * 4 + (6, 10, 15, 21) * 4


def md5_compress(state: tuple[int, int, int, int], block: bytes) -> tuple[int, int, int, int]:
    """One MD5 compression (RFC 1321 3.4) of a 64-byte block into the state A, B, C, D."""
    if len(block) != BLOCK_SIZE:
        raise ValueError("an MD5 block is 64 bytes")
    words = struct.unpack("<16I", block)
    a, b, c, d = state
    for i in range(64):
        if i < 16:
            f, g = (b & c) | (~b & d), i
        elif i < 32:
            f, g = (d & b) | (~d & c), (5 * i + 1) % 16
        elif i < 48:
            f, g = b ^ c ^ d, (3 * i + 5) % 16
        else:
            f, g = c ^ (b | (~d & MASK_32)), (7 * i) % 16
        rotated = _rotate_left(a + f + _MD5_T[i] + words[g], _MD5_SHIFTS[i])
        a, d, c, b = d, c, b, (b + rotated) & MASK_32
    return (
        (state[0] + a) & MASK_32,
        (state[1] + b) & MASK_32,
        (state[2] + c) & MASK_32,
        (state[3] + d) & MASK_32,
    )


def _md4_compress(state: tuple[int, int, int, int], block: bytes) -> tuple[int, int, int, int]:
    x = struct.unpack("<16I", block)
    a, b, c, d = state

    def f(x_: int, y: int, z: int) -> int:
        return (x_ & y) | (~x_ & z)

    def g(x_: int, y: int, z: int) -> int:
        return (x_ & y) | (x_ & z) | (y & z)

    def h(x_: int, y: int, z: int) -> int:
        return x_ ^ y ^ z

    # RFC 1320 3.4: three rounds of 16 operations; the word order and shifts are the RFC's.
    for k in range(0, 16, 4):
        a = _rotate_left(a + f(b, c, d) + x[k], 3)
        d = _rotate_left(d + f(a, b, c) + x[k + 1], 7)
        c = _rotate_left(c + f(d, a, b) + x[k + 2], 11)
        b = _rotate_left(b + f(c, d, a) + x[k + 3], 19)
    for k in range(4):
        a = _rotate_left(a + g(b, c, d) + x[k] + 0x5A827999, 3)
        d = _rotate_left(d + g(a, b, c) + x[k + 4] + 0x5A827999, 5)
        c = _rotate_left(c + g(d, a, b) + x[k + 8] + 0x5A827999, 9)
        b = _rotate_left(b + g(c, d, a) + x[k + 12] + 0x5A827999, 13)
    for k in (0, 2, 1, 3):
        a = _rotate_left(a + h(b, c, d) + x[k] + 0x6ED9EBA1, 3)
        d = _rotate_left(d + h(a, b, c) + x[k + 8] + 0x6ED9EBA1, 9)
        c = _rotate_left(c + h(d, a, b) + x[k + 4] + 0x6ED9EBA1, 11)
        b = _rotate_left(b + h(c, d, a) + x[k + 12] + 0x6ED9EBA1, 15)
    return (
        (state[0] + a) & MASK_32,
        (state[1] + b) & MASK_32,
        (state[2] + c) & MASK_32,
        (state[3] + d) & MASK_32,
    )


def md4(message: bytes) -> bytes:
    """The 16-byte MD4 digest of `message` (RFC 1320)."""
    padded = message + md_padding(len(message))
    state = MD4_INITIAL_STATE
    for offset in range(0, len(padded), BLOCK_SIZE):
        state = _md4_compress(state, padded[offset : offset + BLOCK_SIZE])
    return struct.pack("<4I", *state)
