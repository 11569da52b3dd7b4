"""The checks: one coroutine per record kind, each asking DNS and saying what it found.

Every check gives a `CheckResult` whatever happens: a DNS failure is a `could_not_check` result,
never an exception, and never a verdict on the record.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import dns.name

from dinomail import dkim, mtasts
from dinomail.dnscheck.model import CHECK_NAMES, CheckResult, CheckStatus, Query, could_not_check
from dinomail.dnscheck.policies import (
    is_dmarc_record,
    is_mta_sts_record,
    is_tls_rpt_record,
    parse_dmarc,
    parse_mta_sts,
    parse_tls_rpt,
)
from dinomail.dnscheck.resolver import Resolver
from dinomail.dnscheck.spf import LOOKUP_LIMIT, SpfRecord, is_spf_record, parse_spf

# Following include: chains: deeper than this, or more records than this, is a loop or abuse.
MAX_SPF_DEPTH = 10
MAX_SPF_QUERIES = 30


@dataclass(frozen=True, slots=True)
class CheckInputs:
    """What the checks of one domain compare DNS with."""

    domain: str
    dkim_selector: str = ""
    dkim_key: str = ""
    # The host the MX should name; empty: nothing to compare with.
    mx_host: str = ""
    # The MTA-STS policy DinoMail serves for the domain; None: it serves none.
    mta_sts_policy: mtasts.Policy | None = None
    # The selectors a rotation replaced, still to be published: (selector, algorithm, p=).
    dkim_retiring: tuple[tuple[str, str, str], ...] = ()


async def check_domain(resolver: Resolver, inputs: CheckInputs) -> list[CheckResult]:
    """Every check of a domain, concurrently, in `CHECK_NAMES` order."""
    name = inputs.domain
    results = await asyncio.gather(
        check_dkim(resolver, name, inputs.dkim_selector, inputs.dkim_key,
                   inputs.dkim_retiring),
        check_spf(resolver, name),
        check_dmarc(resolver, name),
        check_mx(resolver, name, inputs.mx_host),
        check_mta_sts(resolver, name, inputs.mta_sts_policy),
        check_tls_rpt(resolver, name),
        check_autoconfig(resolver, name),
        check_autodiscover(resolver, name),
    )
    assert [result.check for result in results] == list(CHECK_NAMES)
    return list(results)


# --- DKIM -----------------------------------------------------------------------------------------


async def check_dkim(
    resolver: Resolver, domain: str, selector: str, key: str,
    retiring: tuple[tuple[str, str, str], ...] = (),
) -> CheckResult:
    """The current key's record, then each retiring one's: a retiring record that is gone
    or changed too early is a warning (mail signed with the replaced key stops verifying)."""
    result, old = await asyncio.gather(
        _check_current_dkim(resolver, domain, selector, key),
        asyncio.gather(*(_check_retiring_dkim(resolver, domain, *entry) for entry in retiring)),
    )
    for query, problem in old:
        result.queries.append(query)
        if problem:
            result.problems.append(problem)
    if any(problem for _, problem in old) and result.status is CheckStatus.OK:
        result.status = CheckStatus.WARNING
        result.summary += ", but a retiring selector is not published as it should be"
    if retiring:
        result.data["retiring"] = [entry[0] for entry in retiring]
    return result


async def _check_retiring_dkim(
    resolver: Resolver, domain: str, selector: str, algorithm: str, key: str
) -> tuple[Query, str | None]:
    """The query of a retiring selector's record and what is wrong with it (None: nothing)."""
    name = dkim.record_name(selector, domain)
    query = await resolver.query(name, "TXT")
    if not query.answered:
        return query, f"the retiring selector {selector} could not be checked ({name})"
    if not query.found:
        return query, (f"no TXT record at {name} for the retiring selector {selector}: mail "
                       "signed with the replaced key no longer verifies; retire it if that "
                       "mail has been delivered")
    try:
        expected = dkim.public_key_of(key, algorithm)
    except dkim.DkimError as error:
        return query, f"the retiring selector {selector}'s own key cannot be read: {error}"
    for text in query.records:
        verdict = _read_dkim_record(text)
        if not isinstance(verdict, str) and verdict[1] == expected:
            return query, None
    return query, (f"{name} does not publish the replaced key of the retiring selector "
                   f"{selector}: mail signed with it no longer verifies")


