"""Reading DMARC (RFC 7489), MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) TXT records."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dinomail.dkim import DkimError, parse_tag_list

DMARC_POLICIES = ("none", "quarantine", "reject")
DMARC_TAGS = frozenset({
    "v", "p", "sp", "np", "pct", "adkim", "aspf", "fo", "rf", "ri", "rua", "ruf", "psd", "t",
})
_DMARC_START = re.compile(r"v\s*=\s*DMARC1\s*(;|$)")
_REPORT_URI = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):([^!\s]+)(?:!\d+[kmgtKMGT]?)?")
_STS_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_FIELD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


@dataclass
class Parsed:
    """A record's fields, what makes receivers ignore it, and what is merely unwise."""

    tags: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --- DMARC ----------------------------------------------------------------------------------------


def is_dmarc_record(text: str) -> bool:
    """Receivers discard TXT records at _dmarc that do not begin with v=DMARC1 (RFC 7489 6.6.3)."""
    return _DMARC_START.match(text) is not None


def parse_dmarc(text: str) -> Parsed:
    parsed = Parsed()
    try:
        parsed.tags = parse_tag_list(text)
    except DkimError as error:
        parsed.errors.append(str(error))
        return parsed
    tags = parsed.tags
    policy = tags.get("p", "").lower()
    if "p" not in tags:
        parsed.errors.append("there is no p= tag: receivers apply no policy")
    elif policy not in DMARC_POLICIES:
        parsed.errors.append(f"p={tags['p']}: the policy is none, quarantine or reject")
    for name in ("sp", "np"):
        if name in tags and tags[name].lower() not in DMARC_POLICIES:
            parsed.errors.append(f"{name}={tags[name]}: the policy is none, quarantine or reject")
    for name in ("adkim", "aspf"):
        if name in tags and tags[name].lower() not in ("r", "s"):
            parsed.errors.append(f"{name}={tags[name]}: alignment is r (relaxed) or s (strict)")
    if "pct" in tags:
        if not tags["pct"].isdigit() or int(tags["pct"]) > 100:
            parsed.errors.append(f"pct={tags['pct']}: a percentage from 0 to 100")
        elif int(tags["pct"]) < 100 and policy in ("quarantine", "reject"):
            parsed.warnings.append(
                f"pct={tags['pct']}: the policy applies to only part of the failing mail"
            )
    if "ri" in tags and not tags["ri"].isdigit():
        parsed.errors.append(f"ri={tags['ri']}: a number of seconds")
    if "fo" in tags and not all(
        option.strip() in ("0", "1", "d", "s") for option in tags["fo"].split(":")
    ):
        parsed.errors.append(f"fo={tags['fo']}: options are 0, 1, d and s, separated by :")
    for name in ("rua", "ruf"):
        if name in tags:
            _check_report_uris(parsed, name, tags[name], ("mailto",))
    for name in tags:
        if name not in DMARC_TAGS:
            parsed.warnings.append(f"{name}= is not a DMARC tag; receivers ignore it")
    if policy == "none":
        parsed.warnings.append(
            "p=none only monitors: receivers deliver mail that fails DMARC as usual"
        )
    return parsed


def _check_report_uris(
    parsed: Parsed, name: str, value: str, schemes: tuple[str, ...]
) -> None:
    uris = [uri.strip() for uri in value.split(",")]
    for uri in uris:
        match = _REPORT_URI.fullmatch(uri)
        if match is None:
            parsed.errors.append(f"{name}=: {uri!r} is not a URI (mailto:reports@example.org)")
        elif match[1].lower() not in schemes:
            parsed.errors.append(f"{name}=: {uri} should be a {' or '.join(schemes)}: URI")


# --- MTA-STS and TLS-RPT --------------------------------------------------------------------------


def _fields(text: str) -> dict[str, str]:
    """`name=value` fields separated by `;`, as MTA-STS and TLS-RPT records write them."""
    found: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.strip().partition("=")
        if not sep or not _FIELD_NAME.fullmatch(name):
            raise DkimError(f"{part.strip()!r} is not name=value")
        if name in found:
            raise DkimError(f"{name}= appears twice")
        found[name] = value
    return found


def _parsed_fields(text: str) -> Parsed:
    """The record's fields, or its one error when they cannot be read."""
    parsed = Parsed()
    try:
        parsed.tags = _fields(text)
    except DkimError as error:
        parsed.errors.append(str(error))
    return parsed


def is_mta_sts_record(text: str) -> bool:
    return text.startswith("v=STSv1;") or text == "v=STSv1"


def parse_mta_sts(text: str) -> Parsed:
    parsed = _parsed_fields(text)
    if parsed.errors:
        return parsed
    policy_id = parsed.tags.get("id")
    if policy_id is None:
        parsed.errors.append("there is no id= field (it changes whenever the policy changes)")
    elif not _STS_ID.fullmatch(policy_id):
        parsed.errors.append(f"id={policy_id}: 1 to 32 letters and digits")
    return parsed


def is_tls_rpt_record(text: str) -> bool:
    return text.startswith("v=TLSRPTv1;") or text == "v=TLSRPTv1"


def parse_tls_rpt(text: str) -> Parsed:
    parsed = _parsed_fields(text)
    if parsed.errors:
        return parsed
    if "rua" not in parsed.tags:
        parsed.errors.append("there is no rua= field (where reports are sent)")
    else:
        _check_report_uris(parsed, "rua", parsed.tags["rua"], ("mailto", "https"))
    return parsed
