"""Snapshot storage: a full build, and changes applied in place in any order."""

from __future__ import annotations

import inspect
import itertools

import pytest

from dinomail.records import (
    AliasDomainRow,
    AliasRow,
    AppPasswordRow,
    DomainRow,
    MailboxRow,
    MailChanges,
    MailData,
    VacationRow,
)
from lookupd.resolve import resolve_alias, resolve_domain, resolve_mailbox
from lookupd.snapshot import Snapshot, domain_key


def domain(id: int, name: str, active: bool = True) -> DomainRow:
    return DomainRow(id=id, name=name, active=active)


def mailbox(id: int, domain_id: int, email: str, active: bool = True) -> MailboxRow:
    return MailboxRow(id=id, domain_id=domain_id, email=email, password=f"{{PLAIN}}pw{id}",
                      quota=None, active=active)


def alias(id: int, domain_id: int, source: str, destination: str) -> AliasRow:
    return AliasRow(id=id, domain_id=domain_id, source=source, destination=destination)


def changes(**parts: list) -> MailChanges:
    empty: dict[str, list] = {
        name: [] for name in (
            "domains", "removed_domains", "alias_domains", "removed_alias_domains",
            "mailboxes", "removed_mailboxes", "aliases", "removed_aliases",
            "app_passwords", "removed_app_passwords", "vacations", "removed_vacations",
        )
    }
    return MailChanges(**{**empty, **parts})


def base_data() -> MailData:
    return MailData(
        domains=[domain(1, "example.com"), domain(2, "example.net")],
        alias_domains=[AliasDomainRow(id=1, name="example.org", target_domain_id=1, active=True)],
        mailboxes=[
            mailbox(1, 1, "alice@example.com"),
            mailbox(2, 1, "bob@example.com"),
            mailbox(3, 2, "carol@example.net"),
        ],
        aliases=[
            alias(1, 1, "info@example.com", "alice@example.com"),
            alias(2, 1, "info@example.com", "bob@example.com"),
            alias(3, 1, "sales@example.com", "carol@example.net"),
            alias(4, 2, "@example.net", "carol@example.net"),
        ],
    )


@pytest.fixture
def snapshot() -> Snapshot:
    return Snapshot.build(base_data())


def test_build_counts_rows(snapshot: Snapshot) -> None:
    assert snapshot.row_counts() == {
        "domains": 2, "alias_domains": 1, "mailboxes": 3, "aliases": 4, "app_passwords": 0,
        "vacations": 0,
    }


def test_build_indexes(snapshot: Snapshot) -> None:
    assert snapshot.domain("example.com") == domain(1, "example.com")
    assert snapshot.domain_by_id(2) == domain(2, "example.net")
    assert snapshot.alias_domain("example.org") is not None
    assert snapshot.has_mailbox("alice@example.com")
    assert snapshot.mailbox("alice@example.com") == mailbox(1, 1, "alice@example.com")
    assert snapshot.destinations("info@example.com") == ["alice@example.com", "bob@example.com"]
    assert snapshot.destinations("@example.net") == ["carol@example.net"]
    assert snapshot.destinations("nobody@example.com") == []
    assert sorted(snapshot.mailbox_emails()) == [
        "alice@example.com", "bob@example.com", "carol@example.net",
    ]


def test_apply_is_synchronous() -> None:
    # No await inside: on the event loop, no reader can see half a batch.
    assert not inspect.iscoroutinefunction(Snapshot.apply)


def test_insert_each_kind(snapshot: Snapshot) -> None:
    snapshot.apply(changes(
        domains=[domain(3, "example.io")],
        alias_domains=[AliasDomainRow(id=2, name="example.biz", target_domain_id=3, active=True)],
        mailboxes=[mailbox(4, 3, "dave@example.io")],
        aliases=[alias(5, 3, "team@example.io", "dave@example.io")],
    ))
    assert snapshot.has_mailbox("dave@example.io")
    assert snapshot.destinations("team@example.io") == ["dave@example.io"]
    assert resolve_domain(snapshot, "example.biz") == "example.biz"
    assert snapshot.row_counts()["aliases"] == 5


def test_update_mailbox_in_place(snapshot: Snapshot) -> None:
    snapshot.apply(changes(mailboxes=[mailbox(1, 1, "alice@example.com", active=False)]))
    assert not snapshot.has_mailbox("alice@example.com")
    assert snapshot.mailbox("alice@example.com").active is False  # type: ignore[union-attr]
    assert snapshot.row_counts()["mailboxes"] == 3