async def _check_current_dkim(resolver: Resolver, domain: str, selector: str, key: str
                              ) -> CheckResult:
    if not selector or not key:
        return CheckResult(
            "dkim", CheckStatus.NOT_CONFIGURED,
            "the domain has no DKIM selector and key: generate a key, or enter the ones the "
            "signer uses",
        )
    name = dkim.record_name(selector, domain)
    expected_text = f"a TXT record at {name} with the domain's key: p={key}"
    try:
        expected: dkim.PublicKey | None = dkim.public_key_of(key)
        key_problem = None
    except dkim.DkimError as error:
        expected, key_problem = None, f"the domain's own dkim_key cannot be read: {error}"
    query = await resolver.query(name, "TXT")
    if not query.answered:
        return could_not_check("dkim", query)
    if not query.found:
        return CheckResult(
            "dkim", CheckStatus.MISSING,
            f"no TXT record at {name}: publish the domain's DKIM record there",
            [query], expected=expected_text,
        )
    matching: list[dict] = []
    problems: list[str] = [key_problem] if key_problem else []
    mismatched = False
    found_keys = []
    for text, rdata in zip(query.records, query.rdata, strict=True):
        verdict = _read_dkim_record(text)
        if isinstance(verdict, str):
            problems.append(verdict)
            continue
        tags, published = verdict
        found_keys.append(tags["p"])
        if expected is not None and published == expected:
            matching.append({
                "algorithm": published.algorithm, "key_bits": published.key_bits,
                "tags": tags, "strings": [len(part) for part in rdata.strings],
            })
        else:
            mismatched = True
            if expected is not None:
                problems.append(
                    f"the published key ({published.algorithm}, {published.key_bits} bits) "
                    "is not the domain's key"
                )
    found = "; ".join(f"p={value}" for value in found_keys) or None
    if matching:
        match = matching[0]
        status = CheckStatus.OK
        if len(query.records) > 1:
            problems.append(f"{len(query.records)} TXT records at {name}: a verifier may read "
                            "another one than the domain's key")
        if "y" in match["tags"].get("t", "").split(":"):
            problems.append("t=y: the key is in testing mode, verifiers may treat failures as "
                            "passes")
        if match["algorithm"] == dkim.RSA and match["key_bits"] < dkim.MIN_RSA_BITS:
            status = CheckStatus.INVALID
            problems.append(f"{match['key_bits']}-bit RSA: verifiers ignore keys under "
                            f"{dkim.MIN_RSA_BITS} bits (RFC 8301)")
        elif match["algorithm"] == dkim.RSA and match["key_bits"] < dkim.DEFAULT_RSA_BITS:
            problems.append(f"{match['key_bits']}-bit RSA is weak: use 2048 bits")
        if status is CheckStatus.OK and problems:
            status = CheckStatus.WARNING
        summary = {
            CheckStatus.OK: f"{name} publishes the domain's key",
            CheckStatus.WARNING: f"{name} publishes the domain's key, with a problem",
            CheckStatus.INVALID: f"{name} publishes the domain's key, but verifiers ignore it",
        }[status]
        return CheckResult("dkim", status, summary, [query], expected_text, found, problems,
                           {"selector": selector, **match})
    if mismatched:
        return CheckResult(
            "dkim", CheckStatus.MISMATCH,
            f"{name} publishes a key, but not the domain's: signatures will not verify",
            [query], expected_text, found, problems, {"selector": selector},
        )
    return CheckResult(
        "dkim", CheckStatus.INVALID, f"the record at {name} is not a valid DKIM key record",
        [query], expected_text, found, problems, {"selector": selector},
    )


def _read_dkim_record(text: str) -> tuple[dict[str, str], dkim.PublicKey] | str:
    """The tags and key of a DKIM key record, or what is wrong with it."""
    try:
        tags = dkim.parse_tag_list(text)
    except dkim.DkimError as error:
        return f"not a tag=value list: {error}"
    if "v" in tags and (next(iter(tags)) != "v" or tags["v"] != "DKIM1"):
        return "v= must come first and be DKIM1"
    if "p" not in tags:
        return "the record has no p= tag (the public key)"
    if not tags["p"].strip():
        return "p= is empty: the key has been revoked"
    try:
        return tags, dkim.public_key_of(tags["p"], tags.get("k", dkim.RSA).lower())
    except dkim.DkimError as error:
        return f"p=: {error}"


