"""Instrumentation of the sync model's ``execute``: records each run and can pause, pad or fail it.

The wrapper is installed on the sync model's class for the whole test class, so every path
that calls ``execute`` (llm's sync response, any adapter, any twin instance) goes through
it.  Pauses wait on ``threading.Event`` objects the tests set, always with a bound, so a
broken adapter fails a clause instead of hanging the run.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import adapter

ARG_NAMES = ("prompt", "stream", "response", "conversation", "key")
WAIT_BOUND = 15.0
PAD_CHUNK = "<pad{}> "
# Set by a clause in the caller's context; execute() records what it sees (worker.contextvars).
CALLER_VALUE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "llm_conformance_caller_value", default=None
)


@dataclass
class Plan:
    """How the next executes behave; the default is a transparent pass-through."""

    hold_first: threading.Event | None = None  # wait before pulling the first chunk
    gate_after: int | None = None  # after yielding this many chunks, wait for ``gate``
    gate: threading.Event = field(default_factory=threading.Event)
    pad_to: int = 0  # append synthetic chunks until this many were yielded
    raise_after: int | None = None  # raise ``error()`` after this many chunks
    error: Callable[[], BaseException] | None = None
    stop_after: int | None = None  # end the stream early (closing the real generator)
    synthetic: tuple[Any, ...] | None = None  # do not call the real execute; yield these
    # In a worker process only (conformance.probe): after the first chunk, change process-wide
    # state (fds 1/2, sys.stdout, logging, warnings, environ, cwd, SIGINT) until the end.
    meddle: bool = False
    wait_bound: float = WAIT_BOUND

    def is_passthrough(self) -> bool:
        """True when executes run untouched (only recorded)."""
        return (
            self.hold_first is None
            and self.gate_after is None
            and self.pad_to == 0
            and self.raise_after is None
            and self.stop_after is None
            and self.synthetic is None
        )

    def release(self) -> None:
        self.gate.set()
        if self.hold_first is not None:
            self.hold_first.set()


@dataclass
class Chunk:
    value: Any
    thread: str
    at: float


@dataclass
class Record:
    """One call of ``execute``: arguments, chunks, where and how it ended."""

    index: int
    thread: str
    thread_ident: int
    args: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    chunks: list[Chunk] = field(default_factory=list)
    stop_mark: int | None = None
    ended_by: str | None = None  # exhausted | close | error | truncated
    end_thread: str | None = None
    ended: float | None = None
    error: BaseException | None = None
    real_close_error: BaseException | None = None
    gate_reached: threading.Event = field(default_factory=threading.Event)
    gate_timed_out: bool = False
    cancelled_after_gate: bool | None = None
    cancelled_at_end: bool | None = None
    padded: int = 0
    caller_value: str | None = None  # CALLER_VALUE as execute() saw it
    at_yield: bool = False  # suspended at a yield: handed a chunk out, not resumed yet
    done: threading.Event = field(default_factory=threading.Event)
    pid: int | None = None  # the worker process that ran it (process isolation), else None
    meddled: list[str] = field(default_factory=list)  # what a meddling worker changed

    def mark_stop(self) -> None:
        """The test stopped consuming: count what is pulled from now on."""
        if self.stop_mark is None:
            self.stop_mark = len(self.chunks)

    @property
    def values(self) -> list[Any]:
        return [chunk.value for chunk in self.chunks]

    @property
    def pulled_after_stop(self) -> int:
        return 0 if self.stop_mark is None else len(self.chunks) - self.stop_mark

    def describe_end(self) -> str:
        where = f"on thread {self.end_thread!r}" if self.end_thread else ""
        how = self.ended_by or "nothing yet"
        if how == "error" and self.error is not None:
            how = f"error ({type(self.error).__name__}: {self.error})"
        return f"ended by {how} {where}".strip()


class Instrument:
    """Wraps ``execute`` of one model class; ``plan`` changes behaviour for new executes."""

    def __init__(self, model_class: type) -> None:
        self.model_class = model_class
        self._had_own = "execute" in vars(model_class)
        self._saved = vars(model_class).get("execute")
        self._original = model_class.execute
        self.records: list[Record] = []
        self.plan = Plan()
        self.lock = threading.Condition()
        self.active = 0
        self.max_active = 0
        self.installed = False

    # -- installation ----------------------------------------------------------------------

    def install(self) -> None:
        instrument = self

        def execute(model_self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            bound = dict(zip(ARG_NAMES, args, strict=False))
            bound.update(kwargs)
            return instrument._run(model_self, args, kwargs, bound)

        execute.__wrapped__ = self._original  # type: ignore[attr-defined]
        execute.__name__ = "execute"
        execute.__qualname__ = f"{self.model_class.__qualname__}.execute"
        execute.__doc__ = getattr(self._original, "__doc__", None)
        self.model_class.execute = execute
        self.installed = True

    def uninstall(self) -> None:
        if not self.installed:
            return
        if self._had_own:
            self.model_class.execute = self._saved
        else:
            delattr(self.model_class, "execute")
        self.installed = False

    # -- test-side helpers -----------------------------------------------------------------

    def use(self, plan: Plan | None = None) -> Plan:
        """Make ``plan`` the behaviour of executes started from now on; forget old records."""
        with self.lock:
            self.plan = plan or Plan()
            self.records = []
            self.max_active = self.active
        return self.plan

    def reset(self) -> None:
        self.plan.release()
        self.use(Plan())

    def wait_for_records(self, count: int, timeout: float = WAIT_BOUND) -> list[Record]:
        with self.lock:
            self.lock.wait_for(lambda: len(self.records) >= count, timeout)
            return list(self.records)

    def wait_for_active(self, count: int, timeout: float) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: self.active >= count, timeout)

    def wait_for_idle(self, timeout: float) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: self.active == 0, timeout)

    # -- the wrapper -----------------------------------------------------------------------

    def _run(
        self, model_self: Any, args: tuple[Any, ...], kwargs: dict[str, Any], bound: dict[str, Any]
    ) -> Iterator[Any]:
        thread = threading.current_thread()
        with self.lock:
            plan = self.plan
            record = Record(len(self.records), thread.name, thread.ident or 0, bound)
            record.caller_value = CALLER_VALUE.get()
            self.records.append(record)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.lock.notify_all()
        source: Any = None
        try:
            if plan.hold_first is not None and not plan.hold_first.wait(plan.wait_bound):
                record.gate_timed_out = True
            if plan.synthetic is not None:
                source = iter(plan.synthetic)
            else:
                source = iter(self._original(model_self, *args, **kwargs))
            exhausted = False
            while True:
                count = len(record.chunks)
                if plan.raise_after is not None and count == plan.raise_after and plan.error:
                    raise plan.error()
                if plan.stop_after is not None and count >= plan.stop_after:
                    record.ended_by = "truncated"
                    break
                if not exhausted:
                    try:
                        value = next(source)
                    except StopIteration:
                        exhausted = True
                if exhausted:
                    if count >= plan.pad_to:
                        break
                    value = PAD_CHUNK.format(count)
                    record.padded += 1
                record.chunks.append(
                    Chunk(value, threading.current_thread().name, time.monotonic())
                )
                record.at_yield = True
                try:
                    yield value
                finally:
                    record.at_yield = False
                if plan.gate_after is not None and len(record.chunks) == plan.gate_after:
                    record.gate_reached.set()
                    if not plan.gate.wait(plan.wait_bound):
                        record.gate_timed_out = True
                    record.cancelled_after_gate = adapter.cancelled()
            record.ended_by = record.ended_by or "exhausted"
        except GeneratorExit:
            record.ended_by = "close"
            raise
        except BaseException as error:
            record.ended_by = "error"
            record.error = error
            raise
        finally:
            record.end_thread = threading.current_thread().name
            record.cancelled_at_end = adapter.cancelled()
            close = getattr(source, "close", None)
            if close is not None:
                try:
                    close()
                except BaseException as error:  # recorded; the clause reports it
                    record.real_close_error = error
            with self.lock:
                self.active -= 1
                self.lock.notify_all()
            record.ended = time.monotonic()
            record.done.set()
