"""What an address resolves to: the mail rules every lookup protocol shares.

Postfix hands a socketmap (and any non-indexed table) only the full address, so the steps it
would otherwise take itself — strip the address extension, try the `@domain` catch-all — are
ours, and so are alias domains and sender owners. They live here once, as plain functions over a
`Snapshot`; the protocol modules only parse bytes and format these answers.

Common ground:
- A key is compared case-insensitively; its domain part may be Unicode or IDNA ASCII. Answers
  are in the stored form (lowercase, ASCII domains).
- A key containing NUL, or an address without `@`, is not found.
- Inactive domains and mailboxes are absent, as if their rows did not exist. So is an alias
  domain that is inactive or whose target domain is.
- `None` means "not found"; a function never returns an empty string or list.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from dinomail.records import MailboxRow
from lookupd.snapshot import Snapshot, domain_key

# How far `senders` follows alias → alias chains (Postfix's own recursion limit is far higher,
# but owners come from short chains; the bound keeps a cycle or a deep chain cheap).
MAX_ALIAS_DEPTH = 10

# Local parts Postfix never splits at a delimiter (src/global/split_addr.c).
_NEVER_SPLIT = frozenset({"postmaster", "mailer-daemon", "double-bounce"})


@dataclass(frozen=True, slots=True)
class LoginRecord:
    """A mailbox found by login name, with what passdb/userdb need to answer for it."""

    email: str
    password: str
    quota: int | None
    active: bool
    domain_active: bool

    @property
    def can_log_in(self) -> bool:
        return self.active and self.domain_active


# --- keys ----------------------------------------------------------------------------------------


def decode_key(raw: bytes) -> str | None:
    """A key received as bytes, as text; None (not found) for invalid UTF-8 or a NUL."""
    if b"\0" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_address(key: str) -> tuple[str, str] | None:
    """`Local@Domain` → (`local`, `domain` in lookup form); None if it cannot be an address.

    The domain follows the last `@`, as in Postfix (a quoted local part may hold an `@`).
    The local part may be empty: `@domain` is how a catch-all is named.
    """
    if "\0" in key:
        return None
    local, at, domain = key.rpartition("@")
    if not at or not domain:
        return None
    lookup_domain = domain_key(domain)
    if not lookup_domain:
        return None
    return local.lower(), lookup_domain


def split_extension(local: str, delimiters: str) -> tuple[str, str] | None:
    """`user+ext` → (`user`, `+ext`), split as Postfix's split_addr() does; None if unsplit.

    Splits at the first occurrence of any delimiter character; never splits the reserved names,
    nor (when `-` is a delimiter) `owner-*` and `*-request`; never leaves an empty local part.
    The extension keeps its delimiter so it can be appended back as it came.
    """
    if not delimiters or local in _NEVER_SPLIT:
        return None
    if "-" in delimiters and (
        local.startswith("owner-") or (len(local) > 8 and local.endswith("-request"))
    ):
        return None
    position = len(local)
    for delimiter in delimiters:
        found = local.find(delimiter, 0, position)
        if found >= 0:
            position = found
    if position == 0 or position == len(local):
        return None
    return local[:position], local[position:]


def _with_extension(address: str, extension: str) -> str:
    """Append an address extension to the local part (Postfix: propagate_unmatched_extensions)."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address + extension
    if not local:
        return address  # `@domain` stands for "the same local part there"; nothing to extend
    return f"{local}{extension}@{domain}"


# --- alias domains ------------------------------------------------------------------------------


def _alias_domain_target(snapshot: Snapshot, domain: str) -> str | None:
    """The target domain (lookup form) of an active alias domain whose target is active."""
    alias_domain = snapshot.alias_domain(domain)
    if alias_domain is None or not alias_domain.active:
        return None
    target = snapshot.domain_by_id(alias_domain.target_domain_id)
    if target is None or not target.active:
        return None
    return domain_key(target.name)


# --- the maps ------------------------------------------------------------------------------------


def resolve_domain(snapshot: Snapshot, name: str) -> str | None:
    """An active mail domain or alias domain → its name (ASCII); else None.

    Postfix ignores the value (`virtual_mailbox_domains` only tests for a match).
    """
    if "@" in name or "\0" in name:
        return None
    key = domain_key(name)
    if not key:
        return None
    domain = snapshot.domain(key)
    if domain is not None and domain.active:
        return key
    if _alias_domain_target(snapshot, key) is not None:
        return key
    return None


