"""Batched writes isolating the rows a database refuses (`lookupd.batchwrite`); the writers
using it are tested against SQLite and PostgreSQL in test_policy_bounds.py and
test_quota_bounds.py."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import exc

from lookupd.batchwrite import is_outage, write_rows


class Table:
    """Stores ints; refuses negative ones as a database refuses a value out of range, and
    fails like an unreachable database once `down`."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.down = False
        self.writes = 0

    async def write(self, rows: Sequence[int]) -> int:
        self.writes += 1
        if self.down:
            raise ConnectionRefusedError("connection refused")
        if any(row < 0 for row in rows):
            raise ValueError("out of range")
        self.rows += rows
        return len(rows)

    async def ping(self) -> None:
        if self.down:
            raise ConnectionRefusedError("connection refused")


async def run(table: Table, rows: list[int]) -> tuple[list[int], list[int]]:
    written: list[int] = []
    refused: list[int] = []
    await write_rows(rows, table.write, table.ping,
                     written=lambda done, count: written.extend(done),
                     refused=lambda row, error: refused.append(row))
    return written, refused


async def test_one_statement_when_every_row_is_fine() -> None:
    table = Table()
    assert await run(table, [1, 2, 3]) == ([1, 2, 3], [])
    assert table.writes == 1


async def test_a_refused_row_is_left_out_and_the_others_stored() -> None:
    table = Table()
    assert await run(table, [1, -2, 3, -4]) == ([1, 3], [-2, -4])
    assert table.rows == [1, 3]


async def test_an_outage_drops_nothing() -> None:
    table = Table()
    table.down = True
    with pytest.raises(ConnectionRefusedError):
        await run(table, [1, -2, 3])
    assert table.writes == 1  # not tried row by row


async def test_an_outage_during_the_rows_keeps_the_rest() -> None:
    table = Table()
    written: list[int] = []
    refused: list[int] = []

    def done(rows: Sequence[int], count: int) -> None:
        written.extend(rows)
        table.down = True  # the database goes away after the first row

    with pytest.raises(ConnectionRefusedError):
        await write_rows([1, -2, 3], table.write, table.ping, written=done,
                         refused=lambda row, error: refused.append(row))
    assert (written, refused) == ([1], [])  # -2 and 3 stay the caller's, to retry


def test_what_counts_as_an_outage() -> None:
    assert is_outage(OSError("refused"))
    assert is_outage(TimeoutError())
    assert is_outage(exc.OperationalError("SELECT 1", {}, Exception("database is locked")))
    assert not is_outage(OverflowError("Python int too large to convert to SQLite INTEGER"))
    assert not is_outage(exc.DataError("INSERT", {}, Exception("value too long")))

    class Shutdown(Exception):
        sqlstate = "57P01"

    assert is_outage(exc.DBAPIError("INSERT", {}, Shutdown("terminating connection")))
