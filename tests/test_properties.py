"""Property tests: random streams through a twin and the bridge keep every chunk and close once.

Whatever the chunks, pauses, stops, timeouts and errors, no chunk is lost, duplicated or
reordered, the generator is closed exactly once (on its worker when forced), at most one chunk
is pulled after a stop, worker threads and slots are given back, and the caller never hangs.

A scenario is a random list of chunks and pauses (the model waits on an event the consumer
releases once it is itself blocked on that pause), an ending (normal or an exception), a
consumer stop (break + ``aclose``, drop + gc) after some chunk, a pause at which the consumer
cancels its task or lets an adapter timeout fire, and a random ``LLM_ASYNC_BUFFER`` in 1..8.
Each scenario runs in its own event loop; every await is bounded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import llm
import pytest
from fake_models import Call, Raise, Wait, script
from helpers import eventually, worker_threads
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from llm_all_models_async import (
    AdapterTimeoutError,
    FirstChunkTimeoutError,
    IdleTimeoutError,
    ResponseTimeoutError,
    limits,
    twins,
)
from llm_all_models_async.bridge import Deadlines, open_stream

pytestmark = pytest.mark.timeout(60)

BOUND = 10.0  # no single await may take longer: a hang fails the example, not the suite
# The adapter timeout set in scenarios that want one to fire. It never elapses by itself: at
# the scenario's timeout pause the test moves the event loop's clock past it (ClockLoop), so
# a slow machine cannot make it fire before the pause.
TIMEOUT = 3600.0

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class ModelError(Exception):
    """What a scenario's model raises when its ending is ``raise``."""


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Chunk:
    text: str


@dataclass(frozen=True)
class Pause:
    """The model blocks here; the consumer, once blocked on it too, applies ``action``.

    ``release``: set the model free.  ``cancel``: cancel the consumer's task.  ``timeout``: do
    nothing, so the adapter's timeout must fire.  ``interrupt`` (bridge only): cancel the
    pending read, release the model and read on.
    """

    action: str


@dataclass(frozen=True)
class Plan:
    steps: tuple[Chunk | Pause, ...]
    ending: str  # "normal" | "raise"
    stop: tuple[str, int] | None  # ("break" | "drop", after this many chunks)
    buffer: int
    timeout_kind: str  # "gap" (first-chunk or idle timeout) | "response"

    @property
    def chunks(self) -> list[str]:
        return [step.text for step in self.steps if isinstance(step, Chunk)]

    @property
    def pauses(self) -> list[Pause]:
        return [step for step in self.steps if isinstance(step, Pause)]

    def chunks_before_pauses(self) -> list[int]:
        """How many chunks the model yields before each of its pauses."""
        counts, chunks = [], 0
        for step in self.steps:
            if isinstance(step, Pause):
                counts.append(chunks)
            else:
                chunks += 1
        return counts

    def expected(self) -> tuple[str, int]:
        """What the consumer must see: how it ends and after how many chunks."""
        received = 0
        for step in self.steps:
            if isinstance(step, Chunk):
                received += 1
                if self.stop is not None and received == self.stop[1]:
                    return self.stop[0], received
            elif step.action in ("cancel", "timeout"):
                return step.action, received
        return ("error" if self.ending == "raise" else "complete"), received

    def timeout_env(self) -> dict[str, str]:
        """The adapter timeout to set: only when the scenario ends by one firing."""
        outcome, received = self.expected()
        if outcome != "timeout":
            return {}
        if self.timeout_kind == "response":
            return {"LLM_ASYNC_TIMEOUT": str(TIMEOUT)}
        if received == 0:
            return {"LLM_ASYNC_FIRST_CHUNK_TIMEOUT": str(TIMEOUT)}
        return {"LLM_ASYNC_IDLE_TIMEOUT": str(TIMEOUT)}

    def timeout_error(self) -> type[AdapterTimeoutError]:
        if self.timeout_kind == "response":
            return ResponseTimeoutError
        return FirstChunkTimeoutError if self.expected()[1] == 0 else IdleTimeoutError


@st.composite
def plans(draw: st.DrawFn, stops: Iterable[str] = ("cancel", "timeout")) -> Plan:
    # Mostly released pauses, so that later steps and consumer stops get their turn too;
    # sampling shrinks towards the first entry: a released pause.
    action = st.sampled_from(["release", "release", "release", *stops])
    raw = draw(
        st.lists(
            st.one_of(st.text(max_size=4).map(Chunk), action.map(Pause)),
            max_size=10,
        )
    )
    # Number the chunks, so that a duplicated or reordered chunk can never look right.
    steps: list[Chunk | Pause] = []
    for step in raw:
        steps.append(Chunk(f"{len(steps)}:{step.text}") if isinstance(step, Chunk) else step)
    count = sum(isinstance(step, Chunk) for step in steps)
    stop = None
    if count and draw(st.booleans()):
        stop = (draw(st.sampled_from(["break", "drop"])), draw(st.integers(1, count)))
    return Plan(
        steps=tuple(steps),
        ending=draw(st.sampled_from(["normal", "raise"])),
        stop=stop,
        buffer=draw(st.integers(1, 8)),
        timeout_kind=draw(st.sampled_from(["gap", "response"])),
    )


class ClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock the test moves forward: its timers fire on a jump, never
    because the machine was slow. The adapter arms its timeouts on this clock."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0

    def time(self) -> float:
        return super().time() + self.offset


def run_on_clock(scenario: Awaitable[None]) -> None:
    """``asyncio.run`` on a :class:`ClockLoop` (Python 3.10 has no ``loop_factory``)."""
    loop = ClockLoop()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(scenario)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def expire_timeouts(task: asyncio.Future[Any]) -> None:
    """Move the clock past every timer armed so far until ``task`` (the consumer) is done.

    Repeated, because through llm the consumer may still be on its way to the wait that
    arms the adapter's timer; each jump is far beyond TIMEOUT, so an armed timer fires.
    """
    loop = asyncio.get_running_loop()
    assert isinstance(loop, ClockLoop), "timeout scenarios run on a ClockLoop"
    deadline = time.monotonic() + BOUND
    while not task.done():
        assert time.monotonic() < deadline, "the adapter's timeout did not fire"
        loop.offset += 2 * TIMEOUT
        await asyncio.wait({task}, timeout=0.01)


class PauseControl:
    """The pauses of one scenario: the model says it arrived, the consumer releases it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, plan: Plan) -> None:
        pauses = plan.pauses
        self.loop = loop
        self.actions = [pause.action for pause in pauses]
        self.chunks_before = plan.chunks_before_pauses()
        self.reached = [asyncio.Event() for _ in pauses]
        self.releases = [threading.Event() for _ in pauses]

    def arrive(self, index: int) -> None:
        """Called by the model (on its worker thread) when it reaches pause ``index``."""
        # RuntimeError: the scenario's loop is gone, and every pause was released before.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.reached[index].set)

    def release_all(self) -> None:
        for release in self.releases:
            release.set()


@dataclass
class Result:
    received: list[Any]
    outcome: str  # complete | error | timeout | cancel | break | drop
    error: BaseException | None = None
    pulled_at_stop: int | None = None  # what the model had pulled just after the stop


def one_at_a_time(next_batch: Callable[[], Awaitable[list[Any]]]) -> Callable[[], Awaitable[Any]]:
    """An ``__anext__`` over a stream's batches, as the twin reads them."""
    pending: collections.deque[Any] = collections.deque()

    async def anext() -> Any:
        if not pending:
            pending.extend(await next_batch())
        return pending.popleft()

    return anext


async def drive(
    anext: Callable[[], Awaitable[Any]],
    control: PauseControl,
    stop_plan: tuple[str, int] | None,
    stop: Callable[[str], Awaitable[None]],
    pulled: Callable[[], int],
) -> Result:
    """Consume a stream, applying each pause's action when the consumer is blocked on it."""
    received: list[Any] = []
    next_pause = 0
    while True:
        if stop_plan is not None and len(received) == stop_plan[1]:
            await stop(stop_plan[0])
            # A dropped stream stops only once its last reference goes, after this returns.
            at_stop = None if stop_plan[0] == "drop" else pulled()
            return Result(received, stop_plan[0], pulled_at_stop=at_stop)
        task = asyncio.ensure_future(anext())
        while not task.done():
            waiting: set[asyncio.Future[Any]] = {task}
            arrival = None
            # A pause counts once the consumer has every chunk yielded before it: a model
            # that holds the GIL has its chunks batched, delivered while it stays blocked.
            pausing = next_pause < len(control.reached)
            if pausing and len(received) >= control.chunks_before[next_pause]:
                arrival = asyncio.ensure_future(control.reached[next_pause].wait())
                waiting.add(arrival)
            done, _ = await asyncio.wait(
                waiting, timeout=BOUND, return_when=asyncio.FIRST_COMPLETED
            )
            if arrival is not None and not arrival.done():
                arrival.cancel()
            if not done:
                task.cancel()
                control.release_all()
                raise AssertionError(f"the consumer hung after {len(received)} chunks")
            if task.done():
                break
            # The model is blocked at the pause and the consumer is blocked on it.
            index, next_pause = next_pause, next_pause + 1
            action = control.actions[index]
            if action == "release":
                control.releases[index].set()
            elif action in ("cancel", "interrupt"):
                task.cancel()
                await asyncio.wait({task}, timeout=BOUND)
                assert task.cancelled(), f"cancelling the read did not cancel it: {task!r}"
                if action == "interrupt":
                    control.releases[index].set()
                    break
                await stop("cancel")
                return Result(received, "cancel", pulled_at_stop=pulled())
            elif action == "timeout":  # the model stays blocked; the adapter must give up
                await expire_timeouts(task)
        if task.cancelled():  # interrupted: read on
            continue
        try:
            chunk = task.result()
        except StopAsyncIteration:
            return Result(received, "complete")
        except AdapterTimeoutError as error:
            await stop("timeout")
            return Result(received, "timeout", error, pulled_at_stop=pulled())
        except ModelError as error:
            return Result(received, "error", error)
        received.append(chunk)