# --- SPF ------------------------------------------------------------------------------------------


@dataclass
class _SpfWalk:
    queries: list[Query] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unanswered: list[Query] = field(default_factory=list)
    followed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


async def check_spf(resolver: Resolver, domain: str) -> CheckResult:
    query = await resolver.query(domain, "TXT")
    if not query.answered:
        return could_not_check("spf", query)
    expected = "one TXT record starting with v=spf1, costing at most 10 DNS lookups"
    records = [text for text in query.records if is_spf_record(text)]
    if not records:
        others = f" (none of its {len(query.records)} TXT records starts with v=spf1)" \
            if query.records else ""
        return CheckResult("spf", CheckStatus.MISSING, f"{domain} has no SPF record{others}",
                           [query], expected)
    if len(records) > 1:
        return CheckResult(
            "spf", CheckStatus.INVALID,
            f"{domain} has {len(records)} SPF records: receivers fail SPF (permerror) when "
            "there is more than one; merge them", [query], expected, " | ".join(records),
            [f"record {number}: {text}" for number, text in enumerate(records, 1)],
        )
    record = parse_spf(records[0])
    walk = _SpfWalk(queries=[query])
    lookups = await _count_lookups(resolver, record, {domain}, 0, walk)
    data = {"record": record.text, "lookups": lookups, "lookup_limit": LOOKUP_LIMIT,
            "terms": record.terms, "followed": walk.followed, "all": record.all_result}
    problems = record.errors + walk.errors
    if problems:
        return CheckResult("spf", CheckStatus.INVALID,
                           "the SPF record is broken: receivers fail SPF (permerror)",
                           walk.queries, expected, record.text, problems + record.warnings, data)
    if walk.unanswered:
        names = ", ".join(item.name for item in walk.unanswered)
        return CheckResult("spf", CheckStatus.COULD_NOT_CHECK,
                           f"could not check: DNS did not answer for {names}, so the lookup "
                           "count is unknown", walk.queries, expected, record.text,
                           record.warnings, data)
    warnings = list(record.warnings) + walk.warnings
    if record.open_ended:
        warnings.append("the record ends without all: mail from servers it does not list gets "
                        "a neutral result (add -all or ~all)")
    if lookups > LOOKUP_LIMIT:
        warnings.insert(0, f"evaluating the record costs {lookups} DNS lookups: above "
                        f"{LOOKUP_LIMIT}, receivers fail SPF (permerror)")
    status = CheckStatus.WARNING if warnings else CheckStatus.OK
    summary = f"one SPF record, {lookups} DNS lookup{'s' if lookups != 1 else ''}"
    return CheckResult("spf", status, summary, walk.queries, expected, record.text, warnings,
                       data)


async def _count_lookups(
    resolver: Resolver, record: SpfRecord, seen: set[str], depth: int, walk: _SpfWalk
) -> int:
    """The record's lookups plus those of every record it includes or redirects to."""
    total = record.lookups
    for target in record.followed:
        if target in seen:
            walk.errors.append(f"{target} is included in a loop")
            continue
        if depth >= MAX_SPF_DEPTH or len(walk.queries) >= MAX_SPF_QUERIES:
            walk.errors.append(f"{target}: includes nest too deep to follow")
            continue
        query = await resolver.query(target, "TXT")
        walk.queries.append(query)
        walk.followed.append(target)
        if not query.answered:
            walk.unanswered.append(query)
            continue
        found = [text for text in query.records if is_spf_record(text)]
        if len(found) != 1:
            count = "no" if not found else str(len(found))
            walk.errors.append(f"{target} has {count} SPF record{'s' if found else ''}: "
                               "receivers fail SPF (permerror) there")
            continue
        included = parse_spf(found[0])
        walk.errors.extend(f"{target}: {error}" for error in included.errors)
        walk.warnings.extend(f"{target}: {warning}" for warning in included.warnings)
        total += await _count_lookups(resolver, included, seen | {target}, depth + 1, walk)
    return total


