"""The mail rules: domains, mailboxes, aliases, sender owners, logins."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from dinomail.records import (
    AliasDomainRow,
    AliasRow,
    DomainRow,
    MailboxRow,
    MailChanges,
    MailData,
)
from lookupd.resolve import (
    MAX_ALIAS_DEPTH,
    LoginRecord,
    decode_key,
    find_login,
    iter_mailbox_emails,
    parse_address,
    resolve_alias,
    resolve_domain,
    resolve_mailbox,
    resolve_senders,
    split_extension,
)
from lookupd.snapshot import Snapshot

# Domain ids.
EXAMPLE, NET, OFF, BUCHER, CATCH = 1, 2, 3, 4, 5


def build(
    *,
    mailboxes: Sequence[tuple[int, str]] = (),
    aliases: Sequence[tuple[int, str, str]] = (),
    inactive_mailboxes: Sequence[tuple[int, str]] = (),
    alias_domains: Sequence[AliasDomainRow] = (),
    delimiter: str = "+",
    catchall_senders: bool = True,
) -> Snapshot:
    domains = [
        DomainRow(EXAMPLE, "example.com", True),
        DomainRow(NET, "example.net", True),
        DomainRow(OFF, "off.example", False),
        DomainRow(BUCHER, "xn--bcher-kva.example", True),
        DomainRow(CATCH, "catch.example", True, catchall_senders=catchall_senders),
    ]
    rows = [
        MailboxRow(n, domain_id, email, f"{{PLAIN}}pw{n}", 1000 * n, True)
        for n, (domain_id, email) in enumerate(mailboxes, start=1)
    ]
    rows += [
        MailboxRow(100 + n, domain_id, email, "{PLAIN}off", None, False)
        for n, (domain_id, email) in enumerate(inactive_mailboxes, start=1)
    ]
    alias_rows = [
        AliasRow(n, domain_id, source, destination)
        for n, (domain_id, source, destination) in enumerate(aliases, start=1)
    ]
    data = MailData(domains, list(alias_domains), rows, alias_rows)
    return Snapshot.build(data, recipient_delimiter=delimiter)


@pytest.fixture
def snapshot() -> Snapshot:
    return build(
        mailboxes=[
            (EXAMPLE, "alice@example.com"),
            (EXAMPLE, "bob@example.com"),
            (NET, "carol@example.net"),
            (OFF, "olga@off.example"),
            (BUCHER, "anna@xn--bcher-kva.example"),
            (CATCH, "real@catch.example"),
            (EXAMPLE, "postmaster@example.com"),
        ],
        inactive_mailboxes=[(EXAMPLE, "gone@example.com")],
        aliases=[
            (EXAMPLE, "info@example.com", "alice@example.com"),
            (EXAMPLE, "info@example.com", "bob@example.com"),
            (EXAMPLE, "info@example.com", "alice@example.com"),  # duplicate row
            (EXAMPLE, "ext@example.com", "someone@elsewhere.example"),
            (EXAMPLE, "bob@example.com", "bob@example.com"),  # keep a copy...
            (EXAMPLE, "bob@example.com", "archive@example.net"),  # ...and forward
            (OFF, "team@off.example", "olga@off.example"),
            (OFF, "@off.example", "olga@off.example"),
            (CATCH, "@catch.example", "real@catch.example"),
            (CATCH, "@catch.example", "boss@elsewhere.example"),
            (BUCHER, "info@xn--bcher-kva.example", "anna@xn--bcher-kva.example"),
        ],
        alias_domains=[
            AliasDomainRow(1, "example.org", EXAMPLE, True),
            AliasDomainRow(2, "old.example", EXAMPLE, False),
            AliasDomainRow(3, "dark.example", OFF, True),
            AliasDomainRow(4, "c.example", CATCH, True),
        ],
    )


# --- keys ----------------------------------------------------------------------------------------


def test_decode_key() -> None:
    assert decode_key(b"alice@example.com") == "alice@example.com"
    assert decode_key("anna@bücher.example".encode()) == "anna@bücher.example"
    assert decode_key(b"\xffalice@example.com") is None
    assert decode_key(b"alice\0@example.com") is None


def test_parse_address() -> None:
    assert parse_address("Alice@Example.COM") == ("alice", "example.com")
    assert parse_address("Anna@BÜCHER.example") == ("anna", "xn--bcher-kva.example")
    assert parse_address('"a@b"@example.com') == ('"a@b"', "example.com")
    assert parse_address("@example.com") == ("", "example.com")
    assert parse_address("alice") is None
    assert parse_address("alice@") is None
    assert parse_address("alice@exa\0mple.com") is None
    assert parse_address("alice@☃.example") is None


@pytest.mark.parametrize(
    ("local", "delimiters", "expected"),
    [
        ("alice+tag", "+", ("alice", "+tag")),
        ("alice+a+b", "+", ("alice", "+a+b")),
        ("alice-a+b", "+-", ("alice", "-a+b")),  # the first delimiter of any kind
        ("alice+", "+", ("alice", "+")),
        ("+tag", "+", None),  # would leave an empty local part
        ("alice", "+", None),
        ("alice+tag", "", None),
        ("postmaster", "+", None),
        ("mailer-daemon", "-", None),
        ("double-bounce", "-", None),
        ("owner-list", "-", None),
        ("list-request", "-", None),
        ("owner-list", "+", None),
        ("owner-list+x", "+", ("owner-list", "+x")),  # owner-/-request only matter with "-"
        ("-request", "-", None),
    ],
)
def test_split_extension(local: str, delimiters: str, expected: tuple | None) -> None:
    assert split_extension(local, delimiters) == expected


# --- domains -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("example.com", "example.com"),
        ("EXAMPLE.Com", "example.com"),
        ("example.org", "example.org"),  # an active alias domain
        ("old.example", None),  # an inactive alias domain
        ("dark.example", None),  # an alias domain of an inactive domain
        ("off.example", None),  # an inactive domain
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.EXAMPLE", "xn--bcher-kva.example"),
        ("unknown.example", None),
        ("alice@example.com", None),
        ("@example.com", None),
        ("example.com\0", None),
        ("", None),
        ("☃.example", None),
    ],
)
def test_resolve_domain(snapshot: Snapshot, key: str, expected: str | None) -> None:
    assert resolve_domain(snapshot, key) == expected


# --- mailboxes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("alice@example.com", "example.com/alice/"),
        ("Alice@EXAMPLE.com", "example.com/alice/"),
        ("alice+tag@example.com", "example.com/alice/"),
        ("alice+a+b@example.com", "example.com/alice/"),
        ("alice-tag@example.com", None),  # "-" is not a delimiter here
        ("gone@example.com", None),  # inactive mailbox
        ("olga@off.example", None),  # inactive domain
        ("anna@bücher.example", "xn--bcher-kva.example/anna/"),
        ("anna+x@BÜCHER.example", "xn--bcher-kva.example/anna/"),
        ("anna@xn--bcher-kva.example", "xn--bcher-kva.example/anna/"),
        ("info@example.com", None),  # an alias is not a mailbox
        ("alice@example.org", None),  # alias domains resolve through `aliases`
        ("nobody@catch.example", None),  # nor do catch-alls
        ("alice", None),
        ("@example.com", None),
        ("alice@example.com\0", None),
    ],
)
def test_resolve_mailbox(snapshot: Snapshot, key: str, expected: str | None) -> None:
    assert resolve_mailbox(snapshot, key) == expected


def test_mailbox_with_several_delimiters() -> None:
    snapshot = build(mailboxes=[(EXAMPLE, "alice@example.com")], delimiter="+-")
    assert resolve_mailbox(snapshot, "alice-tag@example.com") == "example.com/alice/"
    assert resolve_mailbox(snapshot, "alice+x-y@example.com") == "example.com/alice/"


def test_mailbox_without_delimiter() -> None:
    snapshot = build(mailboxes=[(EXAMPLE, "alice@example.com")], delimiter="")
    assert resolve_mailbox(snapshot, "alice+tag@example.com") is None


def test_mailbox_whose_name_contains_the_delimiter() -> None:
    # The exact address wins; the stripped one is only a fallback.
    snapshot = build(mailboxes=[(EXAMPLE, "a+b@example.com")])
    assert resolve_mailbox(snapshot, "a+b@example.com") == "example.com/a+b/"
    assert resolve_mailbox(snapshot, "a@example.com") is None


# --- aliases -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        # An alias: its destinations, duplicates once, in order.
        ("info@example.com", ["alice@example.com", "bob@example.com"]),
        ("INFO@Example.Com", ["alice@example.com", "bob@example.com"]),
        ("ext@example.com", ["someone@elsewhere.example"]),
        # An alias with the extension stripped: the extension goes along to every destination.
        ("info+news@example.com", ["alice+news@example.com", "bob+news@example.com"]),
        ("ext+x@example.com", ["someone+x@elsewhere.example"]),
        # A mailbox resolves to itself, as given; an alias on the same address wins.
        ("alice@example.com", ["alice@example.com"]),
        ("Alice+Tag@Example.com", ["alice+tag@example.com"]),
        ("bob@example.com", ["bob@example.com", "archive@example.net"]),
        ("bob+x@example.com", ["bob+x@example.com", "archive+x@example.net"]),
        # Nothing there.
        ("nobody@example.com", None),
        ("nobody+x@example.com", None),
        ("gone@example.com", None),  # inactive mailbox, no catch-all
        # Inactive domain: its aliases, mailboxes and catch-all are absent.
        ("team@off.example", None),
        ("olga@off.example", None),
        ("anyone@off.example", None),
        # Catch-all: only when nothing else matched, with no extension appended.
        ("nobody@catch.example", ["real@catch.example", "boss@elsewhere.example"]),
        ("nobody+x@catch.example", ["real@catch.example", "boss@elsewhere.example"]),
        ("real@catch.example", ["real@catch.example"]),  # never swallows a real mailbox
        ("real+x@catch.example", ["real+x@catch.example"]),
        ("@catch.example", ["real@catch.example", "boss@elsewhere.example"]),
        # IDNA: either form in, ASCII out.
        ("info@bücher.example", ["anna@xn--bcher-kva.example"]),
        ("anna@BÜCHER.example", ["anna@xn--bcher-kva.example"]),
        ("anna@xn--bcher-kva.example", ["anna@xn--bcher-kva.example"]),
        # Alias domains: the same local part in the target, when it resolves to anything there.
        ("alice@example.org", ["alice@example.com"]),
        ("info@example.org", ["info@example.com"]),
        ("Alice+Tag@Example.ORG", ["alice+tag@example.com"]),
        ("info+x@example.org", ["info+x@example.com"]),
        ("nobody@example.org", None),
        ("gone@example.org", None),
        ("anything@c.example", ["anything@catch.example"]),  # the target's catch-all
        ("alice@old.example", None),  # inactive alias domain
        ("olga@dark.example", None),  # target domain inactive
        # Not addresses.
        ("example.com", None),
        ("alice@", None),
        ("alice@example.com\0", None),
    ],
)
def test_resolve_alias(snapshot: Snapshot, key: str, expected: list[str] | None) -> None:
    assert resolve_alias(snapshot, key) == expected


def test_inactive_mailbox_mail_goes_to_the_catch_all() -> None:
    # An inactive mailbox is absent: like a row that does not exist.
    snapshot = build(
        inactive_mailboxes=[(CATCH, "left@catch.example")],
        aliases=[(CATCH, "@catch.example", "boss@catch.example")],
    )
    assert resolve_alias(snapshot, "left@catch.example") == ["boss@catch.example"]


def test_exact_mailbox_wins_over_stripped_alias() -> None:
    snapshot = build(
        mailboxes=[(EXAMPLE, "a+b@example.com")],
        aliases=[(EXAMPLE, "a@example.com", "x@elsewhere.example")],
    )
    assert resolve_alias(snapshot, "a+b@example.com") == ["a+b@example.com"]
    assert resolve_alias(snapshot, "a+c@example.com") == ["x+c@elsewhere.example"]


def test_extension_keeps_the_delimiter_it_came_with() -> None:
    snapshot = build(aliases=[(EXAMPLE, "list@example.com", "owner@example.net")], delimiter="+-")
    assert resolve_alias(snapshot, "list-x@example.com") == ["owner-x@example.net"]
    assert resolve_alias(snapshot, "list+x@example.com") == ["owner+x@example.net"]


def test_alias_domain_address_with_alias_of_its_own_target() -> None:
    snapshot = build(
        aliases=[(EXAMPLE, "sales@example.com", "carol@example.net")],
        alias_domains=[AliasDomainRow(1, "example.org", EXAMPLE, True)],
    )
    assert resolve_alias(snapshot, "sales@example.org") == ["sales@example.com"]
    # Postfix then asks for the target address, which expands.
    assert resolve_alias(snapshot, "sales@example.com") == ["carol@example.net"]


def test_alias_domain_in_unicode_form() -> None:
    snapshot = build(
        mailboxes=[(EXAMPLE, "alice@example.com")],
        alias_domains=[AliasDomainRow(1, "xn--exmple-cua.org", EXAMPLE, True)],
    )
    assert resolve_alias(snapshot, "alice@exämple.org") == ["alice@example.com"]
    assert resolve_domain(snapshot, "EXÄMPLE.org") == "xn--exmple-cua.org"


# --- senders -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("alice@example.com", ["alice@example.com"]),
        ("ALICE@example.COM", ["alice@example.com"]),
        ("alice+tag@example.com", ["alice@example.com"]),
        ("info@example.com", ["alice@example.com", "bob@example.com"]),
        ("info+x@example.com", ["alice@example.com", "bob@example.com"]),
        ("bob@example.com", ["bob@example.com"]),  # mailbox and alias: the forward is external
        ("ext@example.com", None),  # an alias with no local mailbox: nobody (no catch-all)
        ("gone@example.com", None),
        ("nobody@example.com", None),
        ("olga@off.example", None),
        ("team@off.example", None),
        ("alice@example.org", ["alice@example.com"]),  # alias domain
        ("info@example.org", ["alice@example.com", "bob@example.com"]),
        ("alice@old.example", None),
        ("nobody@catch.example", ["real@catch.example"]),  # catch-all owners
        ("real@catch.example", ["real@catch.example"]),
        ("x@c.example", ["real@catch.example"]),  # alias domain, then the target's catch-all
        ("anna@BÜCHER.example", ["anna@xn--bcher-kva.example"]),
        ("info@bücher.example", ["anna@xn--bcher-kva.example"]),
        ("alice", None),
        ("@catch.example", None),
    ],
)
def test_resolve_senders(snapshot: Snapshot, key: str, expected: list[str] | None) -> None:
    assert resolve_senders(snapshot, key) == expected


def test_catch_all_owners_send_only_where_the_domain_allows_it() -> None:
    """By default a catch-all's destinations receive `ceo@` but may not send as `ceo@`."""
    snapshot = build(
        mailboxes=[(CATCH, "carol@catch.example"), (CATCH, "real@catch.example")],
        aliases=[(CATCH, "@catch.example", "carol@catch.example"),
                 (CATCH, "info@catch.example", "real@catch.example")],
        alias_domains=[AliasDomainRow(4, "c.example", CATCH, True)],
        catchall_senders=False,
    )
    assert resolve_alias(snapshot, "ceo@catch.example") == ["carol@catch.example"]
    assert resolve_senders(snapshot, "ceo@catch.example") is None
    assert resolve_senders(snapshot, "ceo@c.example") is None
    # Mailboxes and aliases keep their owners.
    assert resolve_senders(snapshot, "carol@catch.example") == ["carol@catch.example"]
    assert resolve_senders(snapshot, "info@catch.example") == ["real@catch.example"]