@dataclass
class Record:
    """What the model did, seen from inside it."""

    pulled: int = 0
    finally_runs: int = 0
    generator_exit: int = 0
    closed_on: str | None = None
    threads: set[str] = field(default_factory=set)


def check_stream(
    plan: Plan, result: Result, record: Record, worker: str, closable: bool = True
) -> None:
    """The properties every scenario must have, whatever the adapter level."""
    event(f"outcome: {result.outcome}")
    chunks = plan.chunks
    expected_outcome, expected_count = plan.expected()
    received = [str(chunk) for chunk in result.received]
    assert (result.outcome, len(received)) == (expected_outcome, expected_count), result
    # Nothing lost, duplicated or reordered; everything when the model finished normally.
    assert received == chunks[: len(received)]
    if result.outcome in ("complete", "error"):
        assert received == chunks
    assert record.threads <= {worker}
    # Closed exactly once, on the worker thread when forced closed, never for nothing.
    if closable:
        assert record.finally_runs == 1
        assert record.generator_exit <= 1
        if record.generator_exit:
            assert record.closed_on == worker
            assert result.outcome not in ("complete", "error")
        if record.pulled < len(chunks):
            assert record.generator_exit == 1, "stopped early but never closed"
        if result.pulled_at_stop is not None and result.pulled_at_stop < len(chunks):
            assert record.generator_exit == 1
    # At most one chunk pulled after the stop; never more than the buffer ahead.
    if result.pulled_at_stop is not None:
        assert record.pulled <= result.pulled_at_stop + 1
        if result.outcome in ("cancel", "timeout"):
            assert result.pulled_at_stop == expected_count  # the model was held at the pause
    assert record.pulled <= len(received) + plan.buffer


# --------------------------------------------------------------------------- through llm


def probe_steps(plan: Plan, control: PauseControl) -> tuple[list[Any], ModelError]:
    error = ModelError("the model failed")
    steps: list[Any] = []
    index = 0
    for step in plan.steps:
        if isinstance(step, Chunk):
            steps.append(step.text)
        else:
            steps.append(Call(lambda _response, index=index: control.arrive(index)))
            steps.append(Wait(control.releases[index], timeout=BOUND))
            index += 1
    if plan.ending == "raise":
        steps.append(Raise(error))
    return steps, error


async def twin_scenario(plan: Plan) -> None:
    baseline = {t.ident for t in worker_threads()}
    control = PauseControl(asyncio.get_running_loop(), plan)
    steps, model_error = probe_steps(plan, control)
    prompt, run = script(*steps)

    async def consume() -> Result:
        response = llm.get_async_model("probe").prompt(prompt)
        iterator = response.__aiter__()

        async def stop(kind: str) -> None:
            if kind == "break":
                await asyncio.wait_for(response._generator.aclose(), BOUND)
            # drop: returning drops the response; cancel, timeout: the adapter stopped itself

        return await drive(iterator.__anext__, control, plan.stop, stop, lambda: run.pulled)

    try:
        result = await consume()  # for "drop", the response is unreachable from here on
        if result.outcome == "drop":
            gc.collect(0)  # refcounting frees it; a young cycle would go here (a full gc: ~0.1 s)
        control.release_all()
        await eventually(lambda: run.finally_runs >= 1, "the generator to finish")
        await eventually(
            lambda: not [t for t in worker_threads() if t.ident not in baseline],
            "the worker thread to exit",
        )
    finally:
        control.release_all()

    record = Record(
        pulled=run.pulled,
        finally_runs=run.finally_runs,
        generator_exit=run.generator_exit,
        closed_on=run.closed_on,
        threads=set(run.threads),
    )
    check_stream(plan, result, record, worker="llm-async:probe")
    if result.outcome == "error":
        assert result.error is model_error
    if result.outcome == "timeout":
        assert type(result.error) is plan.timeout_error()
        assert result.error.model_id == "probe"
    limiter = limits.model_limiter(twins.model_key(llm.get_model("probe")), 1)
    await eventually(lambda: limiter.in_use == 0, "the model slot to be released")
    await eventually(lambda: limits.global_threads.in_use == 0, "the thread slot to be released")


