"""The `export`, `import` (and `import-postfixadmin`) sub-commands of `dinomail`.

Bad input (a file that is not JSON, a refused row, an unknown --domain) ends with one line and
status 2; nothing is written then.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from dinomail.commands import EXIT_USAGE, fail
from dinomail.settings import Settings
from dinomail.store import Store
from dinomail.transfer import document as d
from dinomail.transfer.export import ExportError, export_document
from dinomail.transfer.importer import ON_CONFLICT, ImportRefused, Report, import_document


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "export":
        parser.add_argument("-o", "--output", metavar="FILE",
                            help="write to FILE (mode 0600) instead of standard output")
        parser.add_argument("--domain", action="append", default=[], metavar="NAME",
                            help="export only this domain (repeat for several)")
    elif name == "import-postfixadmin":
        from dinomail.transfer.postfixadmin import DEFAULT_QUOTA_MULTIPLIER

        parser.add_argument("url", metavar="URL",
                            help="PostfixAdmin's database: postgresql://... or mysql://...")
        parser.add_argument("--dry-run", action="store_true",
                            help="say what would be created, updated or refused; change nothing")
        parser.add_argument("--on-conflict", choices=ON_CONFLICT, default="fail",
                            help="when an object exists already here (default: fail)")
        parser.add_argument("--quota-multiplier", type=int, default=DEFAULT_QUOTA_MULTIPLIER,
                            metavar="BYTES", help="PostfixAdmin's $CONF['quota_multiplier'] "
                            f"(default {DEFAULT_QUOTA_MULTIPLIER})")
        parser.add_argument("--table-prefix", default="", metavar="PREFIX",
                            help="PostfixAdmin's $CONF['database_prefix'] (default none)")
        parser.add_argument("--vacation-domain", default="", metavar="DOMAIN",
                            help="PostfixAdmin's $CONF['vacation_domain']: alias destinations "
                                 "there (auto-replies) are left out")
    elif name == "import-csv":
        from dinomail.transfer.csvimport import COLUMNS, KINDS

        parser.add_argument("kind", choices=KINDS, help="what each line creates")
        parser.add_argument("file", metavar="FILE",
                            help="CSV with a first line of column names: "
                                 + "; ".join(f"{kind}: {', '.join(columns)}"
                                             for kind, columns in COLUMNS.items()))
        parser.add_argument("--dry-run", action="store_true",
                            help="check every line; create nothing")
        parser.add_argument("-o", "--output", metavar="FILE",
                            help="write the generated passwords there (mode 0600) instead of "
                                 "standard output")
    elif name == "import":
        parser.add_argument("file", metavar="FILE", help="the export document; - reads stdin")
        parser.add_argument("--dry-run", action="store_true",
                            help="say what would be created, updated or refused; change nothing")
        parser.add_argument("--on-conflict", choices=ON_CONFLICT, default="fail",
                            help="when an object exists already: leave it (skip), replace its "
                                 "values (update) or refuse the whole import (fail, the default)")


async def run_export(settings: Settings, args: argparse.Namespace) -> None:
    store = Store(settings.DATABASE_URL)
    try:
        if args.output is None:
            async for piece in export_document(store, args.domain):
                sys.stdout.write(piece)
            sys.stdout.flush()
            return
        target = Path(args.output)
        # A temporary file beside the target, renamed at the end: a failed export leaves no
        # half document, and the secrets in it are never readable by others.
        handle, temporary = tempfile.mkstemp(dir=target.parent or ".", prefix=".dinomail-export-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                async for piece in export_document(store, args.domain):
                    out.write(piece)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except ExportError as error:
        fail(str(error), EXIT_USAGE)
    except OSError as error:
        fail(f"cannot write {args.output}: {error.strerror}", EXIT_USAGE)
    finally:
        await store.close()


def _read(name: str) -> object:
    try:
        if name == "-":
            return json.load(sys.stdin)
        with open(name, encoding="utf-8") as source:
            return json.load(source)
    except OSError as error:
        fail(f"cannot read {name}: {error.strerror}", EXIT_USAGE)
    except UnicodeDecodeError:
        fail(f"{name} is not UTF-8 text", EXIT_USAGE)
    except json.JSONDecodeError as error:
        fail(f"{name} is not JSON: {error.msg} at line {error.lineno} column {error.colno}",
             EXIT_USAGE)


def _progress(what: str, done: int, total: int) -> None:
    end = "\n" if done == total else ""
    print(f"\r{what}: {done}/{total}", end=end, file=sys.stderr, flush=True)


def print_report(report: Report) -> None:
    names = {"alias_domains": "alias domains"}
    print(f"{'':14} {'created':>9} {'updated':>9} {'skipped':>9} {'refused':>9}")
    for section in d.SECTIONS:
        print(f"{names.get(section, section):14} {report.created[section]:>9} "
              f"{report.updated[section]:>9} {report.skipped[section]:>9} "
              f"{report.refused[section]:>9}")


def refusal_line(errors: list, what: str = "imported") -> str:
    more = f" (and {len(errors) - 1} more refusals: see --dry-run)" if len(errors) > 1 else ""
    return f"{errors[0]}{more}; nothing was {what}"


async def run_import(settings: Settings, args: argparse.Namespace) -> None:
    store = Store(settings.DATABASE_URL)
    try:
        report = await import_document(
            store, _read(args.file), on_conflict=args.on_conflict, dry_run=args.dry_run,
            source=args.file, progress=_progress if sys.stderr.isatty() else None,
        )
    except ImportRefused as error:
        fail(refusal_line(error.errors), EXIT_USAGE)
    finally:
        await store.close()
    if args.dry_run:
        print("Dry run: nothing was changed.")
    print_report(report)
    if report.errors:
        for problem in report.errors[:20]:
            print(f"refused: {problem}", file=sys.stderr)
        if len(report.errors) > 20:
            print(f"refused: ... and {len(report.errors) - 20} more", file=sys.stderr)
        fail(f"{len(report.errors)} refusals; an import would change nothing", EXIT_USAGE)


async def run_import_postfixadmin(settings: Settings, args: argparse.Namespace) -> None:
    from dinomail.transfer.postfixadmin import (
        PostfixAdminError,
        convert,
        describe,
        read_tables,
    )

    if args.quota_multiplier <= 0:
        fail("--quota-multiplier must be a positive number of bytes", EXIT_USAGE)
    try:
        tables = await read_tables(args.url, args.table_prefix)
    except PostfixAdminError as error:
        fail(str(error), EXIT_USAGE)
    converted = convert(tables, quota_multiplier=args.quota_multiplier,
                        vacation_domain=args.vacation_domain.strip().lower())
    for note in converted.notes:
        print(f"note: {note}", file=sys.stderr)
    problems = list(converted.refusals)
    store = Store(settings.DATABASE_URL)
    try:
        report = await import_document(
            store, converted.document, on_conflict=args.on_conflict,
            dry_run=args.dry_run or bool(problems), source="postfixadmin",
            progress=_progress if sys.stderr.isatty() else None,
        )
    except ImportRefused as error:
        problems += describe(converted, error.errors)
        report = None
    finally:
        await store.close()
    if report is not None:
        problems += describe(converted, report.errors)
        if args.dry_run:
            print("Dry run: nothing was changed.")
        if args.dry_run or not problems:
            print_report(report)
    if problems:
        for problem in problems[:20]:
            print(f"refused: {problem}", file=sys.stderr)
        if len(problems) > 20:
            print(f"refused: ... and {len(problems) - 20} more", file=sys.stderr)
        fail(f"{len(problems)} refusals; nothing was imported", EXIT_USAGE)


async def run_import_csv(settings: Settings, args: argparse.Namespace) -> None:
    import csv

    from dinomail.transfer.csvimport import CsvRefused, import_csv

    try:
        with open(args.file, encoding="utf-8", newline="") as source:
            text = source.read()
    except OSError as error:
        fail(f"cannot read {args.file}: {error.strerror}", EXIT_USAGE)
    except UnicodeDecodeError:
        fail(f"{args.file} is not UTF-8 text", EXIT_USAGE)
    # The generated passwords are shown only once: the file that takes them is opened (and
    # made private to this user) before anything is created, so it cannot fail afterwards.
    handle: int | None = None
    if args.output:
        try:
            handle = os.open(args.output, os.O_WRONLY | os.O_CREAT, 0o600)
            os.fchmod(handle, 0o600)
        except OSError as error:
            fail(f"cannot write {args.output}: {error.strerror}", EXIT_USAGE)
    store = Store(settings.DATABASE_URL)
    try:
        result = await import_csv(store, args.kind, text,
                                  scheme=settings.DINOMAIL_PASSWORD_SCHEME,
                                  min_password_length=settings.MAILBOX_PASSWORD_MIN_LENGTH,
                                  dry_run=args.dry_run)
    except CsvRefused as error:
        for problem in error.errors[:20]:
            print(f"refused: {problem}", file=sys.stderr)
        if len(error.errors) > 20:
            print(f"refused: ... and {len(error.errors) - 20} more", file=sys.stderr)
        fail(f"{len(error.errors)} wrong lines in {args.file}; nothing was created", EXIT_USAGE)
    finally:
        await store.close()
    done = "would be created (dry run: nothing was changed)" if args.dry_run else "created"
    print(f"{result.created} {args.kind} {done}.", file=sys.stderr)
    if not result.generated:
        if handle is not None:
            os.close(handle)
        return
    out: TextIO
    if handle is not None:
        os.ftruncate(handle, 0)
        out = os.fdopen(handle, "w", encoding="utf-8", newline="")
    else:
        out = sys.stdout
    try:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("email", "password"))
        writer.writerows(result.generated)
    finally:
        if out is not sys.stdout:
            out.close()
    where = f"written to {args.output}" if args.output else "above"
    print(f"{len(result.generated)} generated passwords {where}: they are shown only this once.",
          file=sys.stderr)
