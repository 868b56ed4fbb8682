"""Where sync generators run: pooled daemon threads, or one dedicated thread per model.

The adapter never uses the event loop's default executor: filling it stalls unrelated work
such as ``getaddrinfo``, and ``asyncio.run`` waits for its threads at exit.  Worker threads
are daemon threads, but they are not left to die with the interpreter: at exit
(:func:`stop_at_exit`) every stream still running is stopped and given
:data:`EXIT_STOP_SECONDS` to close its generator, then every worker thread is ended.  A daemon
thread that finalisation catches inside native code is killed by ``pthread_exit``; unwinding
through C++ frames (torch, MLX) then aborts the process ("terminate called without an active
exception"), and the model's ``finally`` never runs.

A thread that finished a stream stays idle for :data:`IDLE_SECONDS` and runs the next stream
that starts meanwhile, instead of a new thread being started for every stream (starting one
costs about as much as the rest of the first chunk's path).  A running worker is named
``llm-async:<model_id>`` (renamed on reuse); an idle one ``llm-async-idle``, so counting
threads by the ``llm-async:`` prefix counts streams being served.  A thread keeps no
reference to a job it finished: a stream's prompt, response and generator are freed when the
stream ends, not when the thread next works.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("llm_all_models_async")

THREAD_PREFIX = "llm-async:"
IDLE_NAME = "llm-async-idle"
IDLE_SECONDS = 2.0
"""How long a worker thread that finished its stream waits for another before it exits."""

Job = Callable[[], None]
Stop = Callable[[], None]
"""Asks a running job to end soon (for a stream: stop its channel); returns at once."""


def thread_name(model_id: str) -> str:
    """Worker threads carry the model id, so a thread dump says which model is busy."""
    return THREAD_PREFIX + model_id


def _run_job(job: Job, what: str) -> None:
    try:
        job()
    except BaseException:  # a job reports its own errors; never let the thread die
        logger.exception("llm-async %s job failed", what)


class _PooledThread:
    """A daemon thread that runs one job, then waits idle for :data:`IDLE_SECONDS` for more."""

    def __init__(self, model_id: str, job: Job) -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        # Through the queue, not ``args``: a Thread keeps its args until the thread ends.
        self._jobs.put(job)
        self.thread = threading.Thread(target=self._run, name=thread_name(model_id), daemon=True)

    def hand(self, model_id: str, job: Job) -> None:
        """Give an idle thread (just taken out of the pool) its next job."""
        self.thread.name = thread_name(model_id)
        self._jobs.put(job)

    def _run(self) -> None:
        job: Job | None = self._jobs.get()
        while job is not None:
            _run_job(job, "worker")
            job = None  # hold nothing of the finished stream while idle
            self.thread.name = IDLE_NAME
            job = _pool.wait_for_job(self)


class _Pool:
    """The idle pooled threads, most recently idle first (its caches are the warmest)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_PooledThread] = []

    def reset(self) -> None:
        """In a forked child: the parent's idle threads do not exist here."""
        self._lock = threading.Lock()
        self._idle = []

    def take(self) -> _PooledThread | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def drain(self) -> list[_PooledThread]:
        """Take every idle thread out of the pool (none is handed a job afterwards)."""
        with self._lock:
            idle, self._idle = self._idle, []
            return idle

    def wait_for_job(self, worker: _PooledThread) -> Job | None:
        """Park ``worker`` until it is handed a job (returned) or its idle time is up (None)."""
        with self._lock:
            self._idle.append(worker)
        try:
            return worker._jobs.get(timeout=IDLE_SECONDS)
        except queue.Empty:
            with self._lock:
                if worker in self._idle:
                    self._idle.remove(worker)
                    return None
            return worker._jobs.get()  # taken just as the wait ran out: the job is coming


class _Running:
    """Jobs handed to a thread and not finished yet, each with its model id and its stop."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start empty (also in a forked child: the parent's jobs do not run there)."""
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)
        self._jobs: dict[int, tuple[str, Stop]] = {}
        self._next = 0

    def track(self, model_id: str, job: Job, stop: Stop) -> tuple[Job, Callable[[], None]]:
        """``job`` wrapped to leave the registry when it ends, and a function that removes
        it without running it (the thread meant to run it did not start)."""
        with self._lock:
            token = self._next = self._next + 1
            self._jobs[token] = (model_id, stop)

        def forget() -> None:
            with self._lock:
                self._jobs.pop(token, None)
                self._ended.notify_all()

        def run() -> None:
            try:
                job()
            finally:
                forget()

        return run, forget

    def stop_all(self, timeout: float) -> list[str]:
        """Stop every running job and wait up to ``timeout`` for all to end; returns the model
        ids of the jobs still running then."""
        with self._lock:
            stops = [stop for _model_id, stop in self._jobs.values()]
        for stop in stops:
            try:
                stop()
            except Exception:
                logger.exception("llm-async: stopping a stream at exit failed")
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._jobs:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._ended.wait(remaining)
            return sorted(model_id for model_id, _stop in self._jobs.values())


