"""A replica's event stream gives a cancellation precedence over an event that arrives with it."""

from __future__ import annotations

import asyncio
import time

import pytest

from aimass.engine.local.replica import LocalReplica


@pytest.mark.parametrize("deadline_s", [None, 60.0])
async def test_a_cancel_that_arrives_with_the_next_event_is_not_lost(deadline_s):
    """The client leaves just as the replica's next event lands in the inbox: the wait must
    still end cancelled, or the sequence keeps decoding for a client that is gone (CI saw
    this with ``asyncio.wait_for``, which returns the item and drops the cancellation)."""
    inbox: asyncio.Queue = asyncio.Queue()
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    waiter = asyncio.ensure_future(LocalReplica._next(None, inbox, deadline))
    await asyncio.sleep(0)  # it waits on the inbox now
    inbox.put_nowait("event")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
