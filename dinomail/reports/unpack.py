"""Decompressing a report attachment without trusting it.

Receivers send reports as plain files, gzip (`.xml.gz`, `application/tlsrpt+gzip`) or zip with
one file. An attacker can send a few kilobytes that expand to gigabytes, so data is inflated
`CHUNK` bytes at a time (the decompressors' `max_length`) and refused as soon as it passes
`MAX_EXPANDED` bytes, or grows more than `MAX_RATIO` times the compressed size past
`RATIO_FLOOR`: memory stays bounded by the cap, and a bomb is refused after at most one cap's
worth of work, whatever its headers claim.

A zip member is inflated here too, from its raw bytes, rather than through `zipfile`'s reader:
that one inflates bzip2 and LZMA members a whole read at a time, without a bound.
"""

from __future__ import annotations

import bz2
import io
import struct
import zipfile
import zlib
from typing import Protocol

from dinomail.reports.errors import ReportError

# A DMARC report of a large receiver for a busy domain is a few megabytes of XML.
MAX_COMPRESSED = 10 * 1024 * 1024
MAX_EXPANDED = 50 * 1024 * 1024
# Real reports compress 10 to 50 times; XML full of repeated records maybe 200 times.
MAX_RATIO = 1000
# Below this size the ratio is not checked (a tiny file compresses badly or absurdly well).
RATIO_FLOOR = 1024 * 1024
CHUNK = 64 * 1024

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
LOCAL_HEADER = struct.Struct("<4s5HL2L2H")


class Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = ...) -> bytes: ...


def _check_growth(expanded: int, compressed: int) -> None:
    if expanded > MAX_EXPANDED:
        raise ReportError(f"expands to more than {MAX_EXPANDED} bytes (a decompression bomb?)")
    if expanded > RATIO_FLOOR and expanded > compressed * MAX_RATIO:
        raise ReportError(f"expands more than {MAX_RATIO} times (a decompression bomb?)")


def inflate(data: bytes, decompressor: Decompressor, what: str) -> bytes:
    """All of `data` through `decompressor`, `CHUNK` bytes out at a time, within the limits."""
    if len(data) > MAX_COMPRESSED:
        raise ReportError(f"compressed report larger than {MAX_COMPRESSED} bytes")
    parts: list[bytes] = []
    expanded = 0
    pending = data
    try:
        while not decompressor.eof:
            chunk = decompressor.decompress(pending, CHUNK)
            # zlib keeps unused input in `unconsumed_tail`; bz2 keeps it inside (needs_input).
            pending = getattr(decompressor, "unconsumed_tail", b"")
            if not chunk and not pending and getattr(decompressor, "needs_input", True):
                break  # every byte used, and no end of stream: truncated
            expanded += len(chunk)
            _check_growth(expanded, len(data))
            parts.append(chunk)
    except (zlib.error, OSError, ValueError, EOFError) as error:
        raise ReportError(f"broken {what} data ({error})") from None
    if not decompressor.eof:
        raise ReportError(f"truncated {what} data")
    return b"".join(parts)


def gunzip(data: bytes) -> bytes:
    # 16 + MAX_WBITS: gzip framing only.
    return inflate(data, zlib.decompressobj(16 + zlib.MAX_WBITS), "gzip")


def _member_bytes(data: bytes, info: zipfile.ZipInfo) -> bytes:
    """The raw (still compressed) bytes of a member, from its local header."""
    start = info.header_offset
    header = data[start:start + LOCAL_HEADER.size]
    if len(header) != LOCAL_HEADER.size or header[:4] != ZIP_MAGIC:
        raise ReportError("broken zip archive (bad local header)")
    fields = LOCAL_HEADER.unpack(header)
    name_length, extra_length = fields[-2], fields[-1]
    begin = start + LOCAL_HEADER.size + name_length + extra_length
    raw = data[begin:begin + info.compress_size]
    if len(raw) != info.compress_size:
        raise ReportError("truncated zip archive")
    return raw


def unzip(data: bytes) -> tuple[str, bytes]:
    """The one file of a zip archive: its name and content."""
    if len(data) > MAX_COMPRESSED:
        raise ReportError(f"compressed report larger than {MAX_COMPRESSED} bytes")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as error:
        raise ReportError(f"broken zip archive ({error})") from None
    if len(members) != 1:
        raise ReportError(f"a zip report holds one file, this one holds {len(members)}")
    info = members[0]
    if info.flag_bits & 0x1:
        raise ReportError("an encrypted zip archive")
    # The declared size is a hint for a fast refusal; the inflating below is the real limit.
    if info.file_size > MAX_EXPANDED:
        raise ReportError(f"expands to more than {MAX_EXPANDED} bytes (a decompression bomb?)")
    raw = _member_bytes(data, info)
    if info.compress_type == zipfile.ZIP_STORED:
        content = raw
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        content = inflate(raw, zlib.decompressobj(-zlib.MAX_WBITS), "zip")
    elif info.compress_type == zipfile.ZIP_BZIP2:
        content = inflate(raw, bz2.BZ2Decompressor(), "zip (bzip2)")
    else:
        raise ReportError(f"a zip compression method reports do not use ({info.compress_type})")
    if zlib.crc32(content) != info.CRC:
        raise ReportError("broken zip archive (CRC mismatch)")
    return info.filename, content


def expand(data: bytes) -> bytes:
    """The report file's content: gzip and zip are recognised by their first bytes, whatever the
    content type said (receivers get those wrong), anything else is taken as it is."""
    if data.startswith(GZIP_MAGIC):
        return gunzip(data)
    if data.startswith(ZIP_MAGIC):
        return unzip(data)[1]
    if len(data) > MAX_EXPANDED:
        raise ReportError(f"report larger than {MAX_EXPANDED} bytes")
    return data
