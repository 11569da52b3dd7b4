"""What adopting an original database would do, read from the database and checked row by row.

`build_plan` reads every row of the original's mail tables and accounts and decides everything
adoption does: which alias rows collapse, which addresses are normalised, which Django users
become which admins, which API keys carry over, and which rows DinoMail cannot accept
(`problems`; any problem stops the adoption with the database unchanged). `dinomail migrate
--plan` prints the plan; `dinomail migrate` builds it again inside its transaction and carries
out exactly that plan (`dinomail.adoption.apply`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dinomail import validation as v
from dinomail.adoption.detect import CORE_TABLES
from dinomail.passwords.unverifiable import is_saltless_ssha

# The columns of the original's tables at its core migration 0004, which adoption copies.
ORIGINAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "core_virtualdomain": (
        "id", "name", "dkim_key_name", "dkim_key", "dkim_status", "dkim_last_update",
        "display_name", "short_display_name", "imap_address", "pop_address", "smtp_address",
        "dmarc_last_update", "dmarc_status", "spf_last_update", "spf_status",
    ),
    "core_virtualuser": ("id", "email", "password", "quota", "domain_id"),
    "core_virtualalias": ("id", "source", "destination", "domain_id"),
}
# Permissions of the original that let a staff user change mail data (its pages and its API,
# tastypie's DjangoAuthorization, check these; viewing alone gave nothing in its API).
WRITE_PERMISSIONS = frozenset(
    f"{action}_{model}"
    for action in ("add", "change", "delete")
    for model in ("virtualdomain", "virtualuser", "virtualalias")
)
# What a DinoMail domain admin cannot do that these permissions allowed.
SUPERADMIN_ONLY_PERMISSIONS = frozenset({"add_virtualdomain", "delete_virtualdomain"})
KEY_NAME = "original API key"


@dataclass(frozen=True)
class Problem:
    """A row DinoMail cannot accept; adoption stops and changes nothing."""

    table: str
    row_id: object
    reason: str

    def __str__(self) -> str:
        return f"{self.table} id {self.row_id}: {self.reason}"


@dataclass(frozen=True)
class Normalisation:
    table: str
    row_id: int
    column: str
    old: str
    new: str


@dataclass(frozen=True)
class Collapse:
    """Alias rows that say the same thing once normalised: the lowest id stays."""

    kept_id: int
    removed_ids: tuple[int, ...]
    source: str
    destination: str


@dataclass(frozen=True)
class AdoptedAdmin:
    id: int
    username: str
    email: str
    password: str = field(repr=False)
    is_superadmin: bool
    is_active: bool
    domain_ids: tuple[int, ...]
    created_at: datetime | None
    last_login: datetime | None
    permissions: tuple[str, ...]


@dataclass(frozen=True)
class SkippedUser:
    id: int
    username: str
    reason: str


@dataclass(frozen=True)
class AdoptedKey:
    admin_id: int
    username: str
    secret: str = field(repr=False)
    created_at: datetime | None

    @property
    def shown(self) -> str:
        """The key as the plan prints it: its first characters only."""
        return f"{self.secret[:8]}…"


@dataclass
class AdoptionPlan:
    row_counts: dict[str, int] = field(default_factory=dict)
    normalisations: list[Normalisation] = field(default_factory=list)
    collapses: list[Collapse] = field(default_factory=list)
    null_quotas: list[tuple[int, str]] = field(default_factory=list)
    unverifiable: list[tuple[int, str]] = field(default_factory=list)
    admins: list[AdoptedAdmin] = field(default_factory=list)
    skipped_users: list[SkippedUser] = field(default_factory=list)
    keys: list[AdoptedKey] = field(default_factory=list)
    skipped_keys: list[tuple[int, str]] = field(default_factory=list)
    domain_names: dict[int, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def removed_alias_ids(self) -> list[int]:
        return [row_id for collapse in self.collapses for row_id in collapse.removed_ids]

    def lines(self) -> list[str]:
        """The plan in words, as `dinomail migrate --plan` and `dinomail migrate` print it."""
        return _describe(self)


# --- reading -------------------------------------------------------------------------------------


def _rows(conn: Connection, sql: str, **types: sa.types.TypeEngine) -> list[sa.Row]:
    text = sa.text(sql)
    query: sa.TextClause | sa.TextualSelect = text.columns(**types) if types else text
    return list(conn.execute(query))


def _table_rows(conn: Connection, plan: AdoptionPlan, table: str, columns: str,
                **types: sa.types.TypeEngine) -> list[sa.Row]:
    """Every row of one of the original's tables (by id), counted in the plan."""
    rows = _rows(conn, f"SELECT {columns} FROM {table} ORDER BY id", **types)
    plan.row_counts[table] = len(rows)
    return rows


