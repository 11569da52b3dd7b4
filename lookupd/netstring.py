"""Netstrings (`<length>:<payload>,`), the framing of Postfix's socketmap protocol.

The parser is incremental: a connection feeds it whatever chunks the transport delivers, one byte
or many requests at a time, and gets back the payloads that are complete. It knows nothing about
what the payloads mean; the socketmap responder does. Malformed input raises `NetstringError` as
soon as it can be seen to be wrong, so a bad client is dropped without waiting for more bytes.
"""

from __future__ import annotations

# Postfix's `socketmap_max_query_size` (3.12+): Postfix itself never sends a longer key.
MAX_QUERY_BYTES = 10_000


class NetstringError(ValueError):
    """The bytes are not a netstring, or announce a payload above the parser's limit."""


class NetstringTooLong(NetstringError):
    """A length prefix above the limit: the client would send more than we accept."""


def encode_netstring(payload: bytes) -> bytes:
    return b"%d:%s," % (len(payload), payload)


class NetstringParser:
    """Splits a byte stream into netstring payloads.

    `max_payload` bounds both the payload and, through the number of digits it needs, the
    length prefix: a prefix with more digits than that is rejected before its colon arrives.
    Leading zeros are accepted within that digit budget, as Postfix's own reader does.
    """

    __slots__ = ("_buffer", "_length", "_max_digits", "_max_payload", "_prefix_size")

    def __init__(self, max_payload: int = MAX_QUERY_BYTES) -> None:
        if max_payload < 0:
            raise ValueError("max_payload must be zero or more")
        self._max_payload = max_payload
        self._max_digits = len(str(max_payload))
        self._buffer = bytearray()
        # The announced length of the payload being read, or None while reading a prefix.
        self._length: int | None = None
        # Bytes of that length prefix, already consumed from the buffer.
        self._prefix_size = 0

    @property
    def pending(self) -> int:
        """Bytes received and not yet part of a complete netstring (0: between netstrings)."""
        return self._prefix_size + len(self._buffer)

    def whole(self, data: bytes) -> bytes | None:
        """The payload, when nothing is pending and `data` is exactly one whole netstring; else
        None, and `feed` must take `data`.

        The common case, a client waiting for each reply: framed here without copying `data`
        through the buffer.
        """
        if self._buffer or self._length is not None:
            return None
        colon = data.find(b":", 0, self._max_digits + 1)
        if colon > 0 and data[-1] == 0x2C:  # ","
            digits = data[:colon]
            if digits.isdigit() and len(data) - colon - 2 == int(digits) <= self._max_payload:
                return data[colon + 1:-1]
        return None

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the payloads completed by them, in order."""
        payload = self.whole(data)
        if payload is not None:
            return [payload]
        buffer = self._buffer
        buffer += data
        payloads: list[bytes] = []
        position = 0
        end = len(buffer)
        while position < end:
            length = self._length
            if length is None:
                colon = buffer.find(b":", position, position + self._max_digits + 1)
                if colon < 0:
                    self._check_partial_prefix(buffer, position, end)
                    break
                length = self._parse_prefix(buffer, position, colon)
                self._length = length
                self._prefix_size = colon + 1 - position
                position = colon + 1
            if end - position <= length:
                break  # the payload or its terminating comma has not arrived yet
            if buffer[position + length] != 0x2C:  # ","
                raise NetstringError("netstring not terminated by a comma")
            payloads.append(bytes(buffer[position : position + length]))
            position += length + 1
            self._length = None
            self._prefix_size = 0
        del buffer[:position]
        return payloads

    def _parse_prefix(self, buffer: bytearray, start: int, colon: int) -> int:
        digits = buffer[start:colon]
        if not digits:
            raise NetstringError("netstring without a length")
        if not digits.isdigit():
            raise NetstringError("netstring length is not a decimal number")
        length = int(digits)
        if length > self._max_payload:
            raise NetstringTooLong(f"netstring of {length} bytes exceeds {self._max_payload}")
        return length

    def _check_partial_prefix(self, buffer: bytearray, start: int, end: int) -> None:
        """Reject an incomplete length prefix that can no longer become a valid one."""
        digits = buffer[start:end]
        if len(digits) > self._max_digits:
            raise NetstringTooLong(f"netstring length has more than {self._max_digits} digits")
        if not digits.isdigit():
            raise NetstringError("netstring length is not a decimal number")
        if int(digits) > self._max_payload:
            raise NetstringTooLong(f"netstring length exceeds {self._max_payload}")
