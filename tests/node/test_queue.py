"""KeyedQueue on a FakeClock: dedup, one worker per key, per-key capped backoff."""

from __future__ import annotations

import asyncio

import pytest

from vnode.clock import FakeClock
from vnode.node.queue import KeyedQueue, ShutDown


async def drain(q: KeyedQueue) -> list[object]:
    """Every key ready right now, each marked done."""
    out = []
    while len(q):
        key = await q.get()
        out.append(key)
        q.done(key)
    return out


async def test_a_key_waits_once_however_often_added() -> None:
    q = KeyedQueue(FakeClock())
    for key in ["a", "b", "a", "a", "c", "b"]:
        q.add(key)
    assert await drain(q) == ["a", "b", "c"]


async def test_a_key_added_while_processing_comes_back_after_done() -> None:
    q = KeyedQueue(FakeClock())
    q.add("a")
    key = await q.get()
    q.add("a")
    q.add("a")
    assert len(q) == 0  # not handed to a second worker while the first holds it
    q.done(key)
    assert await drain(q) == ["a"]
    assert len(q) == 0


async def test_two_workers_never_hold_the_same_key() -> None:
    q = KeyedQueue(FakeClock())
    holding: set[str] = set()
    seen: list[str] = []
    clash = False

    async def worker() -> None:
        nonlocal clash
        while True:
            try:
                key = str(await q.get())
            except ShutDown:
                return
            clash = clash or key in holding
            holding.add(key)
            seen.append(key)
            await asyncio.sleep(0)
            if len(seen) < 30:
                q.add(key)  # re-added while being processed
            holding.discard(key)
            q.done(key)

    q.add("x")
    q.add("y")
    workers = [asyncio.create_task(worker()) for _ in range(4)]
    for _ in range(200):
        await asyncio.sleep(0)
        if len(seen) >= 30 and not len(q) and not holding:
            break
    q.shutdown()
    await asyncio.gather(*workers)
    assert not clash
    assert len(seen) >= 30
    assert set(seen) == {"x", "y"}


async def test_rate_limited_retries_double_up_to_the_cap_and_forget_resets() -> None:
    clock = FakeClock()
    q = KeyedQueue(clock, base=0.5, cap=4.0)
    delays = [q.add_rate_limited("k")]

    for _ in range(6):
        await clock.advance(delays[-1] - 0.01)
        assert len(q) == 0, "handed out before its backoff passed"
        await clock.advance(0.01)
        key = await q.get()
        q.done(key)
        delays.append(q.add_rate_limited(key))
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert q.num_requeues("k") == 7
    q.forget("k")
    assert q.add_rate_limited("k") == 0.5


async def test_each_key_has_its_own_backoff() -> None:
    clock = FakeClock()
    q = KeyedQueue(clock, base=1.0, cap=100.0)
    for _ in range(4):
        q.add_rate_limited("slow")
        await clock.advance(100)
        assert await drain(q) == ["slow"]
    assert q.add_rate_limited("slow") == 16.0
    assert q.add_rate_limited("fast") == 1.0
    await clock.advance(1.0)
    assert await drain(q) == ["fast"]
    await clock.advance(15.0)
    assert await drain(q) == ["slow"]


async def test_add_after_keeps_the_earliest_timer() -> None:
    clock = FakeClock()
    q = KeyedQueue(clock)
    q.add_after("k", 10)
    q.add_after("k", 2)
    q.add_after("k", 5)
    await clock.advance(2)
    assert await drain(q) == ["k"]
    await clock.advance(10)
    assert await drain(q) == []


async def test_retry_after_longer_than_backoff_is_honoured() -> None:
    clock = FakeClock()
    q = KeyedQueue(clock, base=0.5, cap=60)
    assert q.add_rate_limited("k", at_least=7.0) == 7.0
    await clock.advance(6.9)
    assert len(q) == 0
    await clock.advance(0.1)
    assert len(q) == 1


async def test_discard_cancels_the_pending_retry() -> None:
    clock = FakeClock()
    q = KeyedQueue(clock)
    q.add_rate_limited("k")
    q.discard("k")
    await clock.advance(300)
    assert await drain(q) == []
    assert q.num_requeues("k") == 0


async def test_shutdown_wakes_waiting_workers_and_refuses_new_keys() -> None:
    q = KeyedQueue(FakeClock())
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add_after("later", 5)
    q.shutdown()
    with pytest.raises(ShutDown):
        await waiter
    q.add("k")
    with pytest.raises(ShutDown):
        await q.get()


async def test_a_cancelled_getter_does_not_swallow_a_key() -> None:
    q = KeyedQueue(FakeClock())
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("k")  # wakes the first getter...
    first.cancel()  # ...which is cancelled before it runs
    assert await asyncio.wait_for(second, 5) == "k"
    with pytest.raises(asyncio.CancelledError):
        await first
