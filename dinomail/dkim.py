"""DKIM keys: making a key pair, the TXT record to publish, reading published records, and the
files a signer (OpenDKIM, Rspamd) reads.

DinoMail does not sign mail itself; it makes the key, tells the admin what to publish, checks
that DNS publishes it (`dinomail.dnscheck`) and hands the private key to the signer. Keys are
compared as key material, never as text: the same key can be published with different base64
line breaks, or as PKCS#1 instead of SubjectPublicKeyInfo, and is still the same key.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from dinomail.validation import ValidationError

RSA = "rsa"
ED25519 = "ed25519"
ALGORITHMS = (RSA, ED25519)
# RFC 8301: verifiers must handle 1024 to 4096 bits; 2048 is what everyone publishes today.
RSA_KEY_BITS = (2048, 3072, 4096)
DEFAULT_RSA_BITS = 2048
ED25519_KEY_BITS = 256
# Below this, RFC 8301 says verifiers must not accept an RSA signature.
MIN_RSA_BITS = 1024
# One DNS character-string holds at most 255 bytes; longer TXT data is several strings.
TXT_STRING_LIMIT = 255
MAX_SELECTOR_LENGTH = 63

_SELECTOR_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
# RFC 6376 3.2: tag-name = ALPHA *ALNUMPUNC (ALNUMPUNC = ALPHA / DIGIT / "_").
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class DkimError(ValueError):
    """A DKIM record or key that cannot be read; the message says why, for the admin."""


# --- key pairs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyPair:
    algorithm: str
    key_bits: int
    # PKCS#8 PEM: what OpenDKIM and Rspamd read, for RSA and Ed25519 alike.
    private_pem: str
    # The record's p= value: base64 of the SubjectPublicKeyInfo (RSA) or of the raw 32-byte
    # key (Ed25519, RFC 8463).
    public_value: str


def generate_key(algorithm: str = RSA, key_bits: int = DEFAULT_RSA_BITS) -> KeyPair:
    """A new key pair. RSA takes a few hundredths of a second (4096 bits: ~0.3 s)."""
    if algorithm == RSA:
        if key_bits not in RSA_KEY_BITS:
            raise ValueError(f"RSA keys are {', '.join(map(str, RSA_KEY_BITS))} bits")
        private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = rsa.generate_private_key(
            public_exponent=65537, key_size=key_bits
        )
    elif algorithm == ED25519:
        private = ed25519.Ed25519PrivateKey.generate()
        key_bits = ED25519_KEY_BITS
    else:
        raise ValueError(f"unknown DKIM key algorithm {algorithm!r}")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return KeyPair(algorithm, key_bits, pem, public_value_of(private.public_key()))


def public_value_of(key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raw = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return base64.b64encode(raw).decode("ascii")


def public_value_of_private(private_pem: str) -> str:
    """The p= value that belongs to a stored private key."""
    private = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    if not isinstance(private, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise DkimError("the private key is neither RSA nor Ed25519")
    return public_value_of(private.public_key())


# --- selectors and the record to publish ----------------------------------------------------------


def normalize_selector(value: object, field: str = "selector") -> str:
    """A selector is one or more DNS labels (RFC 6376 3.1), stored lowercase."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(
            field, "a selector is required, such as dm202611", code="dkim_selector_required"
        )
    selector = value.strip().lower()
    if len(selector) > MAX_SELECTOR_LENGTH:
        raise ValidationError(
            field, f"a selector is at most {MAX_SELECTOR_LENGTH} characters",
            code="dkim_selector_too_long", params={"limit": MAX_SELECTOR_LENGTH},
        )
    if not all(_SELECTOR_LABEL.fullmatch(label) for label in selector.split(".")):
        raise ValidationError(
            field, "a selector holds letters, digits and inner hyphens (dots between parts)",
            code="dkim_selector_invalid",
        )
    return selector


def default_selector(now: datetime, taken: str | Collection[str] = "") -> str:
    """A dated selector, so a rotated key gets a new name and the old record can stay
    published until mail signed with it has been delivered. `taken`: the selectors the domain
    still publishes (the current one, and those of keys a rotation replaced)."""
    used = {taken} if isinstance(taken, str) else set(taken)
    for selector in (f"dm{now:%Y%m%d}", f"dm{now:%Y%m%d%H%M%S}"):
        if selector not in used:
            return selector
    return next(f"dm{now:%Y%m%d%H%M%S}-{number}" for number in range(2, len(used) + 3)
                if f"dm{now:%Y%m%d%H%M%S}-{number}" not in used)


def record_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}"


def record_text(algorithm: str, public_value: str) -> str:
    return f"v=DKIM1; k={algorithm}; p={public_value}"


def split_txt(text: str, limit: int = TXT_STRING_LIMIT) -> list[str]:
    """The character-strings of a TXT record: verifiers join them back without separators."""
    data = text.encode("ascii")
    return [data[start:start + limit].decode("ascii") for start in range(0, len(data), limit)]


def zone_line(selector: str, domain: str, text: str) -> str:
    """The record as a zone file line (BIND, NSD, Knot), split into strings of 255 bytes."""
    strings = " ".join(f'"{part}"' for part in split_txt(text))
    return f"{record_name(selector, domain)}. IN TXT ( {strings} )"