def _check_columns(conn: Connection, plan: AdoptionPlan) -> None:
    inspector = sa.inspect(conn)
    for table in CORE_TABLES:
        present = {column["name"] for column in inspector.get_columns(table)}
        expected = set(ORIGINAL_COLUMNS[table])
        for name in sorted(present - expected):
            plan.problems.append(Problem(
                table, "-", f"column {name} is not one of the original's; adoption would lose "
                            "it (move its data elsewhere and drop it first)"))
        for name in sorted(expected - present):
            plan.problems.append(Problem(table, "-", f"the original's column {name} is missing"))


def _check_references(conn: Connection, plan: AdoptionPlan) -> None:
    """Adoption rebuilds the mail tables: anything outside them that points at them would
    stop it half way, so it is named before anything changes."""
    inspector = sa.inspect(conn)
    for table in sorted(set(inspector.get_table_names()) - set(CORE_TABLES)):
        for key in inspector.get_foreign_keys(table):
            if key["referred_table"] in CORE_TABLES:
                plan.problems.append(Problem(
                    key["referred_table"], "-",
                    f"the table {table} refers to it; adoption rebuilds the mail tables, so "
                    "drop that foreign key (or the table) first"))
    for view in inspector.get_view_names():
        definition = inspector.get_view_definition(view) or ""
        for table in CORE_TABLES:
            if table in definition:
                plan.problems.append(Problem(
                    table, "-", f"the view {view} reads it; adoption rebuilds the mail tables, "
                                "so drop the view first and create it again afterwards"))


def _normalise(plan: AdoptionPlan, table: str, row_id: int, column: str, old: str,
               new: str) -> None:
    if new != old:
        plan.normalisations.append(Normalisation(table, row_id, column, old, new))


def _seen_before(plan: AdoptionPlan, table: str, row_id: int, seen: dict[str, int], key: str,
                 clash: str) -> bool:
    """Whether an earlier row of `table` has the same `key` once normalized (a problem: `clash`
    says whose value it is); else `key` is now this row's."""
    if key in seen:
        plan.problems.append(Problem(
            table, row_id, f"{clash} {seen[key]} once written in lowercase"))
        return True
    seen[key] = row_id
    return False


def _read_domains(conn: Connection, plan: AdoptionPlan) -> None:
    table = "core_virtualdomain"
    seen: dict[str, int] = {}
    rows = _table_rows(conn, plan, table, "id, name")
    for row in rows:
        try:
            name = v.normalize_domain(row.name)
        except v.ValidationError as error:
            plan.problems.append(Problem(table, row.id, f"name {row.name!r}: {error.message}"))
            continue
        if _seen_before(plan, table, row.id, seen, name,
                        f"name {row.name!r} is the name of domain"):
            continue
        plan.domain_names[row.id] = name
        _normalise(plan, table, row.id, "name", row.name, name)


def _domain_of_row(plan: AdoptionPlan, table: str, row_id: int, domain_id: int) -> str | None:
    name = plan.domain_names.get(domain_id)
    if name is None and not any(p.table == "core_virtualdomain" and p.row_id == domain_id
                                for p in plan.problems):
        plan.problems.append(Problem(table, row_id, f"its domain {domain_id} does not exist"))
    return name


def _read_mailboxes(conn: Connection, plan: AdoptionPlan) -> None:
    table = "core_virtualuser"
    seen: dict[str, int] = {}
    rows = _table_rows(conn, plan, table, "id, email, password, quota, domain_id")
    for row in rows:
        domain = _domain_of_row(plan, table, row.id, row.domain_id)
        try:
            email = v.normalize_email(row.email)
        except v.ValidationError as error:
            plan.problems.append(Problem(table, row.id, f"email {row.email!r}: {error.message}"))
            continue
        if domain is not None and v.domain_of(email) != domain:
            plan.problems.append(Problem(
                table, row.id, f"email {row.email!r} does not belong to its domain {domain} "
                               f"(domain {row.domain_id})"))
            continue
        if _seen_before(plan, table, row.id, seen, email,
                        f"email {row.email!r} is the address of mailbox"):
            continue
        if row.quota is not None and row.quota < 0:
            plan.problems.append(Problem(table, row.id, f"quota {row.quota} is negative"))
        if row.quota is None:
            plan.null_quotas.append((row.id, email))
        if not row.password:
            plan.problems.append(Problem(table, row.id, "the password is empty"))
        elif is_saltless_ssha(row.password):
            plan.unverifiable.append((row.id, email))
        _normalise(plan, table, row.id, "email", row.email, email)