def resolve_mailbox(snapshot: Snapshot, address: str) -> str | None:
    """An active mailbox → `domain/localpart/` (its maildir under the mail root); else None.

    `local+ext@domain` resolves like `local@domain`.
    """
    parsed = parse_address(address)
    if parsed is None:
        return None
    local = _mailbox_local(snapshot, parsed[0], parsed[1])
    return None if local is None else f"{parsed[1]}/{local}/"


def _mailbox_local(snapshot: Snapshot, local: str, domain: str) -> str | None:
    """The local part of the active mailbox `local@domain` designates (`local` itself, or
    without its extension); None if there is none."""
    if not local:
        return None
    if snapshot.has_mailbox(f"{local}@{domain}"):
        return local
    split = split_extension(local, snapshot.recipient_delimiter)
    if split is None or not snapshot.has_mailbox(f"{split[0]}@{domain}"):
        return None
    return split[0]


def resolve_alias(snapshot: Snapshot, address: str) -> list[str] | None:
    """Where mail to `address` goes (`virtual_alias_maps`), first rule that applies:

    1. an alias with exactly this source → its destinations;
    2. a mailbox with exactly this address → the address itself (so a catch-all cannot take its
       mail; Postfix does not expand an address found in its own expansion);
    3. the same two steps with the extension stripped: alias destinations get the extension
       appended, a mailbox answers the address as given (Dovecot LMTP then sees the +ext);
    4. an address in an alias domain → the same local part in the target domain, when that
       address resolves to anything there (mailbox, alias or catch-all);
    5. the domain's catch-all `@domain` → its destinations, unchanged.
    """
    parsed = parse_address(address)
    if parsed is None:
        return None
    return _alias_targets(snapshot, parsed[0], parsed[1], follow_alias_domain=True)


def _alias_targets(
    snapshot: Snapshot, local: str, domain: str, *, follow_alias_domain: bool
) -> list[str] | None:
    email = f"{local}@{domain}"
    destinations = snapshot.destinations(email)
    if destinations:
        return destinations
    if not local:
        return None  # `@domain` itself was asked: only its own rows answer
    if snapshot.has_mailbox(email):
        return [email]
    split = split_extension(local, snapshot.recipient_delimiter)
    if split is not None:
        base, extension = split
        base_email = f"{base}@{domain}"
        destinations = snapshot.destinations(base_email)
        if destinations:
            return [_with_extension(destination, extension) for destination in destinations]
        if snapshot.has_mailbox(base_email):
            return [email]
    if follow_alias_domain:
        target = _alias_domain_target(snapshot, domain)
        if target is not None and _alias_targets(
            snapshot, local, target, follow_alias_domain=False
        ):
            return [f"{local}@{target}"]
    return snapshot.destinations(f"@{domain}") or None


def resolve_senders(snapshot: Snapshot, address: str) -> list[str] | None:
    """The login names allowed to send as `address` (`smtpd_sender_login_maps`).

    A mailbox owns itself; an alias is owned by the active local mailboxes it delivers to,
    following alias → alias chains; the address is tried exactly, then without its extension;
    an alias-domain address is owned like its target address; an address that is neither a
    mailbox nor an alias is owned by the owners of its domain's catch-all only when the domain
    allows it (`catchall_senders`, off by default: receiving `ceo@` through a catch-all is no
    reason to send as `ceo@`).
    """
    parsed = parse_address(address)
    if parsed is None or not parsed[0]:
        return None
    owners: dict[str, None] = {}
    _collect_owners(snapshot, parsed[0], parsed[1], owners, set(), 0, catch_all=True)
    return list(owners) or None