def test_renamed_mailbox_leaves_its_old_address(snapshot: Snapshot) -> None:
    snapshot.apply(changes(mailboxes=[mailbox(1, 1, "alicia@example.com")]))
    assert not snapshot.mailbox_exists("alice@example.com")
    assert snapshot.has_mailbox("alicia@example.com")


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_two_mailboxes_swap_addresses_in_one_batch(snapshot: Snapshot, order: tuple) -> None:
    rows = [mailbox(1, 1, "bob@example.com"), mailbox(2, 1, "alice@example.com")]
    snapshot.apply(changes(mailboxes=[rows[i] for i in order]))
    assert snapshot.mailbox("alice@example.com").id == 2  # type: ignore[union-attr]
    assert snapshot.mailbox("bob@example.com").id == 1  # type: ignore[union-attr]


def test_removed_then_address_taken_by_another_row(snapshot: Snapshot) -> None:
    # Whichever list the refresher fills first, the new owner of the address survives.
    snapshot.apply(changes(removed_mailboxes=[1], mailboxes=[mailbox(9, 1, "alice@example.com")]))
    assert snapshot.mailbox("alice@example.com").id == 9  # type: ignore[union-attr]
    assert snapshot.row_counts()["mailboxes"] == 3


def test_id_both_removed_and_present_ends_present(snapshot: Snapshot) -> None:
    snapshot.apply(changes(removed_mailboxes=[2], mailboxes=[mailbox(2, 1, "bob@example.com")]))
    assert snapshot.has_mailbox("bob@example.com")


def test_removing_unknown_ids_is_harmless(snapshot: Snapshot) -> None:
    snapshot.apply(changes(
        removed_domains=[99], removed_alias_domains=[99], removed_mailboxes=[99],
        removed_aliases=[99],
    ))
    assert snapshot.row_counts() == Snapshot.build(base_data()).row_counts()


def test_alias_destinations_added_and_removed(snapshot: Snapshot) -> None:
    snapshot.apply(changes(aliases=[alias(10, 1, "sales@example.com", "alice@example.com")]))
    assert snapshot.destinations("sales@example.com") == ["carol@example.net", "alice@example.com"]
    snapshot.apply(changes(removed_aliases=[3]))
    assert snapshot.destinations("sales@example.com") == ["alice@example.com"]
    snapshot.apply(changes(removed_aliases=[10]))
    assert snapshot.destinations("sales@example.com") == []
    assert resolve_alias(snapshot, "sales@example.com") is None


def test_alias_update_changes_destination_and_source(snapshot: Snapshot) -> None:
    snapshot.apply(changes(aliases=[alias(1, 1, "info@example.com", "carol@example.net")]))
    assert sorted(snapshot.destinations("info@example.com")) == [
        "bob@example.com", "carol@example.net",
    ]
    snapshot.apply(changes(aliases=[alias(2, 1, "help@example.com", "bob@example.com")]))
    assert snapshot.destinations("info@example.com") == ["carol@example.net"]
    assert snapshot.destinations("help@example.com") == ["bob@example.com"]


def test_duplicate_alias_rows_give_one_destination(snapshot: Snapshot) -> None:
    snapshot.apply(changes(aliases=[alias(11, 1, "info@example.com", "alice@example.com")]))
    assert snapshot.destinations("info@example.com") == ["alice@example.com", "bob@example.com"]
    snapshot.apply(changes(removed_aliases=[1]))
    assert snapshot.destinations("info@example.com") == ["bob@example.com", "alice@example.com"]


def test_inactive_domain_hides_its_rows_without_touching_them(snapshot: Snapshot) -> None:
    snapshot.apply(changes(domains=[domain(1, "example.com", active=False)]))
    assert not snapshot.has_mailbox("alice@example.com")
    assert snapshot.mailbox_exists("alice@example.com")
    assert snapshot.destinations("info@example.com") == []
    assert resolve_domain(snapshot, "example.com") is None
    assert resolve_domain(snapshot, "example.org") is None  # its alias domain goes dark too
    snapshot.apply(changes(domains=[domain(1, "example.com", active=True)]))
    assert snapshot.has_mailbox("alice@example.com")
    assert resolve_mailbox(snapshot, "alice@example.com") == "example.com/alice/"


def test_renamed_domain(snapshot: Snapshot) -> None:
    snapshot.apply(changes(domains=[domain(2, "example.info")]))
    assert snapshot.domain("example.net") is None
    assert snapshot.domain("example.info") is not None


REMOVALS = {
    "removed_domains": [1],
    "removed_mailboxes": [1, 2],
    "removed_aliases": [1, 2, 3],
    "removed_alias_domains": [1],
}


