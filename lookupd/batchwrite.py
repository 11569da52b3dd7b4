"""Batched writes where one row the database refuses never blocks the others.

The daemon writes what it gathered in memory (sending counts, quota usage) in one statement per
flush. If one row of it cannot be stored (a value out of a column's range, a name too long),
the whole statement fails, and retrying the same batch at every flush fails forever: every
other row waits behind the bad one. So, when a batch fails and the database still answers,
the rows are written again one at a time, each in its own transaction: a row the database
refuses is handed to `refused` (the caller logs and drops it), the others are stored.

When the database does not answer (an outage, a lock held too long), nothing is dropped: the
error propagates, and the caller keeps the rows not yet handed to `written` or `refused` for
its next flush. Telling the two apart: connection-level errors are outages by their type, and
after any other error the database is asked a trivial query (`reachable`); if that fails too,
it is an outage.

Values are checked before they are batched (`INT64_MAX`): this is the net under that check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from dinomail.errortext import first_line
from dinomail.store.errors import as_unavailable

Row = TypeVar("Row")
Result = TypeVar("Result")

# BIGINT's range, the columns counts and usage are stored in.
INT64_MAX = 2**63 - 1


def one_line(error: BaseException) -> str:
    """An error for a log line: its type and the first line of its text (SQL follows)."""
    return f"{type(error).__name__}: {first_line(error)}"


def is_outage(error: BaseException) -> bool:
    """The database could not be reached or is busy: the rows are not at fault."""
    return as_unavailable(error) is not None


async def write_rows(
    rows: Sequence[Row],
    write: Callable[[Sequence[Row]], Awaitable[Result]],
    reachable: Callable[[], Awaitable[object]],
    *,
    written: Callable[[Sequence[Row], Result], None],
    refused: Callable[[Row, Exception], None],
) -> None:
    """`write(rows)` (one transaction), or row by row when the database refuses the batch.

    Raises on an outage; then the rows passed neither to `written` nor to `refused` are not
    stored.
    """
    try:
        result = await write(rows)
    except Exception as error:
        if is_outage(error) or len(rows) == 0:
            raise
        await reachable()
    else:
        written(rows, result)
        return
    for row in rows:
        try:
            result = await write([row])
        except Exception as error:
            if is_outage(error):
                raise
            await reachable()
            refused(row, error)
        else:
            written([row], result)
