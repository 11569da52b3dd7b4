"""wait_for_event: set, timed out, and cancelled just as the event is set."""

from __future__ import annotations

import asyncio

import pytest

from dinomail.waiting import wait_for_event


async def test_set_and_timed_out() -> None:
    event = asyncio.Event()
    assert await wait_for_event(event, 0.01) is False
    event.set()
    assert await wait_for_event(event, 10) is True


async def test_a_cancellation_as_the_event_is_set_is_not_lost() -> None:
    # The event's waiter and the cancellation are both pending when the waiting task next runs:
    # asyncio.wait_for on Python 3.11 returns normally here, and a task stopped this way runs on.
    event = asyncio.Event()
    task = asyncio.create_task(wait_for_event(event, 60))
    await asyncio.sleep(0)
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