@pytest.mark.parametrize("order", list(itertools.permutations(REMOVALS)))
def test_domain_removal_with_its_rows_in_any_order(snapshot: Snapshot, order: tuple) -> None:
    # The database cascades; the change log lists the domain's rows too, in no set order.
    # Applying the parts as separate batches, in every order, must end in the same state and
    # never answer for a row of the removed domain in between.
    for done, part in enumerate(order, start=1):
        snapshot.apply(changes(**{part: REMOVALS[part]}))
        if "removed_domains" in order[:done]:
            assert resolve_mailbox(snapshot, "alice@example.com") is None
            assert resolve_alias(snapshot, "info@example.com") is None
            assert resolve_domain(snapshot, "example.org") is None
    assert snapshot.row_counts() == {
        "domains": 1, "alias_domains": 0, "mailboxes": 1, "aliases": 1, "app_passwords": 0,
        "vacations": 0,
    }
    assert resolve_mailbox(snapshot, "carol@example.net") == "example.net/carol/"


def test_domain_removal_in_one_batch(snapshot: Snapshot) -> None:
    snapshot.apply(changes(**REMOVALS))
    assert snapshot.mailbox_emails() == ["carol@example.net"]


def test_rows_of_a_removed_domain_are_not_answered_before_their_removal(
    snapshot: Snapshot,
) -> None:
    snapshot.apply(changes(removed_domains=[1]))
    assert snapshot.mailbox_exists("alice@example.com")
    assert not snapshot.has_mailbox("alice@example.com")
    assert snapshot.destinations("info@example.com") == []


def test_rows_arriving_before_their_domain() -> None:
    snapshot = Snapshot()
    snapshot.apply(changes(mailboxes=[mailbox(1, 5, "eve@example.eu")]))
    assert not snapshot.has_mailbox("eve@example.eu")
    snapshot.apply(changes(domains=[domain(5, "example.eu")]))
    assert snapshot.has_mailbox("eve@example.eu")


def test_alias_domain_changes(snapshot: Snapshot) -> None:
    snapshot.apply(changes(alias_domains=[
        AliasDomainRow(id=1, name="example.org", target_domain_id=1, active=False),
    ]))
    assert resolve_domain(snapshot, "example.org") is None
    snapshot.apply(changes(alias_domains=[
        AliasDomainRow(id=1, name="example.co", target_domain_id=2, active=True),
    ]))
    assert snapshot.alias_domain("example.org") is None
    assert resolve_alias(snapshot, "carol@example.co") == ["carol@example.net"]
    snapshot.apply(changes(removed_alias_domains=[1]))
    assert snapshot.alias_domain("example.co") is None


def test_rows_not_in_normal_form_are_filed_under_their_lookup_key() -> None:
    # The store normalises; a row edited by hand in SQL may not be.
    snapshot = Snapshot.build(MailData(
        domains=[domain(1, "Bücher.Example")],
        alias_domains=[],
        mailboxes=[mailbox(1, 1, "Anna@Bücher.Example")],
        aliases=[alias(1, 1, "Info@BÜCHER.example", "anna@xn--bcher-kva.example")],
    ))
    assert snapshot.domain("xn--bcher-kva.example") is not None
    assert snapshot.has_mailbox("anna@xn--bcher-kva.example")
    assert snapshot.destinations("info@xn--bcher-kva.example") == ["anna@xn--bcher-kva.example"]
    # And removing it finds it under that key.
    snapshot.apply(changes(removed_mailboxes=[1], removed_aliases=[1]))
    assert snapshot.mailbox_emails() == []
    assert snapshot.destinations("info@xn--bcher-kva.example") == []


def test_mailbox_emails_is_a_copy(snapshot: Snapshot) -> None:
    emails = snapshot.mailbox_emails()
    snapshot.apply(changes(removed_mailboxes=[1, 2, 3]))
    assert len(emails) == 3


def test_domain_key() -> None:
    assert domain_key("Example.COM") == "example.com"
    assert domain_key("BÜCHER.example") == "xn--bcher-kva.example"
    assert domain_key("xn--bcher-kva.example") == "xn--bcher-kva.example"
    assert domain_key("ex ample.côm") is None
    assert domain_key("☃.example") is None


def test_delimiter_is_kept(snapshot: Snapshot) -> None:
    assert snapshot.recipient_delimiter == "+"
    assert Snapshot.build(base_data(), recipient_delimiter="-+").recipient_delimiter == "-+"


# --- app passwords -------------------------------------------------------------------------------


def app_password(id: int, mailbox_id: int, protocols: str = "imap") -> AppPasswordRow:
    return AppPasswordRow(id=id, mailbox_id=mailbox_id, protocols=protocols,
                          password=f"{{PLAIN}}app{id}")


