"""Dovecot's dict proxy protocol: passdb/userdb lookups (dict `auth`) and quota usage written by
`quota_clone` (dict `quota`), on a unix socket (`DICT_LISTEN`).

Wire format (`reference/protocols.md` §4): lines end with LF, fields are separated by TAB and
tab-escaped (`lookupd.dovecot.tabescape`). The client opens with a handshake and gets no reply:
`H<major>\\t<minor>\\t<value type>\\t<user>\\t<dict name>`. Majors 2 (Dovecot 2.3.0–2.3.16: the
user is in the handshake, commands carry none), 3 (2.3.17–2.3.21: commands end with the user)
and 4 (2.4: `B` also carries an expiry) are spoken. Then, one per line:

- `L<key>[\\t<user>]` → `O<value>`, `N` (not found) or `F<error>`;
- `I<flags>\\t<max rows>\\t<path>[\\t<user>]` → rows `O<key>\\t<value>`, then an empty line;
- `B<id>…` begins a transaction; `S` `U` `A` `P` `T` `V` add to it without a reply; `R<id>` drops
  it; `C<id>` (or 2.3's `D<id>`) commits it → `O<id>`, or `F<id>\\t<error>` (`D`: `AO<id>`…).

Keys on dict `auth`: `shared/passdb/<login>`, `shared/userdb/<login>`; iteration of
`shared/userdb/` lists every mailbox (`doveadm user '*'`). Dict `quota` accepts transactions
setting `priv/quota/storage` and `priv/quota/messages` for the transaction's user, and hands
them to the `QuotaWriter`; it refuses every other write. Dict `sieve` answers Pigeonhole's dict
script storage for the command's user (`lookupd.vacations`): `priv/sieve/name/vacation` → the
id of the mailbox's vacation script, `N` when it has none; `priv/sieve/data/<id>` → the script.

Replies go out strictly in the order of the commands. Every command but an iteration is answered
synchronously as its line is read; while an iteration streams its rows, the lines after it wait
(and the connection stops reading), so the order holds without Dovecot's async reply ids.

Every failure has a conservative answer:
- no snapshot loaded yet, an exception inside a lookup, a key this server does not know (a
  configuration mistake) → `F`, which Dovecot reports as a temporary failure. `N` ("unknown
  user", which makes LMTP bounce and IMAP say "wrong password") only when the data says so;
- a login that is not UTF-8 or holds a NUL → `N` (no stored address can match it);
- a refused write → `F<id>` on commit; nothing of that transaction is kept. Refused: a quota
  value out of 0..2^63-1, a transaction holding more than MAX_TRANSACTION_BYTES;
- an unknown command, a malformed line, a line over 64 KiB, a number out of range, an unknown
  transaction id, too many open transactions or more than MAX_CONNECTION_TRANSACTION_BYTES
  held by them, or a connection idle too long → that connection is closed, others go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from dinomail.listen import ListenAddress
from lookupd.answer import INTERNAL, NOT_LOADED, Answers, ByteReplies
from lookupd.batchwrite import INT64_MAX
from lookupd.connection import DEFAULT_REQUEST_TIMEOUT, LookupConnection, start_server
from lookupd.dovecot.auth import (
    UserdbSettings,
    encode_fields,
    iter_users,
    lookup_passdb,
    lookup_userdb,
)
from lookupd.dovecot.tabescape import split_fields, tabescape
from lookupd.listen import ConnectionSet, ProtocolServer
from lookupd.metrics import UNKNOWN_MAP, LookupdMetrics, LookupRecorder
from lookupd.quota import QuotaWriter, Usage
from lookupd.resolve import decode_key, find_login
from lookupd.snapshot import Snapshot
from lookupd.vacations import SCRIPT_NAME, VacationScripts

logger = logging.getLogger(__name__)

PROTOCOL = "dovecot_dict"
MAP_NAMES = ("passdb", "userdb", "iterate", "quota", "sieve")

AUTH_DICT = "auth"
QUOTA_DICT = "quota"
SIEVE_DICT = "sieve"
DICT_NAMES = (AUTH_DICT, QUOTA_DICT, SIEVE_DICT)
SUPPORTED_MAJORS = (2, 3, 4)

# Dovecot's own dict server accepts lines up to this; a longer one is not a request of ours.
MAX_LINE_BYTES = 64 * 1024

# Dovecot disconnects after each lookup by default (idle_msecs=0), or after its idle_msecs;
# a connection quiet this long is a client gone without closing.
DEFAULT_IDLE_TIMEOUT = 300.0

# quota_clone opens one transaction at a time with two changes of about 50 bytes; a dict
# attribute is one value on one line (MAX_LINE_BYTES). These bounds only stop a client from
# holding memory: bytes held per transaction (keys, values and user, plus CHANGE_OVERHEAD for
# each change's Python objects) and for all the open transactions of a connection. A
# transaction past its bound fails at commit (`F<id>`) and keeps nothing meanwhile; a
# connection past its bound is closed.
MAX_TRANSACTIONS = 64
MAX_TRANSACTION_CHANGES = 1024
MAX_TRANSACTION_BYTES = 2 * MAX_LINE_BYTES
MAX_CONNECTION_TRANSACTION_BYTES = 4 * MAX_LINE_BYTES
CHANGE_OVERHEAD = 128

# A user name longer than this is no address (254 characters of up to 4 UTF-8 bytes).
MAX_USER_LENGTH = 1024

# Rows written between two yields to the event loop while iterating a million mailboxes, so that
# lookups on other connections keep being answered.
ITERATE_BATCH = 512

# Iteration flags (src/lib-dict/dict.h).
ITERATE_RECURSE = 0x01
ITERATE_SORT_BY_KEY = 0x02
ITERATE_SORT_BY_VALUE = 0x04
ITERATE_NO_VALUE = 0x08
ITERATE_EXACT_KEY = 0x10

PASSDB_PREFIX = b"shared/passdb/"
USERDB_PREFIX = b"shared/userdb/"
QUOTA_BYTES_KEY = b"priv/quota/storage"
QUOTA_MESSAGES_KEY = b"priv/quota/messages"
SIEVE_NAME_KEY = b"priv/sieve/name/" + SCRIPT_NAME.encode()
SIEVE_DATA_PREFIX = b"priv/sieve/data/"

_FAIL_UNKNOWN_KEY = b"Funknown key (known: shared/passdb/<user>, shared/userdb/<user>)\n"
_FAIL_QUOTA_LOOKUP = b"Fthe quota dict only accepts quota_clone's writes\n"
_FAIL_UNKNOWN_PATH = b"Funknown iteration path (this dict iterates shared/userdb/)\n"
_FAIL_SIEVE_NOT_LOADED = b"Fvacation scripts not loaded yet\n"
_FAIL_SIEVE_KEY = (
    b"Funknown key (known: priv/sieve/name/" + SCRIPT_NAME.encode() + b", priv/sieve/data/<id>)\n"
)

SnapshotSource = Callable[[], Snapshot | None]


class DictClientError(Exception):
    """The client broke the protocol: its connection is closed. `reason` labels the metric."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Transaction:
    __slots__ = ("changes", "failed", "size", "user")

    def __init__(self, user: str) -> None:
        self.user = user
        self.changes: list[tuple[bytes, bytes, bytes]] = []  # (command, key, value)
        self.size = len(user) + CHANGE_OVERHEAD  # bytes held, about
        self.failed = ""  # why the commit will fail; its changes are not kept

    def add(self, command: bytes, key: bytes, value: bytes) -> None:
        if self.failed:
            return
        self.size += len(key) + len(value) + CHANGE_OVERHEAD
        if self.size > MAX_TRANSACTION_BYTES:
            self.fail(f"transaction larger than {MAX_TRANSACTION_BYTES} bytes")
            return
        self.changes.append((command, key, value))

    def fail(self, reason: str) -> None:
        self.failed = reason
        self.changes = []
        self.size = len(self.user) + CHANGE_OVERHEAD


