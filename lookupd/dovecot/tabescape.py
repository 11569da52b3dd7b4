"""Dovecot's tab escaping (`src/lib/strescape.c`), used by every field of the dict protocol.

A field may not hold the bytes that frame the protocol (TAB between fields, LF between lines),
so they travel as two bytes: `\\x01` followed by a letter. `\\x01` itself is escaped first, so
unescaping is unambiguous. Dovecot 2.4 also writes NUL as `\\x01 0`; 2.3 never sends a NUL.
"""

from __future__ import annotations

ESCAPE = b"\x01"

_ESCAPES = ((b"\x01", b"\x011"), (b"\t", b"\x01t"), (b"\r", b"\x01r"), (b"\n", b"\x01n"))
_UNESCAPES = {ord("1"): b"\x01", ord("t"): b"\t", ord("r"): b"\r", ord("n"): b"\n", ord("0"): b"\0"}


def tabescape(value: bytes) -> bytes:
    """Escape one field for the wire."""
    if b"\x01" in value or b"\t" in value or b"\r" in value or b"\n" in value:
        for raw, escaped in _ESCAPES:
            value = value.replace(raw, escaped)
    return value


def tabunescape(field: bytes) -> bytes:
    """Undo `tabescape`. As in Dovecot, `\\x01` before any other byte stands for that byte, and
    a trailing lone `\\x01` is dropped."""
    if ESCAPE not in field:
        return field
    out = bytearray()
    start = 0
    while True:
        at = field.find(ESCAPE, start)
        if at < 0:
            out += field[start:]
            return bytes(out)
        out += field[start:at]
        if at + 1 >= len(field):
            return bytes(out)
        code = field[at + 1]
        out += _UNESCAPES.get(code, bytes((code,)))
        start = at + 2


def split_fields(line: bytes) -> list[bytes]:
    """A line (without its LF) as unescaped fields; an empty line has none."""
    if not line:
        return []
    fields = line.split(b"\t")
    if ESCAPE in line:
        return [tabunescape(field) for field in fields]
    return fields


def join_fields(fields: list[bytes]) -> bytes:
    """Fields escaped and joined by TABs (without the LF)."""
    return b"\t".join([tabescape(field) for field in fields])
