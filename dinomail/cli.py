"""The `dinomail` command: the original `manage.py` commands, the daemons and `pw`.

Every failure an admin can cause (a bad setting, an unreachable database, a missing migration)
ends with one line on stderr and a non-zero status, never a traceback: 2 for a bad setting or
bad usage, 1 for anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import os
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from dinomail import __version__
from dinomail.commands import EXIT_FAILURE, EXIT_USAGE, CommandError, fail
from dinomail.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from dinomail.adoption import DatabaseState
    from dinomail.store import Store

SUPERUSER_PASSWORD_ENV = "DINOMAIL_SUPERUSER_PASSWORD"


# --- commands ------------------------------------------------------------------------------------


async def _migrate(settings: Settings, args: argparse.Namespace) -> None:
    from dinomail import adoption, migrate
    from dinomail.database import create_engine

    engine = create_engine(settings.DATABASE_URL)
    try:
        state = await adoption.database_state(engine)
        if state.kind == "unsupported":
            fail(f"{state.reason}; nothing was changed", EXIT_USAGE)
        if not args.plan and await _is_standby(engine):
            fail("the database is a standby (a read-only replica in recovery), which takes no "
                 "writes: run `dinomail migrate` with DATABASE_URL naming the primary; the "
                 "standby receives the migration from it")
        if args.plan:
            await _print_plan(engine, state)
            return
        if state.kind == "original":
            await _adopt(engine)
            return
        before = await migrate.current_revision(engine)
        await migrate.upgrade(engine)
        after = await migrate.current_revision(engine)
    finally:
        await engine.dispose()
    if before == after:
        print(f"Database already at revision {after}; nothing to do.")
    else:
        print(f"Database migrated from {before or 'empty'} to revision {after}.")


async def _print_plan(engine: AsyncEngine, state: DatabaseState) -> None:
    """`migrate --plan`: what `migrate` would do, read only."""
    from dinomail import adoption, migrate

    if state.kind == "original":
        plan = await adoption.read_plan(engine)
        revisions = migrate.pending_revisions(None)
        print("\n".join(plan.lines()))
        print(f"Then DinoMail's revisions {revisions[0][0]} to {revisions[-1][0]} apply.")
        if plan.problems:
            fail(f"the database cannot be adopted as it is: {len(plan.problems)} problem(s) "
                 "listed above; nothing was changed", EXIT_USAGE)
        print("Nothing was changed; run `dinomail migrate` to adopt the database.")
        return
    pending = migrate.pending_revisions(state.revision)
    where = f"at revision {state.revision}" if state.revision else "empty"
    if not pending:
        print(f"Database {where}, the latest: `dinomail migrate` has nothing to do.")
        return
    print(f"Database {where}; `dinomail migrate` would apply:")
    for revision, summary in pending:
        print(f"  {revision}: {summary}")
    print("Nothing was changed.")


async def _adopt(engine: AsyncEngine) -> None:
    from dinomail import adoption, migrate

    try:
        plan = await adoption.adopt(engine)
    except adoption.AdoptionRefused as refused:
        if refused.plan is not None:
            for problem in refused.plan.problems:
                print(f"dinomail: {problem}", file=sys.stderr)
        fail(str(refused), EXIT_USAGE)
    print("\n".join(line for line in plan.lines() if not line.startswith("Problems")))
    print(f"Database adopted and migrated to revision {await migrate.current_revision(engine)}.")


async def _is_standby(engine: AsyncEngine) -> bool:
    from dinomail.store import replication

    async with engine.connect() as conn:
        return await replication.in_recovery(conn)


# What `check` says of a database in recovery, named by the setting that points at it.
STANDBY_ADMIN = (
    "The database ({where}) is a standby (a read-only replica in recovery). Lookups work "
    "there: lookupd follows the change log by polling it every {poll:g} s, as it cannot "
    "LISTEN on a standby. What does not: the admin API's and pages' changes, `dinomail "
    "migrate`, and lookupd's own writes (quota usage, policy counters, login blocks). Point "
    "DATABASE_URL at the primary (or at every server, with ?target_session_attrs=read-write) "
    "and LOOKUPD_DATABASE_URL at the standby."
)
STANDBY_LOOKUPS = (
    "Lookups read from a standby ({where}, LOOKUPD_DATABASE_URL): lookupd follows the change "
    "log by polling it every {poll:g} s; writes go to DATABASE_URL."
)


async def _check(settings: Settings, _args: argparse.Namespace) -> None:
    from dinomail import adoption, migrate
    from dinomail.database import create_engine, describe
    from dinomail.store import Store, mailboxes

    engine = create_engine(settings.DATABASE_URL)
    try:
        state = await adoption.database_state(engine)
        standby = state.kind != "unsupported" and await _is_standby(engine)
    finally:
        await engine.dispose()
    head = migrate.head_revision()
    if state.kind == "original":
        fail("this is a database of the original DinoMail (Django): run `dinomail migrate "
             "--plan` to see what adopting it changes, then `dinomail migrate` to adopt it")
    if state.kind == "unsupported":
        fail(state.reason)
    if state.revision is None:
        fail("the database has no DinoMail tables yet: run `dinomail migrate`")
    if state.revision != head:
        fail(f"the database is at revision {state.revision}, not {head}: run `dinomail migrate`")
    lookups_standby = await _check_lookups_database(settings, head)
    store = Store(settings.DATABASE_URL)
    try:
        async with store.read() as conn:
            locked = await mailboxes.unverifiable_passwords(conn)
    finally:
        await store.close()
    poll = settings.LOOKUPD_POLL_INTERVAL
    if not locked and not standby:
        print(f"Settings valid; database reachable and at revision {head}. No issues found.")
    else:
        print(f"Settings valid; database reachable and at revision {head}.")
    if lookups_standby:
        print(STANDBY_LOOKUPS.format(where=describe(settings.lookupd_database_url), poll=poll))
    if locked:
        print(f"{len(locked)} mailbox(es) cannot log in until their password is reset (an "
              "{SSHA} hash stored without its salt by the original DinoMail):")
        for row in locked:
            print(f"  {row['email']} (id {row['id']})")
    if standby:
        print(STANDBY_ADMIN.format(where=f"DATABASE_URL, {describe(settings.DATABASE_URL)}",
                                   poll=poll))
        fail("DATABASE_URL names a standby: the admin side cannot write there")


async def _check_lookups_database(settings: Settings, head: str) -> bool:
    """LOOKUPD_DATABASE_URL, when set apart: reachable, migrated; whether it is a standby."""
    from dinomail import adoption
    from dinomail.database import create_engine

    if settings.lookupd_database_url == settings.DATABASE_URL:
        return False
    engine = create_engine(settings.lookupd_database_url)
    try:
        state = await adoption.database_state(engine)
        if state.kind == "unsupported" or state.revision != head:
            fail(f"LOOKUPD_DATABASE_URL: the database is not at revision {head} "
                 f"({state.reason or state.revision or 'no DinoMail tables'}): it must be the "
                 "DinoMail database, or a standby of it")
        return await _is_standby(engine)
    except Exception as error:
        from dinomail.store.errors import as_unavailable

        unavailable = as_unavailable(error)
        if unavailable is None:
            raise
        fail(f"LOOKUPD_DATABASE_URL: {unavailable.message}")
    finally:
        await engine.dispose()


def _prompt(label: str, *, secret: bool = False) -> str:
    if not sys.stdin.isatty():
        fail(f"{label} is needed: run interactively, or use --noinput (see --help)", EXIT_USAGE)
    try:
        return getpass.getpass(f"{label}: ") if secret else input(f"{label}: ")
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)
        fail("cancelled")


async def _createsuperuser(settings: Settings, args: argparse.Namespace) -> None:
    from dinomail.store import Store, admins

    username = args.username
    email = args.email or ""
    store = Store(settings.DATABASE_URL)
    try:
        if args.if_missing:
            async with store.read() as conn:
                if await admins.any_exists(conn):
                    print("An admin account exists already: log in with it.")
                    return
            print("Create the first admin account, to log in to the pages and the API.")
        await _create_superuser(store, args, username, email)
    finally:
        await store.close()


async def _create_superuser(
    store: Store, args: argparse.Namespace, username: str, email: str
) -> None:
    from dinomail.store import StoreError, admins
    from dinomail.validation import ValidationError

    if args.noinput:
        password = os.environ.get(SUPERUSER_PASSWORD_ENV, "")
        if not username or not password:
            fail(f"--noinput needs --username and the password in ${SUPERUSER_PASSWORD_ENV}",
                 EXIT_USAGE)
    else:
        username = username or _prompt("Username")
        email = email or _prompt("Email address (optional)")
        password = _prompt("Password", secret=True)
        if _prompt("Password (again)", secret=True) != password:
            fail("the two passwords differ; nothing was created")

    try:
        async with store.write() as conn:
            account = await admins.create(
                conn, "cli", username=username, password=password, email=email,
                is_superadmin=True,
            )
    except ValidationError as error:
        fail(f"{error.field}: {error.message}; nothing was created", EXIT_USAGE)
    except StoreError as error:
        fail(f"{error.message}; nothing was created")
    print(f"Superuser {account['username']} created.")


async def _serve(settings: Settings, args: argparse.Namespace) -> None:
    from dinomail.service import run_service

    if getattr(args, "workers", None) is not None:
        settings = dataclasses.replace(settings, LOOKUPD_WORKERS=args.workers)
    await run_service(settings, args.command)


def _workers_count(value: str) -> int:
    from dinomail.settings import MAX_LOOKUPD_WORKERS

    if not value.isdigit() or not 1 <= int(value) <= MAX_LOOKUPD_WORKERS:
        raise argparse.ArgumentTypeError(f"must be a number from 1 to {MAX_LOOKUPD_WORKERS}")
    return int(value)


async def _postfix_config(settings: Settings, args: argparse.Namespace) -> None:
    from dinomail import postfix_config

    if not args.apply:
        for command in postfix_config.postconf_commands(settings):
            print(command.line())
        print(postfix_config.earlier_lines_note(settings))
        return
    errors = postfix_config.apply(settings, args.config_dir)
    if errors:
        fail("; ".join(errors))
    print(f"Postfix's settings in {args.config_dir} now ask DinoMail: run `postfix reload`.")


async def _dovecot_config(settings: Settings, args: argparse.Namespace) -> None:
    from dinomail import dovecot_config

    dict_file = args.dict_file or dovecot_config.default_dict_file(args.output)
    try:
        conf = dovecot_config.conf_d_file(
            settings, dict_file=dict_file,
            queue_directory=dovecot_config.postfix_queue(args.postfix_config_dir),
        )
        dict_settings = dovecot_config.dict_auth_file(settings)
    except ValueError as error:
        fail(str(error), EXIT_USAGE)
    if args.output is None:
        print(conf)
        print(f"# --- {dict_file} ---")
        print(dict_settings, end="")
        return
    for path, text in ((dict_file, dict_settings), (args.output, conf)):
        try:
            with open(path, "w") as file:
                file.write(text)
        except OSError as error:
            fail(f"cannot write {path}: {error.strerror}")
    print(f"Wrote {args.output} and {dict_file}: restart Dovecot.")


async def _doctor(settings: Settings, args: argparse.Namespace) -> None:
    from dinomail.doctor import run_doctor

    report = await run_doctor(
        settings, postfix_dir=args.postfix_config_dir, dovecot_file=args.dovecot_config
    )
    for line in report.passed:
        print(f"ok: {line}")
    for line in report.problems:
        print(f"PROBLEM: {line}")
    if report.problems:
        fail(f"{len(report.problems)} problem(s): mail would not flow; fix them and run "
             "`dinomail doctor` again")
    print("No problems found: mail would flow.")


def _pw(pw_args: list[str], config: str | None) -> int:
    from dinomail.pw_command import main as pw_main

    # Like doveadm, `pw` works without a database; the configured scheme is its default.
    try:
        scheme = load_settings(config).DINOMAIL_PASSWORD_SCHEME
    except SettingsError:
        scheme = None
    return pw_main(pw_args, default_scheme=scheme) if scheme else pw_main(pw_args)


async def _export(settings: Settings, args: argparse.Namespace) -> None:
    from dinomail.transfer.commands import run_export

    await run_export(settings, args)


async def _import(settings: Settings, args: argparse.Namespace) -> None:
    from dinomail.transfer.commands import run_import

    await run_import(settings, args)


async def _import_csv(settings: Settings, args: argparse.Namespace) -> None:
    from dinomail.transfer.commands import run_import_csv

    await run_import_csv(settings, args)


async def _import_postfixadmin(settings: Settings, args: argparse.Namespace) -> None:
    from dinomail.transfer.commands import run_import_postfixadmin

    await run_import_postfixadmin(settings, args)


Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, None]]
COMMANDS: dict[str, tuple[str, Command]] = {
    "migrate": ("create or upgrade the database schema, or adopt an original DinoMail "
                "database", _migrate),
    "check": ("check the settings, the database and its migrations", _check),
    "createsuperuser": ("create an admin who manages every domain", _createsuperuser),
    "serve": ("run the admin API and every lookup listener in one process", _serve),
    "lookupd": ("run the lookup daemon (socketmap, Dovecot dict and HTTP, policy)", _serve),
    "adminapi": ("run the admin API and web pages", _serve),
    "postfix-config": ("print (or --apply) the Postfix settings that ask DinoMail",
                       _postfix_config),
    "dovecot-config": ("write the Dovecot conf.d file that asks DinoMail", _dovecot_config),
    "doctor": ("check that Postfix, Dovecot and DinoMail are wired so that mail flows",
               _doctor),
    # Moving in and out: dinomail/transfer/.
    "export": ("write every domain, mailbox, alias and admin as one JSON document", _export),
    "import": ("read a document written by `dinomail export` into this database", _import),
    "import-csv": ("create many mailboxes or aliases from a CSV file, all or none", _import_csv),
    "import-postfixadmin": ("import the domains, mailboxes, aliases and admins of a PostfixAdmin "
                            "database", _import_postfixadmin),
}
TRANSFER_COMMANDS = ("export", "import", "import-csv", "import-postfixadmin")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dinomail",
        description="DinoMail: the control plane of a Postfix + Dovecot mail server.",
    )
    parser.add_argument("--version", action="version", version=f"dinomail {__version__}")
    parser.add_argument(
        "--config", metavar="PATH",
        help="TOML settings file (default: $DINOMAIL_CONFIG, else ./dinomail.toml if present)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (summary, _) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        if name == "migrate":
            sub.add_argument(
                "--plan", action="store_true",
                help="print what migrating (or adopting an original database) would do; "
                     "change nothing",
            )
        if name == "createsuperuser":
            sub.add_argument("--username")
            sub.add_argument("--email")
            sub.add_argument(
                "--noinput", "--no-input", action="store_true",
                help=f"do not prompt; the password comes from ${SUPERUSER_PASSWORD_ENV}",
            )
            sub.add_argument(
                "--if-missing", action="store_true",
                help="do nothing if an admin account exists already (for first-run scripts)",
            )
        if name == "postfix-config":
            sub.add_argument("--apply", action="store_true",
                             help="run the postconf commands instead of printing them")
            sub.add_argument("--config-dir", default="/etc/postfix", metavar="DIR",
                             help="Postfix's configuration directory (default: /etc/postfix)")
        if name == "dovecot-config":
            sub.add_argument("--output", "-o", metavar="FILE",
                             help="write it there, e.g. /etc/dovecot/conf.d/99-dinomail.conf "
                             "(default: print it)")
            sub.add_argument("--dict-file", metavar="FILE",
                             help="where the dict passdb/userdb settings go (default: "
                             "dinomail-dict-auth.conf.ext next to --output)")
            sub.add_argument("--postfix-config-dir", metavar="DIR",
                             help="Postfix's configuration directory, whose queue_directory "
                             "gets Dovecot's LMTP and SASL sockets (default: Postfix's own)")
        if name == "lookupd":
            sub.add_argument("--workers", type=_workers_count, metavar="N",
                             help="worker processes sharing the listeners (default: the "
                             "LOOKUPD_WORKERS setting, else 1)")
        if name == "doctor":
            sub.add_argument("--postfix-config-dir", default="/etc/postfix", metavar="DIR",
                             help="Postfix's configuration directory (default: /etc/postfix)")
            sub.add_argument("--dovecot-config", default="/etc/dovecot/dovecot.conf",
                             metavar="FILE",
                             help="Dovecot's configuration file (default: "
                             "/etc/dovecot/dovecot.conf)")
        if name in TRANSFER_COMMANDS:
            from dinomail.transfer.commands import add_arguments

            add_arguments(name, sub)
    pw = commands.add_parser(
        "pw", help="hash or verify a mailbox password, as `doveadm pw`", add_help=False
    )
    pw.add_argument("pw_args", nargs=argparse.REMAINDER, help="the options of `doveadm pw`")
    return parser


# The name Python gives the worker thread of each aiosqlite connection.
_SQLITE_WORKER = "(_connection_worker_thread)"
_SQLITE_WORKER_WAIT = 2.0


async def _settled(command: Coroutine[Any, Any, None]) -> None:
    """Run `command`; when it fails on the database, let the SQLite drivers' threads end first.

    aiosqlite closes a connection that failed to open from its worker thread, which then hands
    the result to the event loop: were the loop closed by then, the thread would print a
    traceback after the one-line error. Waiting for those threads while the loop still runs
    leaves the line alone.
    """
    from dinomail.store.errors import as_unavailable

    try:
        await command
    except Exception as error:
        if as_unavailable(error) is not None:
            workers = [thread for thread in threading.enumerate()
                       if thread.name.endswith(_SQLITE_WORKER)]
            for thread in workers:
                await asyncio.to_thread(thread.join, _SQLITE_WORKER_WAIT)
        raise


def _command_index(argv: Sequence[str]) -> int | None:
    """Where the sub-command stands: the first word that is neither a global option nor the
    value of `--config` (so `createsuperuser --username pw` is not `pw`)."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--config":
            index += 2
        elif word.startswith("-"):
            index += 1
        else:
            return index
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = _command_index(argv)
    if split is not None and argv[split] == "pw":
        # Everything after `pw` is doveadm's syntax (`-s`, `-p` …), which argparse would take for
        # its own options: split there, and hand the rest over untouched.
        args = build_parser().parse_args([*argv[:split], "pw"])
        return _pw(argv[split + 1:], args.config)
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        _, command = COMMANDS[args.command]
        from lookupd.listen import event_loop_factory

        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(_settled(command(settings, args)))
    except SettingsError as error:
        print(f"dinomail: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as error:
        print(f"dinomail: error: {error}", file=sys.stderr)
        return error.status
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception as error:
        from dinomail.store.errors import as_unavailable

        unavailable = as_unavailable(error)
        if unavailable is None:
            raise
        print(f"dinomail: error: {unavailable.message}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
