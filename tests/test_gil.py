"""The worker batches chunks that come close together, lets the event loop have the GIL only
while the model starves it, and then only when the loop has work due, until that work is done;
its batches still reach the consumer."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import wait_until

from llm_all_models_async import gil
from llm_all_models_async.bridge import open_stream
from llm_all_models_async.channel import Channel
from llm_all_models_async.deadlines import Deadlines
from llm_all_models_async.errors import IdleTimeoutError

# -- the batching policy, on a loop that is not running --------------------------------------


class _Producer:
    """Records what the policy asks of its channel."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.woken: asyncio.Future[None] | None = None

    def start_batching(self, every: float) -> None:
        self.calls.append(("start", every))

    def stop_batching(self) -> None:
        self.calls.append(("stop",))


@pytest.fixture
def idle_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def hand_overs(monkeypatch: pytest.MonkeyPatch) -> list[asyncio.AbstractEventLoop]:
    seen: list[asyncio.AbstractEventLoop] = []
    monkeypatch.setattr(gil, "hand_over", seen.append)
    return seen


def _resolve(future: asyncio.Future[None]) -> None:
    """How a producer wakes its consumer: a callback whose argument is the waiter."""
    future.set_result(None)


def _run_due_work(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def test_chunks_closer_than_the_batch_interval_are_batched_until_the_model_pauses(
    idle_loop, hand_overs, clock
):
    producer = _Producer()
    policy = gil.BatchingHandOver(producer, idle_loop)
    clock.now = 100.0
    policy.after_put(untaken=0)  # the first chunk is handed over at once
    assert producer.calls == []
    for _ in range(5):
        clock.now += gil.BATCH_EVERY / 10
        policy.after_put(untaken=0)  # taken or not: what counts is how close they come
    assert producer.calls == [("start", gil.BATCH_EVERY)]
    clock.now += gil.BATCH_EVERY * 3  # after a pause a chunk must not wait for a poll
    policy.after_put(untaken=0)
    assert producer.calls == [("start", gil.BATCH_EVERY), ("stop",)]
    assert hand_overs == []


def test_a_loop_that_keeps_up_is_never_kept_waiting(idle_loop, hand_overs, clock):
    """A model that releases the GIL: its loop runs timers a little late on its own and
    callbacks before the next chunk; the worker must not wait for it."""
    producer = _Producer()
    policy = gil.BatchingHandOver(producer, idle_loop)
    for _ in range(5):
        idle_loop.call_at(idle_loop.time() - gil.STARVED_AFTER / 2, lambda: None)
        idle_loop.call_soon(lambda: None)
        policy.after_put(untaken=0)
        _run_due_work(idle_loop)  # the loop ran both before the next chunk
    assert hand_overs == []


def test_a_timer_overdue_for_a_while_starts_hand_overs_for_a_hold(idle_loop, hand_overs, clock):
    producer = _Producer()
    policy = gil.BatchingHandOver(producer, idle_loop)
    idle_loop.call_at(idle_loop.time() - 2 * gil.STARVED_AFTER, lambda: None)
    policy.after_put(untaken=1)
    assert hand_overs == [idle_loop]
    _run_due_work(idle_loop)  # what the hand-over let the loop do
    clock.now += gil.STARVED_HOLD / 2
    policy.after_put(untaken=0)
    assert hand_overs == [idle_loop]  # nothing due: nothing to hand over for
    idle_loop.call_at(idle_loop.time(), lambda: None)  # just due: within the hold, enough
    policy.after_put(untaken=0)
    assert hand_overs == [idle_loop, idle_loop]
    _run_due_work(idle_loop)
    clock.now += gil.STARVED_HOLD
    idle_loop.call_at(idle_loop.time(), lambda: None)
    policy.after_put(untaken=0)
    assert hand_overs == [idle_loop, idle_loop]  # the hold is over; just due is no evidence


def test_a_callback_still_ready_one_chunk_later_means_the_loop_is_starved(
    idle_loop, hand_overs, clock
):
    producer = _Producer()
    policy = gil.BatchingHandOver(producer, idle_loop)
    idle_loop.call_soon(lambda: None)
    policy.after_put(untaken=1)
    assert hand_overs == []  # the loop may simply not have got to it yet
    policy.after_put(untaken=1)
    assert hand_overs == [idle_loop]


def test_waking_its_own_consumer_is_no_reason_to_hand_over(idle_loop, hand_overs, clock):
    """A reply of a few fast chunks woke its consumer for the first; the consumer has not run
    yet when the next ones are ready.  Waiting for the loop then would only delay the reply."""
    producer = _Producer()
    producer.woken = idle_loop.create_future()
    idle_loop.call_soon(_resolve, producer.woken)  # the wake-up, not yet run
    policy = gil.BatchingHandOver(producer, idle_loop)
    policy.after_put(untaken=1)
    policy.after_put(untaken=2)
    assert hand_overs == []
    idle_loop.call_soon(lambda: None)  # anything else ready is work due
    policy.after_put(untaken=3)
    assert hand_overs == [idle_loop]


def test_a_loop_it_cannot_read_gets_the_sleeping_policy():
    class ForeignLoop(asyncio.AbstractEventLoop):
        """Like uvloop's: not one of asyncio's own loops."""

    assert isinstance(gil.policy_for(_Producer(), ForeignLoop()), gil.SleepYielder)
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(gil.policy_for(_Producer(), loop), gil.BatchingHandOver)
    finally:
        loop.close()


# -- the hand-over, to a running loop ---------------------------------------------------------


@pytest.fixture
def running_loop(monkeypatch: pytest.MonkeyPatch) -> Iterator[asyncio.AbstractEventLoop]:
    # A bound, not a timing: only a hand-over that never ends reaches it.
    monkeypatch.setattr(gil, "HAND_OVER_WAIT", 30.0)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-loop", daemon=True)
    thread.start()
    wait_until(loop.is_running, what="the loop to run")
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_a_hand_over_returns_only_once_the_loop_has_nothing_ready(running_loop):
    ran: list[int] = []

    def chain(step: int) -> None:  # work that keeps scheduling more work
        ran.append(step)
        if step < 50:
            running_loop.call_soon(chain, step + 1)

    running_loop.call_soon_threadsafe(chain, 1)
    gil.hand_over(running_loop)
    assert ran == list(range(1, 51))


def test_two_hand_overs_at_once_do_not_keep_each_other_waiting(running_loop):
    unblock = threading.Event()
    running_loop.call_soon_threadsafe(unblock.wait, 10)  # the loop is busy while both arrive
    finished: list[str] = []

    def worker(name: str) -> None:
        gil.hand_over(running_loop)
        finished.append(name)

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    ready = running_loop._ready  # type: ignore[attr-defined]

    def queued() -> int:
        return sum(handle._callback is gil._release_when_idle for handle in list(ready))

    wait_until(lambda: queued() == 2, what="both hand-overs to be queued together")
    unblock.set()
    for thread in threads:
        thread.join(10)
    assert sorted(finished) == ["a", "b"]


def test_a_hand_over_to_a_loop_that_is_not_running_returns_at_once(idle_loop):
    gil.hand_over(idle_loop)
    assert not idle_loop._ready  # type: ignore[attr-defined]


# -- batching, end to end through the bridge ----------------------------------------------------


def _open(model: Any, deadlines: Deadlines | None = None) -> Any:
    return open_stream(
        "gil-test",
        model,
        capacity=256,
        deadlines=deadlines or Deadlines(),
        started_at=time.monotonic(),
        submit=lambda job, stop: threading.Thread(
            target=job, name="llm-async:gil", daemon=True
        ).start(),
        on_exit=lambda: None,
    )


class _FirstChunk:
    """A first chunk taken in lockstep: the worker watches the consumer's loop once the
    consumer has asked for a chunk, and a model faster than the consumer's first step could
    be over before that."""

    def __init__(self) -> None:
        self._taken = threading.Event()

    def made(self) -> Iterator[str]:
        yield "first"
        assert self._taken.wait(10), "the consumer never took the first chunk"

    async def take(self, stream: Any) -> list[str]:
        assert await stream.next_batch() == ["first"]
        self._taken.set()
        return []


@pytest.fixture
def batching_started(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    seen: list[float] = []
    start = Channel.start_batching

    def record(self: Channel, every: float) -> None:
        seen.append(every)
        start(self, every)

    monkeypatch.setattr(Channel, "start_batching", record)
    return seen


async def test_chunks_a_model_made_before_it_blocks_reach_the_consumer_while_it_is_blocked(
    batching_started,
):
    """Chunks made back to back in pure Python are batched; when the model then blocks (on
    a socket, in a C call), the consumer still gets them, within a poll interval."""
    count = 200
    seen_all = threading.Event()
    first = _FirstChunk()

    def model() -> Iterator[str]:
        yield from first.made()
        for index in range(count):
            yield str(index)
        assert seen_all.wait(10), "the consumer never got the chunks made before the block"
        yield "end"

    stream = _open(model)
    received: list[str] = await first.take(stream)
    while len(received) < count:
        received += await stream.next_batch()
    seen_all.set()
    while received[-1] != "end":
        received += await stream.next_batch()
    assert received == [str(index) for index in range(count)] + ["end"]
    assert batching_started  # the pure-Python run was batched
    stream.stop()
    wait_until(stream.channel.closed.is_set, what="the generator to close")


async def test_the_idle_timeout_still_fires_while_the_consumer_polls_a_batching_model(
    batching_started,
):
    release = threading.Event()
    first = _FirstChunk()

    def model() -> Iterator[str]:
        yield from first.made()
        for index in range(200):
            yield str(index)
        release.wait(10)  # blocked: no chunk for longer than the idle timeout
        yield "late"

    stream = _open(model, Deadlines(idle_timeout=0.2))
    received: list[str] = await first.take(stream)
    with pytest.raises(IdleTimeoutError):
        while True:
            received += await stream.next_batch()
    assert received == [str(index) for index in range(200)]
    assert batching_started
    stream.stop()
    release.set()
    wait_until(stream.channel.closed.is_set, what="the generator to close")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps = 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds == 0
        self.sleeps += 1


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(gil.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(gil.time, "sleep", fake.sleep)
    return fake


def test_on_a_loop_it_cannot_watch_a_starving_model_yields_once_per_interval(clock):
    yielder = gil.SleepYielder()
    for _ in range(10):  # 1.5 ms per token; the consumer never got to take the last item
        clock.now += 0.0015
        yielder.after_put(untaken=1)
    assert clock.sleeps == 10
    for _ in range(40):  # fast tokens: 40 in two intervals, one hand-over per interval
        clock.now += gil.YIELD_GIL_EVERY / 20
        yielder.after_put(untaken=1)
    assert 1 <= clock.sleeps - 10 <= 2


def test_on_a_loop_it_cannot_watch_a_model_the_loop_keeps_up_with_never_yields(clock):
    yielder = gil.SleepYielder()
    for _ in range(100):  # the consumer took every item while the model computed
        clock.now += 0.0015
        yielder.after_put(untaken=0)
    assert clock.sleeps == 0


def test_on_a_loop_it_cannot_watch_a_model_that_starts_releasing_the_gil_is_relearnt(clock):
    yielder = gil.SleepYielder()
    for _ in range(gil.REPROBE_EVERY * 2):  # starving: hand-overs, one skipped now and then
        clock.now += 0.0015
        yielder.after_put(untaken=1)
    before = clock.sleeps
    assert 0 < before < gil.REPROBE_EVERY * 2
    for _ in range(gil.REPROBE_EVERY * 2):  # now the loop keeps up on its own
        clock.now += 0.0015
        yielder.after_put(untaken=0)
    assert clock.sleeps - before <= gil.REPROBE_EVERY + 1
    for _ in range(100):
        clock.now += 0.0015
        yielder.after_put(untaken=0)
    assert clock.sleeps - before <= gil.REPROBE_EVERY + 1  # relearnt: no more hand-overs