def _collect_owners(
    snapshot: Snapshot,
    local: str,
    domain: str,
    owners: dict[str, None],
    visited: set[str],
    depth: int,
    *,
    catch_all: bool,
) -> bool:
    """Add the owners of `local@domain` to `owners`; True if it is a mailbox or an alias."""
    candidates = [local]
    split = split_extension(local, snapshot.recipient_delimiter)
    if split is not None:
        candidates.append(split[0])
    for candidate in candidates:
        email = f"{candidate}@{domain}"
        known = False
        if snapshot.has_mailbox(email):
            owners[email] = None
            known = True
        destinations = snapshot.destinations(email)
        if destinations:
            known = True
            _collect_destination_owners(snapshot, destinations, owners, visited, depth)
        if known:
            return True
    if depth < MAX_ALIAS_DEPTH:
        target = _alias_domain_target(snapshot, domain)
        if target is not None:
            return _collect_owners(
                snapshot, local, target, owners, visited, depth + 1, catch_all=catch_all
            )
    domain_row = snapshot.domain(domain) if catch_all else None
    if domain_row is not None and domain_row.catchall_senders:
        destinations = snapshot.destinations(f"@{domain}")
        _collect_destination_owners(snapshot, destinations, owners, visited, depth)
    return False


def _collect_destination_owners(
    snapshot: Snapshot,
    destinations: list[str],
    owners: dict[str, None],
    visited: set[str],
    depth: int,
) -> None:
    if depth >= MAX_ALIAS_DEPTH:
        return
    for destination in destinations:
        if destination in visited:
            continue
        visited.add(destination)
        parsed = parse_address(destination)
        if parsed is not None and parsed[0]:
            _collect_owners(
                snapshot, parsed[0], parsed[1], owners, visited, depth + 1, catch_all=False
            )


def resolve_delivery_mailbox(snapshot: Snapshot, address: str) -> MailboxRow | None:
    """The one active mailbox mail to `address` is delivered to (aliases, alias domains,
    catch-alls and extensions followed as `resolve_alias` and `resolve_mailbox` do); None when
    it goes elsewhere, nowhere, or to several addresses."""
    destinations = resolve_alias(snapshot, address)
    if destinations is None or len(destinations) != 1:
        return None
    parsed = parse_address(destinations[0])
    if parsed is None:
        return None
    local, domain = parsed
    base = _mailbox_local(snapshot, local, domain)
    return None if base is None else snapshot.mailbox(f"{base}@{domain}")


# --- for Dovecot's passdb/userdb -----------------------------------------------------------------


def find_login(snapshot: Snapshot, login: str) -> LoginRecord | None:
    """The mailbox a login name designates, active or not; None if there is none.

    Case-insensitive, domain in either form; `local@alias.tld` designates `local@target.tld`
    when the alias domain is active. Inactive mailboxes and domains are returned with their
    flags, so the caller can refuse the login with a reason rather than "unknown user".
    """
    parsed = parse_address(login)
    if parsed is None or not parsed[0]:
        return None
    local, domain = parsed
    email = f"{local}@{domain}"
    row = snapshot.mailbox(email)
    if row is None:
        alias_domain = snapshot.alias_domain(domain)
        if alias_domain is None or not alias_domain.active:
            return None
        target = snapshot.domain_by_id(alias_domain.target_domain_id)
        target_name = domain_key(target.name) if target is not None else None
        if not target_name:
            return None
        email = f"{local}@{target_name}"
        row = snapshot.mailbox(email)
        if row is None:
            return None
    domain_row = snapshot.domain_by_id(row.domain_id)
    if domain_row is None:
        return None  # its domain is gone; the mailbox's removal is on its way
    return LoginRecord(
        email=email,
        password=row.password,
        quota=row.quota,
        active=row.active,
        domain_active=domain_row.active,
    )


def iter_mailbox_emails(snapshot: Snapshot, *, active_only: bool = False) -> Iterator[str]:
    """Every mailbox's email (lowercase, ASCII domain), e.g. for `doveadm user '*'`.

    The list of addresses is taken when this is called, so the caller may await between items;
    a mailbox removed meanwhile is skipped. `active_only` also skips mailboxes that cannot log
    in (inactive, or in an inactive domain).
    """
    emails = snapshot.mailbox_emails()
    return _iter_emails(snapshot, emails, active_only)


def _iter_emails(snapshot: Snapshot, emails: list[str], active_only: bool) -> Iterator[str]:
    for email in emails:
        if snapshot.has_mailbox(email) if active_only else snapshot.mailbox_exists(email):
            yield email
