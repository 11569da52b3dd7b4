"""Waiting for an event with a time limit, without losing a cancellation."""

from __future__ import annotations

import asyncio


async def wait_for_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` seconds have passed; whether it is set.

    Not `asyncio.wait_for(event.wait(), timeout)`: on Python 3.11 it swallows a cancellation
    that arrives just as the event is set, so a background task being stopped carries on as if
    nothing happened and whoever stops it waits forever. `asyncio.timeout` keeps it.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass
    return event.is_set()