def _read_aliases(conn: Connection, plan: AdoptionPlan) -> None:
    table = "core_virtualalias"
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    rows = _table_rows(conn, plan, table, "id, source, destination, domain_id")
    for row in rows:
        domain = _domain_of_row(plan, table, row.id, row.domain_id)
        try:
            source = v.normalize_alias_source(row.source)
            destination = v.normalize_email(row.destination, "destination")
        except v.ValidationError as error:
            value = row.source if error.field == "source" else row.destination
            plan.problems.append(Problem(
                table, row.id, f"{error.field} {value!r}: {error.message}"))
            continue
        if domain is not None and v.domain_of(source) != domain:
            plan.problems.append(Problem(
                table, row.id, f"source {row.source!r} does not belong to its domain {domain} "
                               f"(domain {row.domain_id})"))
            continue
        if source == destination:
            plan.problems.append(Problem(
                table, row.id, f"the alias {row.source} delivers to its own address"))
            continue
        groups[(source, destination)].append(row.id)
        if len(groups[(source, destination)]) == 1:
            _normalise(plan, table, row.id, "source", row.source, source)
            _normalise(plan, table, row.id, "destination", row.destination, destination)
    for (source, destination), ids in groups.items():
        if len(ids) > 1:
            plan.collapses.append(Collapse(ids[0], tuple(ids[1:]), source, destination))


def _permissions(conn: Connection) -> dict[int, set[str]]:
    """The `core` permissions of each user, given directly or through a group."""
    found: dict[int, set[str]] = defaultdict(set)
    for sql in (
        "SELECT up.user_id, p.codename FROM auth_user_user_permissions up "
        "JOIN auth_permission p ON p.id = up.permission_id "
        "JOIN django_content_type ct ON ct.id = p.content_type_id WHERE ct.app_label = 'core'",
        "SELECT ug.user_id, p.codename FROM auth_user_groups ug "
        "JOIN auth_group_permissions gp ON gp.group_id = ug.group_id "
        "JOIN auth_permission p ON p.id = gp.permission_id "
        "JOIN django_content_type ct ON ct.id = p.content_type_id WHERE ct.app_label = 'core'",
    ):
        for row in _rows(conn, sql):
            found[row.user_id].add(row.codename)
    return found


def _read_admins(conn: Connection, plan: AdoptionPlan, tables: Iterable[str]) -> None:
    tables = set(tables)
    needed = {"auth_user", "auth_permission", "auth_user_user_permissions", "auth_user_groups",
              "auth_group_permissions", "django_content_type"}
    if not needed <= tables:
        return
    permissions = _permissions(conn)
    users = _table_rows(
        conn, plan, "auth_user",
        "id, username, email, password, is_superuser, is_staff, is_active, date_joined, "
        "last_login", date_joined=sa.DateTime(), last_login=sa.DateTime(),
    )
    all_domains = tuple(sorted(plan.domain_names))
    for user in users:
        domain_ids: tuple[int, ...]
        granted = tuple(sorted(permissions.get(user.id, ())))
        try:
            username = v.normalize_username(user.username)
        except v.ValidationError as error:
            plan.skipped_users.append(SkippedUser(user.id, user.username, error.message))
            continue
        if user.is_superuser:
            superadmin, domain_ids = True, ()
        elif not user.is_staff:
            plan.skipped_users.append(SkippedUser(
                user.id, username, "not staff: the original's pages and API were not theirs"))
            continue
        elif not WRITE_PERMISSIONS & set(granted):
            plan.skipped_users.append(SkippedUser(
                user.id, username, "staff without a permission to change domains, mailboxes "
                                   "or aliases"))
            continue
        else:
            superadmin, domain_ids = False, all_domains
        plan.admins.append(AdoptedAdmin(
            id=user.id, username=username, email=user.email or "", password=user.password,
            is_superadmin=bool(superadmin), is_active=bool(user.is_active),
            domain_ids=domain_ids, created_at=user.date_joined, last_login=user.last_login,
            permissions=granted,
        ))