class DictService:
    """What the connections share: where answers come from and where usage goes."""

    __slots__ = ("answers", "quota_writer", "recorder", "snapshot_source", "userdb", "vacations")

    def __init__(
        self,
        snapshot_source: SnapshotSource,
        *,
        userdb: UserdbSettings | None = None,
        quota_writer: QuotaWriter | None = None,
        recorder: LookupRecorder | None = None,
        vacations: VacationScripts | None = None,
    ) -> None:
        self.snapshot_source = snapshot_source
        self.userdb = userdb or UserdbSettings()
        self.quota_writer = quota_writer
        self.recorder = recorder
        self.answers = Answers(PROTOCOL, snapshot_source, recorder)
        self.vacations = vacations

    def sieve_lookup(self, key: bytes, user: str) -> bytes:
        """One `L` on dict `sieve`, for `user`: the reply line; never raises."""
        started = time.perf_counter()
        try:
            result, reply = self._sieve_lookup(key, user)
        except Exception:
            logger.exception("dict sieve lookup failed")
            result, reply = "temp", _REPLIES.failure(INTERNAL)
        self.answers.record("sieve", result, started)
        return reply

    def _sieve_lookup(self, key: bytes, user: str) -> tuple[str, bytes]:
        vacations = self.vacations
        if key != SIEVE_NAME_KEY and not key.startswith(SIEVE_DATA_PREFIX):
            return "temp", _FAIL_SIEVE_KEY
        if vacations is None or not vacations.loaded:
            return "temp", _FAIL_SIEVE_NOT_LOADED
        email = self.canonical_user(user)
        script = None if email is None else vacations.script(email)
        if script is None:
            return "notfound", _REPLIES(None)
        if key == SIEVE_NAME_KEY:
            return "ok", b"O" + tabescape(script.id.encode()) + b"\n"
        if key[len(SIEVE_DATA_PREFIX):] != script.id.encode():
            # An id of a script replaced since: Pigeonhole asks for the name again next time.
            return "notfound", _REPLIES(None)
        return "ok", b"O" + tabescape(script.text.encode("utf-8")) + b"\n"

    def lookup(self, key: bytes) -> bytes:
        """One `L` on dict `auth`: the reply line; never raises."""
        if key.startswith(PASSDB_PREFIX):
            kind, lookup = "passdb", self._passdb
        elif key.startswith(USERDB_PREFIX):
            kind, lookup = "userdb", self._userdb
        else:
            self.answers.record(UNKNOWN_MAP, "temp", time.perf_counter())
            return _FAIL_UNKNOWN_KEY
        # Both prefixes have the same length.
        return _REPLIES(self.answers.answer(kind, lookup, decode_key(key[len(PASSDB_PREFIX):])))

    def _passdb(self, snapshot: Snapshot, login: str) -> bytes | None:
        return _found(lookup_passdb(snapshot, login))

    def _userdb(self, snapshot: Snapshot, login: str) -> bytes | None:
        return _found(lookup_userdb(snapshot, login, self.userdb))

    def canonical_user(self, user: str) -> str | None:
        """The stored address of the mailbox `user` names (Dovecot may use an alias domain);
        None when the snapshot knows no such mailbox, or `user` cannot be an address: its
        usage would not be stored, and a client must not fill memory with made-up names."""
        if len(user) > MAX_USER_LENGTH:
            return None
        snapshot = self.snapshot_source()
        if snapshot is None:
            return user.lower()  # not loaded yet: the writer skips unknown addresses
        record = find_login(snapshot, user)
        return None if record is None else record.email