# --- DMARC ----------------------------------------------------------------------------------------


async def check_dmarc(resolver: Resolver, domain: str) -> CheckResult:
    name = f"_dmarc.{domain}"
    query = await resolver.query(name, "TXT")
    if not query.answered:
        return could_not_check("dmarc", query)
    expected = f"one TXT record at {name} starting with v=DMARC1, with a policy p="
    if not query.found:
        return CheckResult("dmarc", CheckStatus.MISSING, f"no DMARC record at {name}",
                           [query], expected)
    records = [text for text in query.records if is_dmarc_record(text)]
    if not records:
        return CheckResult(
            "dmarc", CheckStatus.INVALID,
            f"the TXT record at {name} does not start with v=DMARC1: receivers ignore it",
            [query], expected, " | ".join(query.records),
        )
    if len(records) > 1:
        return CheckResult(
            "dmarc", CheckStatus.INVALID,
            f"{len(records)} DMARC records at {name}: receivers apply none of them",
            [query], expected, " | ".join(records),
        )
    parsed = parse_dmarc(records[0])
    tags = parsed.tags
    data = {
        "tags": tags,
        "policy": tags.get("p", "").lower() or None,
        "subdomain_policy": (tags.get("sp") or tags.get("p") or "").lower() or None,
        "percent": int(tags["pct"]) if tags.get("pct", "").isdigit() else 100,
        "reports_to": [uri.strip() for uri in tags.get("rua", "").split(",") if uri.strip()],
    }
    if parsed.errors:
        return CheckResult("dmarc", CheckStatus.INVALID,
                           "the DMARC record is broken: receivers apply no policy",
                           [query], expected, records[0], parsed.errors + parsed.warnings, data)
    status = CheckStatus.WARNING if parsed.warnings else CheckStatus.OK
    return CheckResult("dmarc", status, f"DMARC policy {data['policy']}", [query], expected,
                       records[0], parsed.warnings, data)


# --- MX -------------------------------------------------------------------------------------------


async def check_mx(resolver: Resolver, domain: str, expected_host: str) -> CheckResult:
    query = await resolver.query(domain, "MX")
    if not query.answered:
        return could_not_check("mx", query)
    expected_host = expected_host.lower().rstrip(".")
    expected = f"an MX record naming {expected_host}" if expected_host else None
    if not query.found:
        return CheckResult("mx", CheckStatus.MISSING,
                           f"{domain} has no MX record: other servers cannot tell where to "
                           "deliver its mail", [query], expected)
    exchanges = sorted(
        (int(item.preference), item.exchange) for item in query.rdata
    )
    found = ", ".join(f"{preference} {host}" for preference, host in exchanges)
    if any(host == dns.name.root for _, host in exchanges):
        return CheckResult("mx", CheckStatus.MISMATCH,
                           f"{domain} publishes a null MX: it says it receives no mail at all",
                           [query], expected, found)
    hosts = [(preference, host.to_text(omit_final_dot=True).lower())
             for preference, host in exchanges]
    data = {"exchanges": [{"preference": preference, "host": host}
                          for preference, host in hosts]}
    if not expected_host:
        return CheckResult(
            "mx", CheckStatus.WARNING,
            "there is no mail host to compare the MX with: set MX_HOST, or the domain's "
            "mx_host", [query], None, found,
            ["no expected host configured (setting MX_HOST or /api/clientconfig/<id>/)"], data,
        )
    best = min(preference for preference, _ in hosts)
    if expected_host in {host for preference, host in hosts if preference == best}:
        return CheckResult("mx", CheckStatus.OK, f"the MX names {expected_host}", [query],
                           expected, found, [], data)
    if expected_host in {host for _, host in hosts}:
        return CheckResult(
            "mx", CheckStatus.WARNING, f"{expected_host} is only a backup MX",
            [query], expected, found,
            [f"mail goes first to the MX with preference {best}, not to {expected_host}"], data,
        )
    return CheckResult("mx", CheckStatus.MISMATCH,
                       f"the MX does not name {expected_host}: mail for {domain} goes elsewhere",
                       [query], expected, found, [], data)