def _read_keys(conn: Connection, plan: AdoptionPlan, tables: Iterable[str]) -> None:
    if "tastypie_apikey" not in set(tables):
        return
    adopted = {admin.id: admin.username for admin in plan.admins}
    rows = _table_rows(conn, plan, "tastypie_apikey", "id, key, created, user_id",
                       created=sa.DateTime())
    for row in rows:
        if row.user_id not in adopted:
            plan.skipped_keys.append((row.id, "its user does not become an admin"))
        elif not row.key or not row.key.isascii() or len(row.key) > 128:
            plan.skipped_keys.append((row.id, "the key is empty or not a key DinoMail accepts"))
        else:
            plan.keys.append(AdoptedKey(row.user_id, adopted[row.user_id], row.key, row.created))


def build_plan(conn: Connection) -> AdoptionPlan:
    """Read an original database (see `detect`) and decide everything adoption does."""
    tables = set(sa.inspect(conn).get_table_names())
    plan = AdoptionPlan()
    _check_columns(conn, plan)
    _check_references(conn, plan)
    if plan.problems:
        return plan
    _read_domains(conn, plan)
    _read_mailboxes(conn, plan)
    _read_aliases(conn, plan)
    _read_admins(conn, plan, tables)
    _read_keys(conn, plan, tables)
    return plan


# --- words ---------------------------------------------------------------------------------------


def _rights(plan: AdoptionPlan, admin: AdoptedAdmin) -> str:
    if admin.is_superadmin:
        rights = "superadmin (every domain, admins, keys)"
    else:
        names = ", ".join(plan.domain_names[i] for i in admin.domain_ids) or "none yet"
        rights = f"admin of every domain at adoption ({names})"
        lost = SUPERADMIN_ONLY_PERMISSIONS & set(admin.permissions)
        if lost:
            rights += "; cannot create or delete domains, as " + ", ".join(
                f"core.{name}" for name in sorted(lost)) + " allowed"
    state = "active" if admin.is_active else "inactive (stays inactive)"
    return f"{rights}, {state}"


def _describe(plan: AdoptionPlan) -> list[str]:
    lines = ["This is a database of the original DinoMail (Django). Adopting it:"]
    removed = len(plan.removed_alias_ids)
    counts = [f"{table} {plan.row_counts.get(table, 0)}" for table in CORE_TABLES]
    lines.append("  rows kept with their ids: " + ", ".join(counts)
                 + (f" ({removed} duplicate alias rows collapsed)" if removed else ""))
    for collapse in plan.collapses:
        ids = ", ".join(str(i) for i in collapse.removed_ids)
        lines.append(f"  collapse: core_virtualalias id {ids} into id {collapse.kept_id} "
                     f"({collapse.source} -> {collapse.destination})")
    for change in plan.normalisations:
        lines.append(f"  normalise: {change.table} id {change.row_id} {change.column} "
                     f"{change.old!r} -> {change.new!r}")
    for row_id, email in plan.null_quotas:
        lines.append(f"  no quota: core_virtualuser id {row_id} ({email}) has a NULL quota, "
                     "kept: it means unlimited, like 0")
    for row_id, email in plan.unverifiable:
        lines.append(f"  cannot log in: core_virtualuser id {row_id} ({email}) has an {{SSHA}} "
                     "hash without its salt; kept, the mailbox logs in once its password is "
                     "reset")
    for admin in plan.admins:
        lines.append(f"  admin: {admin.username} (auth_user id {admin.id}): "
                     f"{_rights(plan, admin)}; keeps the Django password until the first login")
    for user in plan.skipped_users:
        lines.append(f"  not an admin: {user.username} (auth_user id {user.id}): {user.reason}")
    for key in plan.keys:
        lines.append(f"  API key: {key.username} {key.shown} keeps working as "
                     f"ApiKey {key.username}:<key>, stored hashed")
    for key_id, reason in plan.skipped_keys:
        lines.append(f"  API key not kept: tastypie_apikey id {key_id}: {reason}")
    lines.append("  the original's Django tables (auth_*, django_*, tastypie_*) are left as "
                 "they are")
    if plan.problems:
        lines.append(f"Problems ({len(plan.problems)}): adoption stops, nothing is changed:")
        lines.extend(f"  {problem}" for problem in plan.problems)
    else:
        lines.append("Problems: none.")
    return lines