def test_senders_follow_alias_chains() -> None:
    snapshot = build(
        mailboxes=[(EXAMPLE, "alice@example.com"), (NET, "carol@example.net")],
        inactive_mailboxes=[(EXAMPLE, "gone@example.com")],
        aliases=[
            (EXAMPLE, "all@example.com", "team@example.com"),
            (EXAMPLE, "all@example.com", "carol+lists@example.net"),  # an extension, stripped
            (EXAMPLE, "team@example.com", "alice@example.com"),
            (EXAMPLE, "team@example.com", "gone@example.com"),
            (EXAMPLE, "team@example.com", "all@example.com"),  # a cycle
            (EXAMPLE, "team@example.com", "alice@example.org"),  # through an alias domain
        ],
        alias_domains=[AliasDomainRow(1, "example.org", EXAMPLE, True)],
    )
    assert resolve_senders(snapshot, "all@example.com") == [
        "alice@example.com", "carol@example.net",
    ]
    assert resolve_senders(snapshot, "team@example.com") == [
        "alice@example.com", "carol@example.net",
    ]


def test_senders_chain_depth_is_bounded() -> None:
    chain = [
        (EXAMPLE, f"hop{n}@example.com", f"hop{n + 1}@example.com")
        for n in range(MAX_ALIAS_DEPTH + 5)
    ]
    last = MAX_ALIAS_DEPTH + 5
    snapshot = build(mailboxes=[(EXAMPLE, f"hop{last}@example.com")], aliases=chain)
    assert resolve_senders(snapshot, f"hop{last - MAX_ALIAS_DEPTH}@example.com") == [
        f"hop{last}@example.com"
    ]
    assert resolve_senders(snapshot, f"hop{last - MAX_ALIAS_DEPTH - 1}@example.com") is None


