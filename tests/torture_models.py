"""Sync models that torture the adapter, registered as an llm plugin by the tests that use them.

Each stands for one hostile behaviour a real plugin can show: a ``next()`` blocked in C code,
an exception raised deep inside the model, a flood of tiny chunks, a generator that never
closes, a model bound to the thread that loaded it which keeps that thread busy, and
``probe`` under other identities.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import llm
from fake_models import Probe, ThreadBound

import llm_all_models_async

PLUGIN_NAME = "llm-async-torture-models"


def register() -> None:
    """Register this module as an llm plugin once per process."""
    import sys

    module = sys.modules[__name__]
    if not llm.plugins.pm.is_registered(module):
        llm.plugins.pm.register(module, name=PLUGIN_NAME)


# --------------------------------------------------------------------------- records


@dataclass
class Record:
    """What one run of a torture model did, for the test to check."""

    threads: list[str] = field(default_factory=list)
    pulled: int = 0
    finally_runs: int = 0
    generator_exit: int = 0
    closed_on: str | None = None
    cancelled_seen: bool | None = None
    started: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


RECORDS: dict[str, Record] = {}
_ids = iter(range(1_000_000_000))


def new_record(prefix: str) -> tuple[str, Record]:
    """A fresh record; the returned key is the prompt text that selects it."""
    key = f"{prefix}-{next(_ids)}"
    RECORDS[key] = Record()
    return key, RECORDS[key]


# --------------------------------------------------------------------------- models


class ProbeB(Probe):
    """``probe`` under another model id: its own limiter, its own worker thread name."""

    model_id = "probe-b"


class ProbeDedicated(Probe):
    """``probe`` for tests that give a model a dedicated thread (which lives for the process)."""

    model_id = "probe-dedicated"


class TortureError(Exception):
    """Raised by :class:`Exploding` from :func:`_explode`, a frame the traceback must keep."""


def _explode(after: int) -> None:
    raise TortureError(f"boom after {after} chunks")


class Exploding(llm.Model):
    """Yields two chunks, then raises from a helper frame deep inside the model."""

    model_id = "torture-explode"
    can_stream = True

    def execute(self, prompt, stream, response, conversation) -> Iterator[str]:
        yield "one "
        yield "two "
        _explode(2)
        yield "never"


class Counter(llm.Model):
    """Yields ``str(i)`` for ``i`` in ``range(int(prompt))``: a flood of tiny chunks."""

    model_id = "torture-count"
    can_stream = True

    def execute(self, prompt, stream, response, conversation) -> Iterator[str]:
        for i in range(int(prompt.prompt)):
            yield str(i)


class Immortal(llm.Model):
    """Ignores every ``GeneratorExit``: it yields again each time it is asked to close."""

    model_id = "torture-immortal"
    can_stream = True
    closes = 0

    def execute(self, prompt, stream, response, conversation) -> Iterator[str]:
        while True:
            try:
                yield "again "
            except GeneratorExit:
                Immortal.closes += 1


PIPES: dict[str, tuple[int, int]] = {}


def blocking_read(record_key: str) -> int:
    """Open the pipe a :class:`BlockingRead` prompt reads from; returns its write end."""
    read_fd, write_fd = os.pipe()
    PIPES[record_key] = (read_fd, write_fd)
    return write_fd


class BlockingRead(llm.Model):
    """After its first chunk, ``next()`` blocks in ``os.read`` (C code) until the test writes."""

    model_id = "torture-blocking-read"
    can_stream = True

    def execute(self, prompt, stream, response, conversation) -> Iterator[str]:
        record = RECORDS[prompt.prompt]
        read_fd, _ = PIPES[prompt.prompt]
        record.started.set()
        try:
            record.threads.append(threading.current_thread().name)
            record.pulled += 1
            yield "first"
            os.read(read_fd, 1)  # uninterruptible from Python: only the test's write ends it
            record.cancelled_seen = llm_all_models_async.cancelled()
            record.pulled += 1
            yield "after the read"
            record.pulled += 1
            yield "never wanted"
        except GeneratorExit:
            record.generator_exit += 1
            record.closed_on = threading.current_thread().name
            raise
        finally:
            record.finally_runs += 1
            record.finished.set()


class HeldThreadBound(ThreadBound):
    """``thread-bound`` (same class state) that keeps its thread busy until ``hold`` is set.

    Thread idents are reused once a thread exits, so two streams that merely follow each other
    may look like one thread to ``ThreadBound``; holding the first stream's thread guarantees
    that a concurrent second stream really runs on another thread.
    """

    model_id = "thread-bound-held"
    hold: threading.Event | None = None
    yielded = threading.Event()

    def execute(self, prompt, stream, response, conversation) -> Iterator[Any]:
        yield from super().execute(prompt, stream, response, conversation)
        HeldThreadBound.yielded.set()
        if HeldThreadBound.hold is not None:
            HeldThreadBound.hold.wait(10)


@llm.hookimpl
def register_models(register):
    register(ProbeB())
    register(ProbeDedicated())
    register(Exploding())
    register(Counter())
    register(Immortal())
    register(BlockingRead())
    register(HeldThreadBound())