_pool = _Pool()
_running = _Running()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.reset)
    os.register_at_fork(after_in_child=_running.reset)

EXIT_STOP_SECONDS = 5.0
"""At interpreter exit, how long to wait in all for the streams still running to stop: the
model's chunk in flight, then its ``finally``."""

EXIT_JOIN_SECONDS = 1.0
"""At interpreter exit, how long to wait in all for idle threads to end."""


def retire_idle_threads() -> None:
    """End the idle pooled threads and wait (briefly) until they have ended.

    Runs at interpreter exit.  A thread that has run a model may own native per-thread state
    (MLX streams): ended here, before the interpreter finalises, it releases that state as it
    would have if it had ended with its stream; left idle into finalisation it made MLX abort
    or segfault the exiting process.  Idle threads only wait on their queue, so they end at
    once; busy ones are not waited for (daemon threads never hold up exit).
    """
    idle = _pool.drain()
    for worker in idle:
        worker._jobs.put(None)
    deadline = time.monotonic() + EXIT_JOIN_SECONDS
    for worker in idle:
        worker.thread.join(max(0.0, deadline - time.monotonic()))


def stop_at_exit() -> None:
    """Stop the streams still running, wait for them, then end every worker thread.

    Registered with :mod:`atexit`: it runs after the interpreter has joined its non-daemon
    threads, when no event loop is left to read these streams.  A stream whose model does
    not return within :data:`EXIT_STOP_SECONDS` (a blocking ``next()``) is logged and left to
    the interpreter, as before.
    """
    still_running = _running.stop_all(EXIT_STOP_SECONDS)
    if still_running:
        logger.warning(
            "llm-async: at exit, %s still inside the model after %gs (a blocking next() "
            "cannot be interrupted); the interpreter ends it without running its finally",
            ", ".join(repr(m) for m in still_running),
            EXIT_STOP_SECONDS,
        )
    with _dedicated_lock:
        dedicated = list(_dedicated.values())
        _dedicated.clear()
    for worker in dedicated:
        worker.end()
    retire_idle_threads()
    deadline = time.monotonic() + EXIT_JOIN_SECONDS
    for worker in dedicated:
        worker.thread.join(max(0.0, deadline - time.monotonic()))


atexit.register(stop_at_exit)


def start_thread(model_id: str, job: Job, stop: Stop) -> None:
    """Run ``job`` on an idle pooled thread, or on a new daemon thread named after the model.

    ``stop`` is how :func:`stop_at_exit` ends the job if it still runs at interpreter exit.
    """
    tracked, forget = _running.track(model_id, job, stop)
    worker = _pool.take()
    if worker is not None:
        worker.hand(model_id, tracked)
        return
    try:
        _PooledThread(model_id, tracked).thread.start()
    except BaseException:
        forget()
        raise


class DedicatedThread:
    """One long-lived thread that runs every stream of one model, one after another.

    For runtimes bound to the thread that loaded them (MLX streams on Apple GPUs): loading
    and every generation happen on the same thread.
    """

    def __init__(self, model_id: str) -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._model_id = model_id
        self.thread = threading.Thread(target=self._run, name=thread_name(model_id), daemon=True)
        self.thread.start()

    def submit(self, job: Job, stop: Stop) -> None:
        """Queue ``job``; ``stop`` as for :func:`start_thread`."""
        tracked, _forget = _running.track(self._model_id, job, stop)
        self._jobs.put(tracked)

    def end(self) -> None:
        """End the thread after the jobs already queued (at interpreter exit)."""
        self._jobs.put(None)

    def _run(self) -> None:
        while True:
            job: Job | None = self._jobs.get()
            if job is None:
                return
            _run_job(job, "dedicated worker")
            job = None  # the finished stream must not stay alive until the model's next prompt


_dedicated_lock = threading.Lock()
_dedicated: dict[tuple[str, str, str], DedicatedThread] = {}


def dedicated_thread(key: tuple[str, str, str], model_id: str) -> DedicatedThread:
    """The dedicated thread of one model, started on first use and kept for the process.

    Raises (registering nothing) if the thread cannot be started.
    """
    with _dedicated_lock:
        worker = _dedicated.get(key)
        if worker is None:
            worker = _dedicated[key] = DedicatedThread(model_id)
        return worker