def test_app_passwords_are_held_by_mailbox_oldest_first() -> None:
    data = base_data()
    snapshot = Snapshot.build(MailData(
        data.domains, data.alias_domains, data.mailboxes, data.aliases,
        [app_password(7, 1), app_password(3, 1, "imap,smtp"), app_password(5, 2)],
    ))
    assert snapshot.app_passwords(1) == [app_password(3, 1, "imap,smtp"), app_password(7, 1)]
    assert snapshot.app_passwords(2) == [app_password(5, 2)]
    assert snapshot.app_passwords(3) == []
    assert snapshot.row_counts()["app_passwords"] == 3
    assert sorted(row.id for row in snapshot.rows().app_passwords) == [3, 5, 7]


def test_app_password_changes_apply_in_place(snapshot: Snapshot) -> None:
    snapshot.apply(changes(app_passwords=[app_password(1, 1), app_password(2, 1)]))
    assert [row.id for row in snapshot.app_passwords(1)] == [1, 2]
    # Revoked, changed (other protocols, another hash) and moved to another mailbox.
    snapshot.apply(changes(removed_app_passwords=[1], app_passwords=[app_password(2, 3, "pop3")]))
    assert snapshot.app_passwords(1) == []
    assert snapshot.app_passwords(3) == [app_password(2, 3, "pop3")]
    snapshot.apply(changes(removed_app_passwords=[2, 99]))  # 99: never there
    assert snapshot.app_passwords(3) == [] and snapshot.row_counts()["app_passwords"] == 0
    # Removed and present in one batch: present, as the database it was read from says.
    snapshot.apply(changes(removed_app_passwords=[4], app_passwords=[app_password(4, 2)]))
    assert snapshot.app_passwords(2) == [app_password(4, 2)]


# --- vacations -----------------------------------------------------------------------------------


def away(mailbox_id: int, enabled: bool = True, subject: str = "") -> VacationRow:
    return VacationRow(mailbox_id=mailbox_id, enabled=enabled, subject=subject, body="Away",
                       starts=None, ends=None, interval_days=7)


def test_the_aliases_leading_to_a_mailbox_away_follow_every_change(snapshot: Snapshot) -> None:
    # base_data: info@ leads to alice and bob, sales@ and the catch-all of example.net to carol.
    assert snapshot.aliases_leading_to("alice@example.com") == []  # no vacation: not kept
    snapshot.apply(changes(vacations=[away(1), away(3), away(2, enabled=False)]))
    assert snapshot.aliases_leading_to("alice@example.com") == ["info@example.com"]
    assert snapshot.aliases_leading_to("carol@example.net") == ["sales@example.com"]  # no @
    assert snapshot.aliases_leading_to("bob@example.com") == []  # disabled
    # Alias changes in between: applied to what is kept, in the order of the ids.
    snapshot.apply(changes(aliases=[alias(9, 1, "help@example.com", "alice@example.com"),
                                    alias(3, 1, "sales@example.com", "alice@example.com")]))
    assert snapshot.aliases_leading_to("alice@example.com") == [
        "info@example.com", "sales@example.com", "help@example.com"]
    assert snapshot.aliases_leading_to("carol@example.net") == []
    snapshot.apply(changes(removed_aliases=[1]))
    assert snapshot.aliases_leading_to("alice@example.com") == [
        "sales@example.com", "help@example.com"]
    # A mailbox away renamed; a vacation turned on, off, removed.
    snapshot.apply(changes(mailboxes=[mailbox(1, 1, "alicia@example.com")],
                           aliases=[alias(10, 1, "a@example.com", "alicia@example.com")]))
    assert snapshot.aliases_leading_to("alicia@example.com") == ["a@example.com"]
    assert snapshot.aliases_leading_to("alice@example.com") == []
    snapshot.apply(changes(vacations=[away(2)], removed_vacations=[1]))
    assert snapshot.aliases_leading_to("bob@example.com") == ["info@example.com"]
    assert snapshot.aliases_leading_to("alicia@example.com") == []
    snapshot.apply(changes(vacations=[away(2, enabled=False, subject="x")]))
    assert snapshot.aliases_leading_to("bob@example.com") == []
    assert snapshot.vacation(2) == away(2, enabled=False, subject="x")
    assert snapshot.row_counts()["vacations"] == 2


def test_every_batch_gives_a_new_generation(snapshot: Snapshot) -> None:
    before = snapshot.generation
    snapshot.apply(changes())
    assert snapshot.generation != before
    assert Snapshot.build(base_data()).generation not in (before, snapshot.generation)


def test_alias_domains_of_a_domain(snapshot: Snapshot) -> None:
    snapshot.apply(changes(alias_domains=[
        AliasDomainRow(id=2, name="example.biz", target_domain_id=1, active=True),
        AliasDomainRow(id=3, name="example.info", target_domain_id=1, active=False),
    ]))
    assert snapshot.alias_domains_of(1) == ["example.biz", "example.org"]
    assert snapshot.alias_domains_of(2) == []
