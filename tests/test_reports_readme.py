"""The README's MTA-STS and reports section, checked against the product: its settings file
loads, its records have the shapes DinoMail serves and parses, its Postfix step names the
shipped file."""

from __future__ import annotations

import re
from pathlib import Path

from dinomail import mtasts
from dinomail.dnscheck.policies import parse_dmarc, parse_mta_sts, parse_tls_rpt
from dinomail.settings import load_settings
from tests.support.readme import _FENCE, section

HEADING = "MTA-STS, DMARC and TLS reports"


def _blocks(language: str) -> list[str]:
    return [body for lang, body in _FENCE.findall(section(HEADING)) if lang == language]


def test_the_settings_block_loads(tmp_path: Path) -> None:
    toml, = _blocks("toml")
    path = tmp_path / "dinomail.toml"
    path.write_text(toml)
    settings = load_settings(str(path), environ={})
    assert settings.REPORTS_LMTP_LISTEN == "127.0.0.1:10030"
    assert settings.REPORTS_RETENTION_DAYS == 365
    # The shipped Postfix line sends the report address to that listener.
    shipped = Path(__file__).parent.parent / "conf" / "postfix" / "reports.cf"
    assert f"lmtp:inet:{settings.REPORTS_LMTP_LISTEN}" in shipped.read_text()
    assert "conf/postfix/reports.cf" in section(HEADING)


def test_the_records_shown_are_valid() -> None:
    records = "\n".join(_blocks(""))
    sts = re.search(r'_mta-sts\.example\.org\. IN TXT "([^"]+)"', records).group(1)
    assert not parse_mta_sts(sts).errors
    assert re.fullmatch(rf"v=STSv1; id=[0-9a-f]{{{mtasts.ID_LENGTH}}}", sts)
    dmarc = re.search(r'_dmarc\.example\.org\.\s+IN TXT "([^"]+)"', records).group(1)
    assert not parse_dmarc(dmarc).errors
    tls = re.search(r'_smtp\._tls\.example\.org\. IN TXT "([^"]+)"', records).group(1)
    assert not parse_tls_rpt(tls).errors