# --- reading published records --------------------------------------------------------------------


def parse_tag_list(text: str) -> dict[str, str]:
    """RFC 6376 3.2 tag=value lists, also used by DMARC, MTA-STS and TLS-RPT records.

    Values keep inner spaces (a p= value may be folded; `public_key_of` removes them). A
    duplicate tag makes the whole list invalid, as the RFC says.
    """
    tags: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue  # a trailing ";" is allowed
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise DkimError(f"{part.strip()!r} is not tag=value")
        if not _TAG_NAME.fullmatch(name):
            raise DkimError(f"{name!r} is not a valid tag name")
        if name in tags:
            raise DkimError(f"the tag {name}= appears twice")
        tags[name] = value.strip()
    return tags


@dataclass(frozen=True, slots=True)
class PublicKey:
    """Key material in one canonical form, so two encodings of one key compare equal."""

    algorithm: str
    key_bits: int
    material: bytes

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PublicKey)
            and (self.algorithm, self.material) == (other.algorithm, other.material)
        )

    def __hash__(self) -> int:
        return hash((self.algorithm, self.material))


def public_key_of(public_value: str, algorithm: str | None = None) -> PublicKey:
    """The key behind a p= value. `algorithm` is the record's k= (None: guess from the data, as
    for a key an admin typed in without saying which kind it is)."""
    compact = "".join(public_value.split())
    if not compact:
        raise DkimError("the key is empty")
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise DkimError("the key is not valid base64") from None
    if algorithm == ED25519 or (algorithm is None and len(raw) == 32):
        if len(raw) != 32:
            raise DkimError(f"an Ed25519 key is 32 bytes, this one is {len(raw)}")
        return PublicKey(ED25519, ED25519_KEY_BITS, raw)
    if algorithm not in (None, RSA):
        raise DkimError(f"k={algorithm} is not a key type DKIM verifiers know (rsa, ed25519)")
    try:
        # SubjectPublicKeyInfo, or a bare PKCS#1 RSAPublicKey, which some tools publish.
        key = serialization.load_der_public_key(raw)
    except (ValueError, TypeError):
        raise DkimError("the key is not a valid RSA public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise DkimError("k=rsa, but the key is not an RSA key")
    canonical = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return PublicKey(RSA, key.key_size, canonical)


# --- what a signer reads --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignerKey:
    domain: str
    selector: str
    private_pem: str


def key_file_name(key: SignerKey) -> str:
    # Rspamd's own convention ($domain.$selector.key), also fine for OpenDKIM.
    return f"{key.domain}.{key.selector}.key"


def key_path(key: SignerKey, key_dir: str) -> str:
    return f"{key_dir.rstrip('/')}/{key_file_name(key)}"


def opendkim_key_table(keys: Iterable[SignerKey], key_dir: str) -> str:
    """OpenDKIM `KeyTable` lines: `name domain:selector:path`."""
    return "".join(
        f"{record_name(key.selector, key.domain)} {key.domain}:{key.selector}:"
        f"{key_path(key, key_dir)}\n"
        for key in keys
    )


def opendkim_signing_table(keys: Iterable[SignerKey]) -> str:
    """OpenDKIM `SigningTable` lines, for `SigningTable refile:<file>`: every sender of the
    domain signs with its key."""
    return "".join(f"*@{key.domain} {record_name(key.selector, key.domain)}\n" for key in keys)


def rspamd_selector_map(keys: Iterable[SignerKey]) -> str:
    """Rspamd `dkim_signing` `selector_map` lines: `domain selector`."""
    return "".join(f"{key.domain} {key.selector}\n" for key in keys)


def rspamd_path_map(keys: Iterable[SignerKey], key_dir: str) -> str:
    """Rspamd `dkim_signing` `path_map` lines: `domain path`."""
    return "".join(f"{key.domain} {key_path(key, key_dir)}\n" for key in keys)


SIGNER_FILES = ("KeyTable", "SigningTable", "dkim_selectors.map", "dkim_paths.map")


def write_signer_files(
    directory: Path, keys: Sequence[SignerKey], key_dir: str | None = None
) -> list[Path]:
    """Write every private key (mode 0600) and the OpenDKIM and Rspamd tables into `directory`.

    `key_dir` is where the signer will find the keys, when it is not `directory` itself (a
    container's mount point). Each file is replaced atomically, so a signer reloading at the
    wrong moment reads the old file or the new one, never half of one.
    """
    directory.mkdir(parents=True, exist_ok=True)
    where = key_dir or str(directory.resolve())
    contents = {key_file_name(key): key.private_pem for key in keys}
    contents |= dict(zip(SIGNER_FILES, (
        opendkim_key_table(keys, where), opendkim_signing_table(keys),
        rspamd_selector_map(keys), rspamd_path_map(keys, where),
    ), strict=True))
    written = []
    for name, text in contents.items():
        written.append(_replace_file(directory / name, text, 0o600 if name.endswith(".key")
                                     else 0o644))
    return written


def _replace_file(path: Path, text: str, mode: int) -> Path:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
