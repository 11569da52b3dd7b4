"""Report messages as receivers send them, built from tests/fixtures/reports/ with each one's
MIME structure, content type, compression and file name:

- Google: multipart/mixed, `application/zip` named `google.com!<domain>!<begin>!<end>.zip`;
- Outlook.com: a text part and `application/gzip` named `...!<end>.xml.gz` (xsi/xsd
  namespace declarations in the XML; IPv6 sources);
- Yahoo: `application/zip`, the DMARCbis namespace, several records (IPv6 among them);
- TLS-RPT (RFC 8460 section 5.3): multipart/report; report-type="tlsrpt", with
  `application/tlsrpt+gzip` (Google) or `application/tlsrpt+json` (Microsoft), and the
  TLS-Report-Domain and TLS-Report-Submitter headers.

Plus the junk a report address gets: bombs, billion laughs, truncated gzip, foreign domains.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import smtplib
import struct
import zipfile
import zlib
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

FIXTURES = Path(__file__).parent.parent / "fixtures" / "reports"
DOMAIN = "example.org"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def zipped(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


def _message(sender: str, subject: str, attachment: MIMEApplication, *,
             text: str | None = None, report_type: str | None = None,
             headers: dict[str, str] | None = None) -> bytes:
    message = MIMEMultipart("report" if report_type else "mixed")
    if report_type:
        message.set_param("report-type", report_type)
    message["From"] = sender
    message["To"] = f"dmarc-reports@{DOMAIN}"
    message["Subject"] = subject
    message["Message-ID"] = f"<{abs(hash(subject))}@{sender.split('@')[1]}>"
    for key, value in (headers or {}).items():
        message[key] = value
    if text is not None:
        message.attach(MIMEText(text, "plain"))
    message.attach(attachment)
    return message.as_bytes()


def _attachment(content: bytes, subtype: str, filename: str) -> MIMEApplication:
    part = MIMEApplication(content, subtype)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    part.set_param("name", filename)
    return part


def google_dmarc() -> bytes:
    name = f"google.com!{DOMAIN}!1796428800!1796515199"
    return _message(
        "noreply-dmarc-support@google.com",
        f"Report domain: {DOMAIN} Submitter: google.com Report-ID: 16934029753861457233",
        _attachment(zipped(f"{name}.xml", fixture("google.xml")), "zip", f"{name}.zip"),
        text="",
    )


def outlook_dmarc() -> bytes:
    name = f"protection.outlook.com!{DOMAIN}!1796342400!1796428800.xml.gz"
    return _message(
        "dmarcreport@microsoft.com",
        f"Report Domain: {DOMAIN} Submitter: protection.outlook.com Report-ID: "
        "8f2c1a4b7e0d4c3b9a6f5e4d3c2b1a09",
        _attachment(gzip.compress(fixture("outlook.xml")), "gzip", name),
        text="This is a DMARC aggregate report from Microsoft Corporation.",
    )


def yahoo_dmarc() -> bytes:
    name = f"yahoo.com!{DOMAIN}!1796428800!1796515199"
    return _message(
        "noreply@dmarc.yahoo.com", f"Report Domain: {DOMAIN} Submitter: yahoo.com Report-ID: "
        "<1796515212.481530>",
        _attachment(zipped(f"{name}.xml", fixture("yahoo.xml")), "zip", f"{name}.xml.zip"),
    )


def _tlsrpt(sender: str, submitter: str, attachment: MIMEApplication) -> bytes:
    return _message(
        sender, f"Report Domain: {DOMAIN} Submitter: {submitter} Report-ID: <x@{submitter}>",
        attachment, text=f"This is an aggregate TLS report from {submitter}",
        report_type="tlsrpt",
        headers={"TLS-Report-Domain": DOMAIN, "TLS-Report-Submitter": submitter},
    )


def google_tlsrpt() -> bytes:
    name = f"google.com!{DOMAIN}!1796428800!1796515199!001.json.gz"
    return _tlsrpt("noreply-smtp-tls-reporting@google.com", "google.com",
                   _attachment(gzip.compress(fixture("google-tlsrpt.json")), "tlsrpt+gzip",
                               name))


def microsoft_tlsrpt() -> bytes:
    name = f"microsoft.com!{DOMAIN}!1796428800!1796515199.json"
    return _tlsrpt("tlsrpt-noreply@microsoft.com", "microsoft.com",
                   _attachment(fixture("microsoft-tlsrpt.json"), "tlsrpt+json", name))


GOOD_REPORTS = {
    "google": google_dmarc, "outlook": outlook_dmarc, "yahoo": yahoo_dmarc,
    "google-tlsrpt": google_tlsrpt, "microsoft-tlsrpt": microsoft_tlsrpt,
}


# --- junk -----------------------------------------------------------------------------------------

TEN_GB = 10 * 1024**3


BLOCK_MAGIC = 0x314159265359
END_MAGIC = 0x177245385090


def _bits(data: bytes) -> str:
    return "".join(f"{byte:08b}" for byte in data)


@functools.cache
def _bzip2_zero_block() -> tuple[str, int, int]:
    """One full bzip2 block of zeros (level 1) as a bit string, its CRC, and how many bytes it
    expands to. bzip2 streams are bit-aligned, so blocks are found by their magic number."""
    stream = _bits(bz2.compress(b"\0" * (12 * 1024 * 1024), 1))
    magic = f"{BLOCK_MAGIC:048b}"
    first = stream.index(magic, 32)
    second = stream.index(magic, first + 48)
    block = stream[first:second]
    crc = int(block[48:80], 2)
    single = _bzip2_stream(block, crc, 1)
    return block, crc, len(bz2.decompress(single))


def _bzip2_stream(block: str, crc: int, count: int) -> bytes:
    combined = 0
    for _ in range(count):
        combined = (((combined << 1) | (combined >> 31)) & 0xFFFFFFFF) ^ crc
    bits = _bits(b"BZh1") + block * count + f"{END_MAGIC:048b}" + f"{combined:032b}"
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def zip_bomb(expanded: int = TEN_GB, *, honest_header: bool = True) -> bytes:
    """A zip whose one member inflates to at least `expanded` bytes of zeros, in a few tens of
    kilobytes: bzip2 blocks of zeros, repeated (made without ever holding the zeros).
    `honest_header` false declares a small size, as an attacker would to pass a size check."""
    block, crc, per_block = _bzip2_zero_block()
    count = -(-expanded // per_block)
    body = _bzip2_stream(block, crc, count)
    # Written by hand (zipfile would compress again): local header, data, central directory.
    size = count * per_block if honest_header else 1000
    name = b"report.xml"
    extra = struct.pack("<HHQQ", 1, 16, size, len(body))
    local = struct.pack("<4s5HL2L2H", b"PK\x03\x04", 46, 0, zipfile.ZIP_BZIP2, 0, 0x5A21, 0,
                        0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra)) + name + extra
    central_extra = struct.pack("<HHQQQ", 1, 24, size, len(body), 0)
    central = struct.pack("<4s6HL2L5HLL", b"PK\x01\x02", 46, 46, 0, zipfile.ZIP_BZIP2, 0,
                          0x5A21, 0, 0xFFFFFFFF, 0xFFFFFFFF, len(name), len(central_extra),
                          0, 0, 0, 0, 0xFFFFFFFF) + name + central_extra
    offset = len(local) + len(body)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), offset, 0)
    return local + body + central + end


def gzip_bomb(expanded: int = 1024**3) -> bytes:
    """A gzip file of `expanded` zeros (about a thousandth of that compressed), made of one
    deflate block repeated: full flushes make each megabyte's block the same bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(b"\0" * 1024 * 1024) + compressor.flush(zlib.Z_FULL_FLUSH)
    body = block * (expanded // (1024 * 1024)) + compressor.flush(zlib.Z_FINISH)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + body + struct.pack("<LL", 0, expanded & 0xFFFFFFFF)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<feedback><report_metadata><org_name>&lol9;</org_name></report_metadata></feedback>
"""


def junk_message(content: bytes, subtype: str, filename: str) -> bytes:
    return _message("mailer-daemon@attacker.example", f"Report Domain: {DOMAIN} {filename}",
                    _attachment(content, subtype, filename), text="")


def foreign_dmarc() -> bytes:
    xml = fixture("google.xml").replace(b"<domain>example.org</domain>",
                                        b"<domain>not-ours.example</domain>")
    xml = xml.replace(b"16934029753861457233", b"foreign-1")
    return junk_message(gzip.compress(xml), "gzip", "google.com!not-ours.example!1!2.xml.gz")


def truncated_gzip() -> bytes:
    data = gzip.compress(fixture("outlook.xml"))
    return junk_message(data[: len(data) // 2], "gzip", "truncated.xml.gz")


JUNK = {
    "zip bomb": lambda: junk_message(zip_bomb(), "zip", "bomb.zip"),
    "gzip bomb": lambda: junk_message(gzip_bomb(), "gzip", "bomb.xml.gz"),
    "billion laughs": lambda: junk_message(BILLION_LAUGHS, "xml", "laughs.xml"),
    "foreign domain": foreign_dmarc,
    "truncated gzip": truncated_gzip,
    "no attachment": lambda: MIMEText("Hello, is this the postmaster?").as_bytes(),
}


def lmtp_send(port: int, message: bytes, recipients: list[str]) -> dict[str, tuple[int, bytes]]:
    """Send over LMTP and read one answer per recipient after DATA (RFC 2033 section 4.2)."""
    client = smtplib.LMTP("127.0.0.1", port, timeout=30)
    try:
        client.ehlo_or_helo_if_needed = lambda: client.docmd("LHLO", "test")  # type: ignore[method-assign]
        client.docmd("LHLO", "test")
        assert client.mail("reports@receiver.example")[0] == 250
        for recipient in recipients:
            assert client.rcpt(recipient)[0] == 250
        code, _ = client.docmd("DATA")
        assert code == 354
        client.send(smtplib.quotedata(message.decode("latin-1")).encode("latin-1") + b"\r\n.\r\n")
        return {recipient: client.getreply() for recipient in recipients}
    finally:
        client.close()