# --- MTA-STS and TLS-RPT (optional) ---------------------------------------------------------------


async def check_mta_sts(
    resolver: Resolver, domain: str, policy: mtasts.Policy | None = None
) -> CheckResult:
    """The `_mta-sts` record; when DinoMail serves the domain's policy, also that the record
    carries the served policy's id and that every MX host matches one of its `mx` patterns."""
    name = f"_mta-sts.{domain}"
    query = await resolver.query(name, "TXT")
    if not query.answered:
        return could_not_check("mta_sts", query)
    expected = (f"one TXT record at {name}: {mtasts.txt_record(policy)}" if policy else
                f"if published: one TXT record at {name}, v=STSv1; id=<1 to 32 letters/digits>")
    records = [text for text in query.records if is_mta_sts_record(text)]
    if not query.found:
        if policy is not None:
            return CheckResult("mta_sts", CheckStatus.MISSING,
                               "DinoMail serves an MTA-STS policy, but no record announces it: "
                               "senders never fetch it", [query], expected)
        return CheckResult("mta_sts", CheckStatus.ABSENT,
                           "no MTA-STS record (optional: it makes senders require TLS)",
                           [query], expected)
    if len(records) != 1:
        summary = (f"{len(records)} MTA-STS records" if records
                   else f"the TXT record at {name} does not start with v=STSv1")
        return CheckResult("mta_sts", CheckStatus.INVALID,
                           f"{summary}: senders ignore MTA-STS", [query], expected,
                           " | ".join(query.records))
    parsed = parse_mta_sts(records[0])
    if parsed.errors:
        return CheckResult("mta_sts", CheckStatus.INVALID,
                           "the MTA-STS record is broken: senders ignore it", [query], expected,
                           records[0], parsed.errors, {"tags": parsed.tags})
    policy_host = f"mta-sts.{domain}"
    host_queries = await _resolve_host(resolver, policy_host)
    queries = [query, *host_queries]
    data: dict[str, object] = {
        "id": parsed.tags["id"], "policy_url": f"https://{policy_host}/.well-known/mta-sts.txt"
    }
    if not host_queries[-1].answered:
        return could_not_check("mta_sts", host_queries[-1])
    if not any(item.found for item in host_queries):
        return CheckResult(
            "mta_sts", CheckStatus.WARNING, f"the record is valid, but {policy_host} does not "
            "resolve: senders cannot fetch the policy", queries, expected, records[0],
            [f"publish an address for {policy_host} and serve the policy over HTTPS"], data,
        )
    if policy is not None:
        return await _compare_policy(resolver, domain, policy, queries, expected, records[0],
                                     data)
    return CheckResult("mta_sts", CheckStatus.OK, f"MTA-STS policy id {parsed.tags['id']}",
                       queries, expected, records[0], [], data)


async def _compare_policy(
    resolver: Resolver, domain: str, policy: mtasts.Policy, queries: list[Query],
    expected: str, record: str, data: dict[str, object],
) -> CheckResult:
    """The served policy against the record's id and the domain's MX hosts."""
    data = {**data, "served_id": policy.policy_id, "mode": policy.mode,
            "mx_patterns": list(policy.mx)}
    problems = []
    if data["id"] != policy.policy_id:
        problems.append(f"the record's id {data['id']} is not the served policy's id "
                        f"{policy.policy_id}: senders that cached the old policy keep it")
    mx_query = await resolver.query(domain, "MX")
    queries = [*queries, mx_query]
    if not mx_query.answered:
        return could_not_check("mta_sts", mx_query)
    hosts = sorted({item.exchange.to_text(omit_final_dot=True).lower()
                    for item in mx_query.rdata})
    data["mx_hosts"] = hosts
    unmatched = mtasts.unmatched_hosts(policy.mx, hosts) if policy.mode != "none" else []
    if unmatched:
        problems.append(
            f"MX host(s) {', '.join(unmatched)} match no mx pattern of the policy "
            f"({', '.join(policy.mx) or 'none'}): "
            + ("senders enforcing it will not deliver there" if policy.mode == "enforce"
               else "senders will report those deliveries as failures"))
    if problems:
        return CheckResult("mta_sts", CheckStatus.MISMATCH,
                           "the served MTA-STS policy does not agree with DNS", queries,
                           expected, record, problems, data)
    return CheckResult("mta_sts", CheckStatus.OK,
                       f"MTA-STS policy id {policy.policy_id} ({policy.mode}) matches the MX",
                       queries, expected, record, [], data)