@SETTINGS
@given(plan=plans())
def test_twin_streams_keep_every_chunk_and_close_once(plan: Plan) -> None:
    event(f"stop: {plan.stop and plan.stop[0]}")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LLM_ASYNC_BUFFER", str(plan.buffer))
        for name, value in plan.timeout_env().items():
            env.setenv(name, value)
        run_on_clock(twin_scenario(plan))


# --------------------------------------------------------------------------- bridge only


def bridge_source(
    plan: Plan, control: PauseControl, items: list[object], record: Record, error: ModelError
) -> Iterator[object]:
    """A plain generator: chunks are ``items`` (checked by identity), pauses block it."""
    record.threads.add(threading.current_thread().name)
    chunk_index = pause_index = 0
    try:
        for step in plan.steps:
            if isinstance(step, Chunk):
                record.pulled += 1
                yield items[chunk_index]
                chunk_index += 1
            else:
                control.arrive(pause_index)
                if not control.releases[pause_index].wait(BOUND):
                    raise RuntimeError("pause never released")
                pause_index += 1
        if plan.ending == "raise":
            raise error
    except GeneratorExit:
        record.generator_exit += 1
        record.closed_on = threading.current_thread().name
        raise
    finally:
        record.finally_runs += 1


class CountingIterator:
    """A plain iterator (no ``close``) over ``items`` that records its pulls."""

    def __init__(self, items: list[object], record: Record) -> None:
        self._items = iter(items)
        self._record = record

    def __iter__(self) -> CountingIterator:
        return self

    def __next__(self) -> object:
        item = next(self._items)
        self._record.pulled += 1
        self._record.threads.add(threading.current_thread().name)
        return item


class Item:
    """A chunk the bridge must hand over as the very same object."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


async def bridge_scenario(plan: Plan, plain: bool) -> None:
    worker = "llm-async:bridge-property"
    baseline = {t.ident for t in worker_threads()}
    control = PauseControl(asyncio.get_running_loop(), plan)
    items = [Item(text) for text in plan.chunks]
    record = Record()
    error = ModelError("the iterator failed")
    made_on: list[str] = []
    exits: list[str] = []

    def make_iterator() -> Iterable[object]:
        made_on.append(threading.current_thread().name)
        if plain:  # an iterator with no close(): no pauses, no error, nothing to close
            return CountingIterator(items, record)
        return bridge_source(plan, control, items, record, error)

    timeouts = {
        "LLM_ASYNC_TIMEOUT": "timeout",
        "LLM_ASYNC_FIRST_CHUNK_TIMEOUT": "first_chunk_timeout",
        "LLM_ASYNC_IDLE_TIMEOUT": "idle_timeout",
    }
    deadlines = Deadlines(
        **{timeouts[name]: float(value) for name, value in plan.timeout_env().items()}
    )

    def submit(job: Callable[[], None], stop: Callable[[], None]) -> None:
        threading.Thread(target=job, name=worker, daemon=True).start()

    stream = open_stream(
        "bridge-property",
        make_iterator,
        capacity=plan.buffer,
        deadlines=deadlines,
        started_at=time.monotonic(),
        submit=submit,
        on_exit=lambda: exits.append(threading.current_thread().name),
    )
    channel = stream.channel

    async def stop(kind: str) -> None:
        nonlocal stream
        if kind == "drop":
            del stream  # the handle's finaliser must stop the stream
            gc.collect(0)
        else:
            stream.stop()

    try:
        result = await drive(
            one_at_a_time(stream.next_batch), control, plan.stop, stop, lambda: record.pulled
        )
        control.release_all()
        await eventually(lambda: bool(exits), "the worker to finish")
        await eventually(
            lambda: not [t for t in worker_threads() if t.ident not in baseline],
            "the worker thread to exit",
        )
    finally:
        control.release_all()

    check_stream(plan, result, record, worker=worker, closable=not plain)
    assert [id(item) for item in result.received] == [id(item) for item in items][
        : len(result.received)
    ], "the bridge handed over a copy instead of the model's object"
    assert made_on == [worker], "the iterator was not created on its worker thread"
    assert exits == [worker], "on_exit did not run exactly once, on the worker"
    assert channel.closed.is_set()
    assert channel.high_water <= plan.buffer
    assert channel.pulled_after_stop <= 1
    if result.outcome == "error":
        assert result.error is error
    if result.outcome == "timeout":
        assert type(result.error) is plan.timeout_error()


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=plans(stops=("interrupt", "cancel", "timeout")), data=st.data())
def test_bridge_streams_keep_every_item_and_close_once(plan: Plan, data: st.DataObject) -> None:
    plain = not plan.pauses and plan.ending == "normal" and data.draw(st.booleans())
    run_on_clock(bridge_scenario(plan, plain))
