"""Reading SPF, DMARC, MTA-STS and TLS-RPT records without DNS; the mapping onto the original
status columns; the DNS settings."""

from __future__ import annotations

import pytest

from dinomail.dnscheck.model import CheckResult, CheckStatus, original_statuses
from dinomail.dnscheck.policies import (
    is_dmarc_record,
    parse_dmarc,
    parse_mta_sts,
    parse_tls_rpt,
)
from dinomail.dnscheck.resolver import parse_nameserver
from dinomail.dnscheck.spf import is_spf_record, parse_spf, valid_domain_spec
from dinomail.settings import SettingsError, load_settings


def test_spf_records_are_recognised_exactly() -> None:
    assert is_spf_record("v=spf1 -all") and is_spf_record("V=SPF1") and is_spf_record("v=spf1")
    assert not is_spf_record("v=spf10 -all") and not is_spf_record(" v=spf1 -all")
    assert not is_spf_record("spf2.0/pra -all")


def test_a_valid_spf_record() -> None:
    record = parse_spf("v=spf1  ip4:192.0.2.0/24 ip6:2001:db8::/32 a a:mail.example.org/28 "
                       "mx/24//64 include:_spf.example.net exists:%{i}.%{v}.e.example.org "
                       "unknown-mod=x ~all")
    assert record.errors == [] and record.warnings == []
    # a, a:, mx, include, exists: five lookups; the macro target is counted but not followed.
    assert record.lookups == 5 and record.followed == ["_spf.example.net"]
    assert record.all_result == "softfail" and not record.open_ended


@pytest.mark.parametrize(("text", "error"), [
    ("v=spf1 ip4:300.1.1.1 -all", "not a valid ip4 address"),
    ("v=spf1 ip4:2001:db8::1 -all", "an IPv6 address after ip4:"),
    ("v=spf1 ip6:192.0.2.1 -all", "an IPv4 address after ip6:"),
    ("v=spf1 ip4 -all", "ip4 needs an address"),
    ("v=spf1 include -all", "include needs a domain"),
    ("v=spf1 include:nodot -all", "include needs a domain"),
    ("v=spf1 foo:bar -all", "foo is not an SPF mechanism"),
    ("v=spf1 a/33 -all", "not a valid prefix length"),
    ("v=spf1 mx//129 -all", "not a valid prefix length"),
    ("v=spf1 all:x", "all takes no value"),
    ("v=spf1 redirect=a.example redirect=b.example", "redirect= appears twice"),
    ("v=spf1 exp=%{z}.example -all", "exp=%{z}.example: not a valid domain"),
    ("v=spf1 !mx -all", "is not an SPF mechanism or modifier"),
])
def test_broken_spf_records(text: str, error: str) -> None:
    assert any(error in found for found in parse_spf(text).errors), parse_spf(text).errors


def test_unwise_spf_records() -> None:
    assert parse_spf("v=spf1 +all").warnings == [
        "+all lets every server on the internet send mail as the domain"]
    assert parse_spf("v=spf1 all").warnings == [
        "all lets every server on the internet send mail as the domain"]
    after_all = parse_spf("v=spf1 -all mx")
    assert after_all.warnings == ["mx: terms after all are never evaluated"]
    assert after_all.lookups == 1
    redirected = parse_spf("v=spf1 redirect=_spf.example.org")
    assert redirected.followed == ["_spf.example.org"] and redirected.lookups == 1
    assert not redirected.open_ended
    ignored = parse_spf("v=spf1 -all redirect=_spf.example.org")
    assert ignored.followed == [] and "redirect= is ignored" in ignored.warnings[0]
    assert "ptr is slow" in parse_spf("v=spf1 ptr -all").warnings[0]
    assert parse_spf("v=spf1 mx").open_ended


def test_domain_specs() -> None:
    assert valid_domain_spec("_spf.example.org") and valid_domain_spec("example.org.")
    assert valid_domain_spec("%{ir}.%{v}._spf.%{d2}") and valid_domain_spec("%%.%_.%-.example")
    for bad in ("", "nodot", "a..b", "exa mple.org", "%{x}.example", "%", "é.example"):
        assert not valid_domain_spec(bad), bad


