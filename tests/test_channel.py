"""The hand-over both servers share: what each producer call promises the other side."""

from __future__ import annotations

import asyncio
import threading

import pytest
from helpers import eventually, wait_event

from llm_all_models_async.channel import STOPPED, Channel, Latch

pytestmark = pytest.mark.timeout(30)


async def test_offer_never_waits_for_room_and_keeps_order() -> None:
    """The process path bounds read-ahead with credits; its reader thread must never block."""
    channel = Channel("m", capacity=2, stall_timeout=None)
    assert [channel.offer(n) for n in range(5)] == [0, 1, 2, 3, 4]  # untaken before each
    assert channel.take(asyncio.get_running_loop()) == [0, 1, 2, 3, 4]


async def test_put_waits_for_room_until_the_consumer_comes_back() -> None:
    channel = Channel("m", capacity=2, stall_timeout=None)
    loop = asyncio.get_running_loop()
    returned = threading.Event()

    def produce() -> None:
        channel.put("a")
        channel.put("b")  # two out and unconsumed: waits here for room
        returned.set()

    producer = threading.Thread(target=produce)
    producer.start()
    await eventually(lambda: channel.producer_waiting, "the producer to wait for room")
    assert not returned.is_set()
    assert channel.take(loop) == ["a", "b"]  # still in the consumer's hand: no room yet
    assert not returned.is_set()
    waiter = channel.take(loop)  # back for more: the batch is consumed
    assert isinstance(waiter, asyncio.Future)
    await wait_event(returned, "put() to return once there is room")
    producer.join(10)
    channel.forget(waiter)


async def test_consumed_counts_what_the_consumer_is_done_with() -> None:
    """The process path returns credit from this count, so it must never run ahead."""
    channel = Channel("m", capacity=8, stall_timeout=None)
    loop = asyncio.get_running_loop()
    for n in range(3):
        channel.offer(n)
    assert channel.take(loop) == [0, 1, 2]
    assert channel.consumed == 0  # taken, not yet done with
    channel.offer(3)
    assert channel.take(loop) == [3]
    assert channel.consumed == 3
    channel.finish(None)
    with pytest.raises(StopAsyncIteration):
        channel.take(loop)
    assert channel.consumed == 4


async def test_a_stopped_channel_refuses_items_and_runs_its_stop_callbacks_once() -> None:
    channel = Channel("m", capacity=8, stall_timeout=None)
    calls: list[str] = []
    channel.on_stop(lambda: calls.append("stop"))
    channel.offer("a")
    channel.stop()
    channel.stop()
    assert calls == ["stop"]
    assert channel.offer("b") == STOPPED
    assert channel.put("c") == STOPPED
    with pytest.raises(StopAsyncIteration):
        channel.take(asyncio.get_running_loop())  # buffered items are dropped on stop


def test_latch_releases_every_waiter_once_set_and_stays_set() -> None:
    """``Channel.closed``: what the stuck-worker watchdog and exit handling wait on."""
    latch = Latch()
    assert not latch.is_set()
    assert latch.wait(0) is False and latch.wait(0.01) is False  # a timeout says "not set"
    started = threading.Barrier(4)
    woken: list[bool] = []

    def waiter() -> None:
        started.wait()
        woken.append(latch.wait())

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for thread in threads:
        thread.start()
    started.wait()
    errors: list[BaseException] = []

    def set_latch() -> None:
        try:
            latch.set()
        except BaseException as error:  # a second release of the lock would raise here
            errors.append(error)

    setters = [threading.Thread(target=set_latch) for _ in range(4)]  # several at once
    for thread in setters:
        thread.start()
    for thread in [*setters, *threads]:
        thread.join(10)
    assert errors == []
    assert woken == [True, True, True]
    assert latch.is_set() and latch.wait(0) and latch.wait()
    latch.set()  # again: nothing happens
    assert latch.is_set()
