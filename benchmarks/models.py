"""In-process benchmark models: a sync model and its native async equal, both instrumented.

The two share one ``Options`` class and produce the same chunks, so any difference between
them is the cost of the path that drives them. A :class:`Probe`, named by the ``probe`` option,
records what the sync generator did (chunks produced, when its ``finally`` ran, on which
thread) so cancellation and backpressure can be measured from the model's side.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import threading
import time
from collections.abc import AsyncIterator, Iterator

import llm
from pydantic import Field

SYNC_ID = "bench-sync"
NATIVE_ID = "bench-native"


@dataclasses.dataclass
class Probe:
    """What one execution did, written by the model and read by the benchmark."""

    produced: int = 0
    started_at: float | None = None
    closed_at: float | None = None
    how: str = ""
    thread: str = ""
    closed: threading.Event = dataclasses.field(default_factory=threading.Event)
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)


PROBES: dict[str, Probe] = {}
_probe_ids = itertools.count()


def new_probe() -> tuple[str, Probe]:
    """Register a fresh probe and return its id (pass it as the ``probe`` option)."""
    probe_id = f"p{next(_probe_ids)}"
    PROBES[probe_id] = probe = Probe()
    return probe_id, probe


def drop_probe(probe_id: str) -> None:
    """Forget a probe once its figures are read."""
    PROBES.pop(probe_id, None)


class BenchOptions(llm.Options):
    """What the benchmark model should do; shared by the sync and the native model."""

    chunks: int = Field(default=100, ge=0, description="chunks to yield")
    interval: float = Field(default=0.0, ge=0, description="seconds to sleep before each chunk")
    work: int = Field(default=0, ge=0, description="pure-Python loop steps before each chunk")
    size: int = Field(default=1, ge=1, description="characters per chunk")
    hash_kib: int = Field(
        default=0, ge=0, description="KiB to sha256 before each chunk (releases the GIL)"
    )
    probe: str | None = Field(default=None, description="id of a Probe to record into")
    outside_log: str | None = Field(
        default=None,
        description="file to append, once the reply is complete, the mean µs per token the "
        "model's thread spent outside its work (see _plain); works in any process",
    )


def burn(steps: int) -> int:
    """Hold the GIL for ``steps`` iterations of a pure-Python loop."""
    total = 0
    for i in range(steps):
        total += i
    return total


_HASHED = b"\x5a" * (1024 * 1024)


def digest(kib: int) -> bytes:
    """sha256 over ``kib`` KiB: native work that releases the GIL (above 2 KiB)."""
    data = _HASHED if kib == 1024 else b"\x5a" * (kib * 1024)
    return hashlib.sha256(data).digest()


def _chunk(index: int, size: int) -> str:
    """A fresh string object of ``size`` characters (never an interned constant)."""
    if size == 1:
        return "x"
    return f"{index:08d}".ljust(size, "x")[:size]


class BenchSync(llm.Model):
    """A sync-only model: yields ``chunks`` tiny chunks, sleeping or burning CPU before each."""

    can_stream = True
    Options = BenchOptions

    def __init__(self, model_id: str = SYNC_ID) -> None:
        self.model_id = model_id

    def execute(self, prompt, stream, response, conversation) -> Iterator[str]:
        opts = prompt.options
        probe = PROBES.get(opts.probe) if opts.probe else None
        if probe is None:
            yield from _plain(
                opts.chunks, opts.interval, opts.work, opts.size, opts.hash_kib, opts.outside_log
            )
            return
        yield from _probed(probe, opts.chunks, opts.interval, opts.work, opts.size)


def _plain(
    chunks: int,
    interval: float,
    work: int,
    size: int,
    hash_kib: int,
    outside_log: str | None = None,
) -> Iterator[str]:
    """``outside_log``: record, per token, the seconds the producing thread spent between the
    end of one token's work and the start of the next one's, i.e. outside the model (in llm's
    per-chunk work on the sync path; handing the chunk over, waiting for the GIL or for
    credit through an adapter), and the CPU seconds the thread spent in the work itself.
    Once the reply is complete, append both means in µs to that file, from whichever process
    runs the model (a worker process too).  The first does not depend on how fast the
    machine runs the model's own work, which moves a lot on a shared machine; the second is
    that speed, measured while the reply ran, so a ratio of two replies can be corrected
    for it (see shapes.py)."""
    if not interval and not work and size == 1 and not hash_kib and not outside_log:
        for _ in range(chunks):
            yield "x"
        return
    outside: list[float] | None = [] if outside_log else None
    clock = time.perf_counter
    cpu_clock = time.thread_time
    work_cpu = 0.0
    ended: float | None = None
    for i in range(chunks):
        if interval:
            time.sleep(interval)
        if outside is not None:
            began = clock()
            if ended is not None:
                outside.append(began - ended)
            cpu_began = cpu_clock()
        if work:
            burn(work)
        if hash_kib:
            digest(hash_kib)
        if outside is not None:
            work_cpu += cpu_clock() - cpu_began
            ended = clock()
        yield _chunk(i, size)
    if outside_log and outside:
        with open(outside_log, "a", encoding="utf-8") as log:
            log.write(f"{sum(outside) / len(outside) * 1e6} {work_cpu / chunks * 1e6}\n")


def _probed(probe: Probe, chunks: int, interval: float, work: int, size: int) -> Iterator[str]:
    probe.started_at = time.perf_counter()
    probe.thread = threading.current_thread().name
    how = "exhausted"
    try:
        for i in range(chunks):
            if probe.stop.is_set():
                how = "stopped"
                break
            if interval:
                time.sleep(interval)
            if work:
                burn(work)
            chunk = _chunk(i, size)
            probe.produced += 1
            yield chunk
    except GeneratorExit:
        how = "closed"
        raise
    except BaseException as error:
        how = type(error).__name__
        raise
    finally:
        probe.how = how
        probe.closed_at = time.perf_counter()
        probe.closed.set()


class BenchNative(llm.AsyncModel):
    """The native async equal of :class:`BenchSync`: same options, same chunks, no threads."""

    can_stream = True
    Options = BenchOptions

    def __init__(self, model_id: str = NATIVE_ID) -> None:
        self.model_id = model_id

    async def execute(self, prompt, stream, response, conversation) -> AsyncIterator[str]:
        opts = prompt.options
        probe = PROBES.get(opts.probe) if opts.probe else None
        if probe is None and not opts.interval and not opts.work and opts.size == 1:
            for _ in range(opts.chunks):
                yield "x"
            return
        if probe is not None:
            probe.started_at = time.perf_counter()
            probe.thread = threading.current_thread().name
        how = "exhausted"
        try:
            for i in range(opts.chunks):
                if probe is not None and probe.stop.is_set():
                    how = "stopped"
                    break
                if opts.interval:
                    await asyncio.sleep(opts.interval)
                if opts.work:
                    burn(opts.work)
                chunk = _chunk(i, opts.size)
                if probe is not None:
                    probe.produced += 1
                yield chunk
        except GeneratorExit:
            how = "closed"
            raise
        except BaseException as error:
            how = type(error).__name__
            raise
        finally:
            if probe is not None:
                probe.how = how
                probe.closed_at = time.perf_counter()
                probe.closed.set()


_SYNC = BenchSync()
_NATIVE_PAIR = (BenchSync(NATIVE_ID), BenchNative())


@llm.hookimpl
def register_models(register) -> None:
    """Register the benchmark models (one instance each, reused, as a plugin would)."""
    register(_SYNC)
    register(*_NATIVE_PAIR)