def test_mailbox_that_is_also_an_alias_is_owned_by_itself_first() -> None:
    snapshot = build(
        mailboxes=[(EXAMPLE, "alice@example.com"), (EXAMPLE, "bob@example.com")],
        aliases=[(EXAMPLE, "alice@example.com", "bob@example.com")],
    )
    assert resolve_senders(snapshot, "alice@example.com") == [
        "alice@example.com", "bob@example.com",
    ]


# --- logins --------------------------------------------------------------------------------------


def test_find_login(snapshot: Snapshot) -> None:
    record = find_login(snapshot, "Alice@Example.COM")
    assert record == LoginRecord(
        email="alice@example.com", password="{PLAIN}pw1", quota=1000, active=True,
        domain_active=True,
    )
    assert record is not None and record.can_log_in


def test_find_login_through_alias_domain(snapshot: Snapshot) -> None:
    record = find_login(snapshot, "alice@EXAMPLE.org")
    assert record is not None and record.email == "alice@example.com"
    assert find_login(snapshot, "alice@old.example") is None  # inactive alias domain


def test_find_login_idna(snapshot: Snapshot) -> None:
    for login in ("anna@bücher.example", "ANNA@BÜCHER.EXAMPLE", "anna@xn--bcher-kva.example"):
        record = find_login(snapshot, login)
        assert record is not None and record.email == "anna@xn--bcher-kva.example"