async def check_tls_rpt(resolver: Resolver, domain: str) -> CheckResult:
    name = f"_smtp._tls.{domain}"
    query = await resolver.query(name, "TXT")
    if not query.answered:
        return could_not_check("tls_rpt", query)
    expected = f"if published: one TXT record at {name}, v=TLSRPTv1; rua=mailto:…"
    if not query.found:
        return CheckResult("tls_rpt", CheckStatus.ABSENT,
                           "no TLS-RPT record (optional: senders report TLS failures to it)",
                           [query], expected)
    records = [text for text in query.records if is_tls_rpt_record(text)]
    if len(records) != 1:
        summary = (f"{len(records)} TLS-RPT records" if records
                   else f"the TXT record at {name} does not start with v=TLSRPTv1")
        return CheckResult("tls_rpt", CheckStatus.INVALID, f"{summary}: senders ignore it",
                           [query], expected, " | ".join(query.records))
    parsed = parse_tls_rpt(records[0])
    if parsed.errors:
        return CheckResult("tls_rpt", CheckStatus.INVALID, "the TLS-RPT record is broken",
                           [query], expected, records[0], parsed.errors, {"tags": parsed.tags})
    return CheckResult("tls_rpt", CheckStatus.OK, f"TLS reports go to {parsed.tags['rua']}",
                       [query], expected, records[0], [], {"tags": parsed.tags})


# --- the names mail clients look up ---------------------------------------------------------------


async def _resolve_host(resolver: Resolver, host: str) -> list[Query]:
    """A, then AAAA if there is no A (a host with only IPv6 is still a host)."""
    first = await resolver.query(host, "A")
    if first.found or not first.answered:
        return [first]
    return [first, await resolver.query(host, "AAAA")]


def _addresses(queries: list[Query]) -> str:
    found = [record for query in queries if query.found for record in query.records]
    canonical = next((query.canonical_name for query in queries if query.canonical_name), None)
    return ", ".join(found) + (f" (through the CNAME {canonical})" if canonical else "")


async def check_autoconfig(resolver: Resolver, domain: str) -> CheckResult:
    host = f"autoconfig.{domain}"
    queries = await _resolve_host(resolver, host)
    expected = f"an address (A, AAAA or CNAME) for {host}, pointing at this server"
    if not queries[-1].answered:
        return could_not_check("autoconfig", queries[-1])
    if any(query.found for query in queries):
        return CheckResult("autoconfig", CheckStatus.OK, f"{host} resolves", queries, expected,
                           _addresses(queries))
    return CheckResult(
        "autoconfig", CheckStatus.MISSING,
        f"{host} does not resolve: Thunderbird will only find the settings at "
        f"{domain}/.well-known/autoconfig/", queries, expected,
    )


async def check_autodiscover(resolver: Resolver, domain: str) -> CheckResult:
    host = f"autodiscover.{domain}"
    srv_name = f"_autodiscover._tcp.{domain}"
    queries = await _resolve_host(resolver, host)
    expected = f"an address for {host}, or an SRV record at {srv_name}"
    if not queries[-1].answered:
        return could_not_check("autodiscover", queries[-1])
    if any(query.found for query in queries):
        return CheckResult("autodiscover", CheckStatus.OK, f"{host} resolves", queries,
                           expected, _addresses(queries))
    srv = await resolver.query(srv_name, "SRV")
    queries.append(srv)
    if not srv.answered:
        return could_not_check("autodiscover", srv)
    if srv.found:
        targets = ", ".join(f"{item.target.to_text(omit_final_dot=True)}:{item.port}"
                            for item in srv.rdata)
        return CheckResult("autodiscover", CheckStatus.OK, f"{srv_name} points at {targets}",
                           queries, expected, targets)
    return CheckResult(
        "autodiscover", CheckStatus.MISSING,
        f"neither {host} nor {srv_name} is published: Outlook will not find the settings",
        queries, expected,
    )
