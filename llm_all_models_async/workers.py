"""Where sync generators run: pooled daemon threads, or one dedicated thread per model.

The adapter never uses the event loop's default executor: filling it stalls unrelated work
such as ``getaddrinfo``, and ``asyncio.run`` waits for its threads at exit.  Daemon threads
never hold up process exit.

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


_pool = _Pool()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.reset)

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


atexit.register(retire_idle_threads)


def start_thread(model_id: str, job: Job) -> None:
    """Run ``job`` on an idle pooled thread, or on a new daemon thread named after the model."""
    worker = _pool.take()
    if worker is not None:
        worker.hand(model_id, job)
        return
    _PooledThread(model_id, job).thread.start()


class DedicatedThread:
    """One long-lived thread that runs every stream of one model, one after another.

    For runtimes bound to the thread that loaded them (MLX streams on Apple GPUs): loading
    and every generation happen on the same thread.
    """

    def __init__(self, model_id: str) -> None:
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=thread_name(model_id), daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job: Job | None = self._jobs.get()
            assert job is not None
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