def test_find_login_inactive_is_returned_with_its_flags(snapshot: Snapshot) -> None:
    gone = find_login(snapshot, "gone@example.com")
    assert gone is not None and not gone.active and gone.domain_active and not gone.can_log_in
    olga = find_login(snapshot, "olga@off.example")
    assert olga is not None and olga.active and not olga.domain_active and not olga.can_log_in


@pytest.mark.parametrize(
    "login", ["nobody@example.com", "info@example.com", "alice", "@example.com",
              "alice+tag@example.com", "alice@example.com\0"],
)
def test_find_login_not_found(snapshot: Snapshot, login: str) -> None:
    assert find_login(snapshot, login) is None


def test_iter_mailbox_emails(snapshot: Snapshot) -> None:
    everyone = set(iter_mailbox_emails(snapshot))
    assert {"alice@example.com", "gone@example.com", "olga@off.example"} <= everyone
    active = set(iter_mailbox_emails(snapshot, active_only=True))
    assert "alice@example.com" in active
    assert "gone@example.com" not in active
    assert "olga@off.example" not in active


def test_iter_mailbox_emails_survives_changes_while_iterating(snapshot: Snapshot) -> None:
    emails = iter_mailbox_emails(snapshot)
    first = next(emails)
    alice = snapshot.mailbox("alice@example.com")
    assert alice is not None
    snapshot.apply(MailChanges([], [], [], [], [], [alice.id], [], []))
    rest = list(emails)
    assert "alice@example.com" not in rest or first == "alice@example.com"
    assert len(rest) >= 6
