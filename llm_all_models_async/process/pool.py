"""Warm workers per model: reuse an idle one, start one when none is idle, retire idle ones.

Contract:

* A pool belongs to one model (plugin class and model id, :mod:`..identity`).  It hands out
  the most recently used idle worker, so extra workers started under load idle out first.
* Each worker serves one prompt at a time; ``LLM_ASYNC_MODEL_CONCURRENCY=N`` (enforced by the
  model's slot limiter before a worker is taken) therefore means up to N worker processes.
* A worker idle for ``LLM_ASYNC_WORKER_IDLE_TIMEOUT`` seconds is asked to exit.
* Dead workers leave the pool at once; the next prompt starts a fresh one.
* At interpreter exit every worker's channel is closed (they exit on EOF) without waiting,
  so exit never hangs on a worker; the parent-death signal covers a parent killed outright.
"""

from __future__ import annotations

import atexit
import threading

from ..identity import ModelKey
from . import timers
from .handle import WorkerProcess


class ModelPool:
    """The workers of one model."""

    def __init__(self, key: ModelKey) -> None:
        self.key = key
        self._lock = threading.Lock()
        self._idle: list[WorkerProcess] = []
        self.workers: set[WorkerProcess] = set()

    def checkout(self) -> WorkerProcess | None:
        """An idle live worker, taken out of the idle list; None when there is none."""
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.exited.is_set() or worker.closing or not worker.is_running():
                    continue  # died while idle (e.g. `llm async workers stop`)
                if worker.retire_timer is not None:
                    worker.retire_timer.cancel()
                    worker.retire_timer = None
                return worker
        return None

    def new_worker(self, model_id: str) -> WorkerProcess:
        worker = WorkerProcess(model_id, (self.key[0], self.key[1]))
        worker.on_exit = self.discard
        with self._lock:
            self.workers.add(worker)
        return worker

    def checkin(self, worker: WorkerProcess, idle_timeout: float | None) -> None:
        """Make ``worker`` available again; retire it after ``idle_timeout`` seconds unused."""
        with self._lock:
            if worker.exited.is_set() or worker.closing or worker in self._idle:
                return
            self._idle.append(worker)
            if idle_timeout is not None:
                served = worker.prompts_started
                worker.retire_timer = timers.schedule(
                    idle_timeout, lambda: self._retire(worker, served)
                )

    def _retire(self, worker: WorkerProcess, prompts_started: int) -> None:
        with self._lock:
            if worker not in self._idle or worker.prompts_started != prompts_started:
                return
            self._idle.remove(worker)
        worker.close()

    def discard(self, worker: WorkerProcess) -> None:
        with self._lock:
            self.workers.discard(worker)
            if worker in self._idle:
                self._idle.remove(worker)


_lock = threading.Lock()
_pools: dict[ModelKey, ModelPool] = {}


def pool_for(key: ModelKey) -> ModelPool:
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ModelPool(key)
        return pool


def all_workers() -> list[WorkerProcess]:
    with _lock:
        pools = list(_pools.values())
    return [worker for pool in pools for worker in list(pool.workers)]


def shutdown() -> None:
    """Close every worker's channel (they exit on EOF); never waits."""
    for worker in all_workers():
        worker.close()


atexit.register(shutdown)