def _found(fields: dict[str, Any] | None) -> bytes | None:
    return None if fields is None else b"O" + tabescape(encode_fields(fields)) + b"\n"


_REPLIES = ByteReplies(b"N\n", lambda reason: b"F" + tabescape(reason) + b"\n")


def _parse_uint(field: bytes, what: str) -> int:
    """0..INT64_MAX, as Dovecot's str_to_* would take it; else the client broke the protocol."""
    value = _bounded_uint(field)
    if value is None:
        raise DictClientError("malformed", f"{what} is not a number: {field[:40]!r}")
    return value


def _parse_int(field: bytes, what: str) -> int:
    """-INT64_MAX..INT64_MAX (Dovecot's str_to_llong; it closes the connection beyond)."""
    value = _bounded_uint(field[1:] if field[:1] in (b"-", b"+") else field)
    if value is None:
        raise DictClientError("malformed", f"{what} is not a number: {field[:40]!r}")
    return -value if field[:1] == b"-" else value


def _bounded_uint(digits: bytes) -> int | None:
    # The length first: int() of thousands of digits is slow, and raises past 4,300.
    if not digits.isdigit() or len(digits) > 19:
        return None
    value = int(digits)
    return value if value <= INT64_MAX else None


class DictProtocol(LookupConnection):
    """One Dovecot connection: handshake, then commands answered in order; the connection's
    limits, timers and shutdown are `LookupConnection`'s."""

    name = "dict"

    def __init__(
        self,
        service: DictService,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        connections: ConnectionSet | None = None,
    ) -> None:
        super().__init__(
            idle_timeout=idle_timeout, request_timeout=request_timeout,
            recorder=service.recorder, connections=connections,
        )
        self._service = service
        self._partial: bytes | bytearray = b""
        self._queue: deque[bytes] = deque()
        self._major = 0  # 0 until the handshake
        self._dict = ""
        self._handshake_user = ""
        self._transactions: dict[int, Transaction] = {}
        self._iteration: asyncio.Task[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()

    # --- framing (LookupConnection's hooks) ------------------------------------------------------

    def received(self, data: bytes) -> bool:
        if self._partial:
            if b"\n" not in data:
                self._keep_partial(data)
                return False
            data = bytes(self._partial) + data
            self._partial = b""
        elif (
            data[-1:] == b"\n" and data.count(b"\n") == 1 and self._major
            and not self._queue and self._iteration is None and len(data) <= MAX_LINE_BYTES
        ):
            # The common case, one whole command (Dovecot waits for each answer): skip the queue.
            self._run_line(data[:-1])
            return True
        if b"\n" not in data:
            self._keep_partial(data)
            return False
        lines = data.split(b"\n")
        partial = lines.pop()
        if len(partial) > MAX_LINE_BYTES:
            self.client_error("oversize", f"a line longer than {MAX_LINE_BYTES} bytes")
            return False
        self._partial = bytearray(partial) if partial else b""
        self._queue.extend(lines)
        self._run_queue()
        return True

    def _keep_partial(self, data: bytes) -> None:
        """Hold the start of a line, in a bytearray grown in place: a line sent one byte at a
        time must not be copied again at every byte. Past MAX_LINE_BYTES the client is closed."""
        if len(self._partial) + len(data) > MAX_LINE_BYTES:
            self.client_error("oversize", f"a line longer than {MAX_LINE_BYTES} bytes")
        elif self._partial:
            self._partial += data
        else:
            self._partial = bytearray(data)

    def request_pending(self) -> bool:
        return bool(self._partial)

    def busy(self) -> bool:
        # Commands wait behind an iteration that streams its rows: neither idle nor slow.
        return self._iteration is not None or bool(self._queue)

    def closed(self) -> None:
        if self._iteration is not None:
            self._iteration.cancel()
        self._writable.set()

    def pause_writing(self) -> None:
        # Replies pile up unread: stop reading until the client catches up; an iteration waits.
        self._writable.clear()
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._writable.set()
        if self._transport is not None and not self._closing and self._iteration is None:
            self._transport.resume_reading()

    # --- commands --------------------------------------------------------------------------------

    def _run_queue(self) -> None:
        transport = self._transport
        if transport is None:
            return
        replies: list[bytes] = []
        queue = self._queue
        try:
            while queue and self._iteration is None and not self._closing:
                line = queue.popleft()
                if len(line) > MAX_LINE_BYTES:
                    raise DictClientError("oversize", f"a line longer than {MAX_LINE_BYTES} bytes")
                reply = self._command(line)
                if reply:
                    replies.append(reply)
        except DictClientError as error:
            if replies:
                transport.write(b"".join(replies))
            self.client_error(error.reason, str(error))
            return
        if replies:
            transport.write(replies[0] if len(replies) == 1 else b"".join(replies))
        if self._iteration is not None and queue:
            transport.pause_reading()  # later commands wait for the rows; so does the client

    def _run_line(self, line: bytes) -> None:
        assert self._transport is not None
        try:
            reply = self._command(line)
        except DictClientError as error:
            self.client_error(error.reason, str(error))
            return
        if reply:
            self._transport.write(reply)

    def _command(self, line: bytes) -> bytes | None:
        if not line:
            raise DictClientError("malformed", "an empty line")
        command = line[0]
        if self._major == 0:
            if command != 0x48:  # H
                raise DictClientError("malformed", "the first line is not a handshake")
            self._handshake(line)
            return None
        if command == 0x4C:  # L: the hot path
            args = line[1:]
            key = split_fields(args)[0] if b"\t" in args or b"\x01" in args else args
            if self._dict == AUTH_DICT:
                return self._service.lookup(key)
            if self._dict == SIEVE_DICT:
                fields = split_fields(args)
                user = self._handshake_user
                if self._major >= 3 and len(fields) > 1:
                    user = fields[1].decode("utf-8", "replace")
                return self._service.sieve_lookup(fields[0], user)
            self._record("quota", "perm")
            return _FAIL_QUOTA_LOOKUP
        handler = _HANDLERS.get(command)
        if handler is None:
            raise DictClientError("unknown_command", f"unknown command {bytes((command,))!r}")
        return handler(self, split_fields(line[1:]))

    def _handshake(self, line: bytes) -> None:
        fields = split_fields(line[1:])
        if len(fields) < 5 or not fields[0].isdigit():
            raise DictClientError("malformed", "a malformed handshake")
        major = int(fields[0])
        if major not in SUPPORTED_MAJORS:
            raise DictClientError("malformed", f"dict protocol version {major} is not spoken here")
        try:
            name = fields[4].decode("utf-8")
            user = fields[3].decode("utf-8")
        except UnicodeDecodeError:
            raise DictClientError("malformed", "a handshake that is not UTF-8") from None
        if name not in DICT_NAMES:
            # Dovecot's own dict server closes too; the client logs it on its side.
            logger.warning("dict client asked for dict %r; known: %s", name, ", ".join(DICT_NAMES))
            raise DictClientError("unknown_dict", f"unknown dict name {name!r}")
        self._major = major
        self._dict = name
        self._handshake_user = user

    def _iterate(self, args: list[bytes]) -> bytes | None:
        if len(args) < 3:
            raise DictClientError("malformed", "an iteration without a path")
        flags = _parse_uint(args[0], "iteration flags")
        max_rows = _parse_uint(args[1], "iteration row limit")
        path = args[2]
        started = time.perf_counter()
        if self._dict != AUTH_DICT:
            self._record("iterate", "perm", started)
            return _FAIL_QUOTA_LOOKUP
        snapshot = self._service.snapshot_source()
        if snapshot is None:
            self._record("iterate", "temp", started)
            return _REPLIES.failure(NOT_LOADED)
        if flags & ITERATE_EXACT_KEY:
            if not path.startswith(USERDB_PREFIX):
                self._record("iterate", "temp", started)
                return _FAIL_UNKNOWN_PATH
            login = decode_key(path[len(USERDB_PREFIX):])
            emails = [] if login is None else [login]
        elif path == USERDB_PREFIX:
            emails = list(iter_users(snapshot))
            if flags & ITERATE_SORT_BY_KEY:
                emails.sort()
        else:
            self._record("iterate", "temp", started)
            return _FAIL_UNKNOWN_PATH
        if max_rows:
            del emails[max_rows:]
        self._iteration = asyncio.ensure_future(
            self._stream_rows(snapshot, emails, not flags & ITERATE_NO_VALUE, started)
        )
        self._iteration.add_done_callback(self._iteration_done)
        return None

    async def _stream_rows(
        self, snapshot: Snapshot, emails: list[str], with_values: bool, started: float
    ) -> None:
        userdb = self._service.userdb
        rows: list[bytes] = []
        result = "ok"
        try:
            for email in emails:
                fields = lookup_userdb(snapshot, email, userdb)
                if fields is None:
                    continue  # removed since the iteration began
                key = USERDB_PREFIX + email.encode("utf-8")
                value = tabescape(encode_fields(fields)) if with_values else b""
                rows.append(b"O" + tabescape(key) + b"\t" + value + b"\n")
                if len(rows) >= ITERATE_BATCH:
                    if not await self._send(rows):
                        return
                    rows = []
            rows.append(b"\n")
        except Exception:
            logger.exception("dict iteration failed")
            rows.append(_REPLIES.failure(INTERNAL))
            result = "temp"
        await self._send(rows)
        self._record("iterate", result, started)

    async def _send(self, rows: list[bytes]) -> bool:
        """Write rows, then let the loop serve others (and wait while the client is behind)."""
        if self._transport is None or self._closing:
            return False
        self._transport.write(b"".join(rows))
        await asyncio.sleep(0)
        await self._writable.wait()
        return self._transport is not None and not self._closing

    def _iteration_done(self, task: asyncio.Task[None]) -> None:
        self._iteration = None
        if self._transport is None or self._closing:
            return
        self.active_now()  # the client waited for the rows: its time starts again
        self._run_queue()
        if self._iteration is None and self._writable.is_set() and self._transport is not None:
            self._transport.resume_reading()

    # --- transactions ----------------------------------------------------------------------------

    def _transaction(self, field: bytes) -> tuple[int, Transaction]:
        transaction_id = _parse_uint(field, "transaction id")
        transaction = self._transactions.get(transaction_id)
        if transaction is None:
            raise DictClientError("malformed", f"transaction {transaction_id} does not exist")
        return transaction_id, transaction

    def _begin(self, args: list[bytes]) -> None:
        if not args:
            raise DictClientError("malformed", "a transaction without an id")
        transaction_id = _parse_uint(args[0], "transaction id")
        if transaction_id in self._transactions:
            raise DictClientError("malformed", f"transaction {transaction_id} already exists")
        if len(self._transactions) >= MAX_TRANSACTIONS:
            raise DictClientError("too_many_transactions", "too many open transactions")
        if self._major >= 3 and len(args) > 1:
            user = args[1].decode("utf-8", "replace")
        else:
            user = self._handshake_user
        self._transactions[transaction_id] = Transaction(user)
        self._check_held_bytes()

    def _change(self, command: bytes, args: list[bytes], with_value: bool) -> None:
        if len(args) != (3 if with_value else 2):
            raise DictClientError("malformed", f"a malformed {command.decode()} command")
        _, transaction = self._transaction(args[0])
        if command == b"A":
            _parse_int(args[2], "increment")  # Dovecot's server closes on a bad number too
        if len(transaction.changes) >= MAX_TRANSACTION_CHANGES:
            raise DictClientError("too_many_changes", "too many changes in one transaction")
        transaction.add(command, args[1], args[2] if with_value else b"")
        if transaction.failed:
            logger.info("dict: transaction %s refused: %s", args[0][:20].decode("ascii"),
                        transaction.failed)
        self._check_held_bytes()

    def _check_held_bytes(self) -> None:
        held = sum(transaction.size for transaction in self._transactions.values())
        if held > MAX_CONNECTION_TRANSACTION_BYTES:
            raise DictClientError(
                "too_much_data",
                f"open transactions hold more than {MAX_CONNECTION_TRANSACTION_BYTES} bytes",
            )

    def _no_reply(self, args: list[bytes]) -> None:
        # T (timestamp) and V (hide log values): nothing to keep, but the transaction must exist.
        if not args:
            raise DictClientError("malformed", "a transaction command without an id")
        self._transaction(args[0])

    def _rollback(self, args: list[bytes]) -> None:
        if not args:
            raise DictClientError("malformed", "a rollback without an id")
        transaction_id, _ = self._transaction(args[0])
        del self._transactions[transaction_id]

    def _commit(self, args: list[bytes], prefix: bytes) -> bytes:
        if not args:
            raise DictClientError("malformed", "a commit without an id")
        transaction_id, transaction = self._transaction(args[0])
        del self._transactions[transaction_id]
        started = time.perf_counter()
        error: str | None
        if transaction.failed:
            error = f"refused: {transaction.failed}"
        elif self._dict == QUOTA_DICT:
            error = self._commit_quota(transaction)
        else:
            error = "read-only dict: passdb and userdb are changed through DinoMail"
        self._record("quota" if self._dict == QUOTA_DICT else UNKNOWN_MAP,
                     "ok" if error is None else "perm", started)
        if error is None:
            return b"%sO%d\n" % (prefix, transaction_id)
        return b"%sF%d\t%s\n" % (prefix, transaction_id, tabescape(error.encode("utf-8")))

    def _commit_quota(self, transaction: Transaction) -> str | None:
        """Hand a committed `quota_clone` transaction to the writer; an error text if refused."""
        writer = self._service.quota_writer
        if writer is None:
            return "quota usage is not stored by this server"
        if not transaction.user:
            return "quota usage needs a user"
        if not transaction.changes:
            return None
        usage = Usage()
        for command, key, value in transaction.changes:
            if key not in (QUOTA_BYTES_KEY, QUOTA_MESSAGES_KEY):
                return f"refused: only {QUOTA_BYTES_KEY.decode()} and " \
                       f"{QUOTA_MESSAGES_KEY.decode()} are written here"
            is_bytes = key == QUOTA_BYTES_KEY
            if command == b"S":
                # quota_clone writes unsigned decimals (PRIu64), never a sign; the column is a
                # BIGINT: 0..2^63-1.
                absolute = _bounded_uint(value)
                if absolute is None:
                    # Counted as a refused commit (the quota map's "perm" lookups).
                    logger.info("dict: quota of %r: %s out of bounds: %r, commit refused",
                                transaction.user[:80], key.decode(), value[:40])
                    return f"refused: {key.decode()} must be a whole number from 0 to {INT64_MAX}"
                delta = 0
            elif command == b"U":
                absolute, delta = 0, 0
            elif command == b"A":
                absolute = usage.bytes if is_bytes else usage.messages
                delta = (usage.bytes_delta if is_bytes else usage.messages_delta) + int(value)
            else:
                return f"refused: {command.decode()} is not supported on quota values"
            if is_bytes:
                usage.bytes, usage.bytes_delta = absolute, delta
            else:
                usage.messages, usage.messages_delta = absolute, delta
        email = self._service.canonical_user(transaction.user)
        if email is not None:  # else a mailbox deleted while Dovecot held its mail: nothing to do
            writer.accept(email, usage)
        return None

    def _record(self, kind: str, result: str, started: float | None = None) -> None:
        self._service.answers.record(kind, result, time.perf_counter() if started is None
                                     else started)


def _commit(protocol: DictProtocol, args: list[bytes]) -> bytes:
    return protocol._commit(args, b"")


def _commit_async(protocol: DictProtocol, args: list[bytes]) -> bytes:
    return protocol._commit(args, b"A")


_HANDLERS: dict[int, Callable[[DictProtocol, list[bytes]], bytes | None]] = {
    ord("I"): DictProtocol._iterate,
    ord("B"): DictProtocol._begin,
    ord("S"): lambda p, args: p._change(b"S", args, True),
    ord("U"): lambda p, args: p._change(b"U", args, False),
    ord("A"): lambda p, args: p._change(b"A", args, True),
    ord("P"): lambda p, args: p._change(b"P", args, True),
    ord("T"): DictProtocol._no_reply,
    ord("V"): DictProtocol._no_reply,
    ord("R"): DictProtocol._rollback,
    ord("C"): _commit,
    ord("D"): _commit_async,
}


DictServer = ProtocolServer


async def start_dict_server(
    listen: str | ListenAddress,
    snapshot_source: SnapshotSource,
    *,
    userdb: UserdbSettings | None = None,
    quota_writer: QuotaWriter | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    max_connections: int = 0,
    metrics: LookupdMetrics | None = None,
    vacations: VacationScripts | None = None,
) -> DictServer:
    """Listen on `listen` (normally `unix:/path`) and answer Dovecot's dict clients.

    `snapshot_source` is called for every lookup (e.g. `lambda: holder.current`). Without a
    `quota_writer`, commits on dict `quota` are refused.
    """
    recorder = metrics.recorder(PROTOCOL, MAP_NAMES) if metrics is not None else None
    service = DictService(
        snapshot_source, userdb=userdb, quota_writer=quota_writer, recorder=recorder,
        vacations=vacations,
    )
    return await start_server(listen, lambda connections: DictProtocol(
        service, idle_timeout=idle_timeout, request_timeout=request_timeout,
        connections=connections,
    ), max_connections)