def test_dmarc_records() -> None:
    assert is_dmarc_record("v=DMARC1; p=none") and is_dmarc_record("v = DMARC1")
    assert not is_dmarc_record("p=none; v=DMARC1") and not is_dmarc_record("v=DMARC10")
    good = parse_dmarc("v=DMARC1; p=quarantine; sp=reject; pct=100; adkim=s; aspf=r; fo=0:d; "
                       "ri=86400; rua=mailto:a@example.org!10m, mailto:b@example.org; "
                       "ruf=mailto:f@example.org")
    assert good.errors == [] and good.warnings == []
    assert good.tags["p"] == "quarantine" and good.tags["sp"] == "reject"
    for text, error in (
        ("v=DMARC1", "no p= tag"), ("v=DMARC1; p=block", "p=block"),
        ("v=DMARC1; p=none; sp=x", "sp=x"), ("v=DMARC1; p=none; pct=101", "pct=101"),
        ("v=DMARC1; p=none; adkim=x", "adkim=x"), ("v=DMARC1; p=none; fo=2", "fo=2"),
        ("v=DMARC1; p=none; rua=reports@example.org", "is not a URI"),
        ("v=DMARC1; p=none; rua=https://example.org/r", "should be a mailto: URI"),
        ("v=DMARC1; p=none; p=reject", "twice"),
    ):
        assert any(error in found for found in parse_dmarc(text).errors), text
    assert "p=none only monitors" in parse_dmarc("v=DMARC1; p=none").warnings[0]
    assert "pct=50" in parse_dmarc("v=DMARC1; p=reject; pct=50").warnings[0]
    assert "zz= is not a DMARC tag" in parse_dmarc("v=DMARC1; p=reject; zz=1").warnings[0]


def test_mta_sts_and_tls_rpt_records() -> None:
    assert parse_mta_sts("v=STSv1; id=20261125T01;").errors == []
    assert parse_mta_sts("v=STSv1; id=1; ext-field.x=y").errors == []
    assert "no id=" in parse_mta_sts("v=STSv1;").errors[0]
    assert "1 to 32" in parse_mta_sts("v=STSv1; id=" + "a" * 33).errors[0]
    assert parse_tls_rpt("v=TLSRPTv1; rua=mailto:t@example.org,https://r.example.org/r"
                         ).errors == []
    assert "should be a mailto or https" in parse_tls_rpt("v=TLSRPTv1; rua=ftp://x").errors[0]


def test_original_columns() -> None:
    def result(check: str, status: CheckStatus) -> CheckResult:
        return CheckResult(check, status, "")

    assert original_statuses([
        result("dkim", CheckStatus.OK), result("dmarc", CheckStatus.WARNING),
        result("spf", CheckStatus.INVALID), result("mx", CheckStatus.OK),
    ]) == {"dkim_status": 4, "dmarc_status": 2, "spf_status": 0}
    assert original_statuses([
        result("dkim", CheckStatus.NOT_CONFIGURED), result("dmarc", CheckStatus.INVALID),
        result("spf", CheckStatus.WARNING),
    ]) == {"dkim_status": 0, "dmarc_status": 1, "spf_status": 1}
    # DNS did not answer: the columns keep what they said.
    assert original_statuses([result(check, CheckStatus.COULD_NOT_CHECK)
                              for check in ("dkim", "dmarc", "spf")]) == {}
    assert original_statuses([result("dkim", CheckStatus.MISSING),
                              result("dkim", CheckStatus.INVALID),
                              result("dkim", CheckStatus.MISMATCH)]) == {"dkim_status": 3}


def test_nameservers_and_dns_settings() -> None:
    assert parse_nameserver("192.0.2.53") == ("192.0.2.53", 53)
    assert parse_nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_nameserver("2001:db8::53") == ("2001:db8::53", 53)
    assert parse_nameserver("[2001:db8::53]:5353") == ("2001:db8::53", 5353)
    for bad in ("dns.example.org", "127.0.0.1:0", "127.0.0.1:x", "[::1", "[::1]x"):
        with pytest.raises(ValueError):
            parse_nameserver(bad)
    settings = load_settings(environ={
        "DINOMAIL_DNS_RESOLVERS": "127.0.0.1:5353, [::1]:53", "DINOMAIL_DNS_TIMEOUT": "2.5",
        "DINOMAIL_DNS_CHECK_INTERVAL": "0", "DINOMAIL_MX_HOST": "mail.example.org",
    })
    assert settings.DNS_RESOLVERS == ("127.0.0.1:5353", "[::1]:53")
    assert (settings.DNS_TIMEOUT, settings.DNS_CHECK_INTERVAL) == (2.5, 0.0)
    defaults = load_settings(environ={})
    assert (defaults.DNS_RESOLVERS, defaults.DNS_CHECK_INTERVAL, defaults.MX_HOST) == (
        (), 21600.0, "")
    for name, value in (("DNS_RESOLVERS", "resolver.example"), ("DNS_TIMEOUT", "0"),
                        ("DNS_CHECK_INTERVAL", "-1"), ("DNS_CHECK_CONCURRENCY", "0"),
                        ("MX_HOST", "not a host"), ("DKIM_KEY_DIR", "relative/dir")):
        with pytest.raises(SettingsError) as raised:
            load_settings(environ={f"DINOMAIL_{name}": value})
        assert raised.value.key == name
