"""Where sync generators run: a fresh daemon thread per stream, or one dedicated thread per model.

The adapter never uses the event loop's default executor: filling it stalls unrelated work
such as ``getaddrinfo``, and ``asyncio.run`` waits for its threads at exit.  Daemon threads
never hold up process exit.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

logger = logging.getLogger("llm_all_models_async")

THREAD_PREFIX = "llm-async:"

Job = Callable[[], None]


def thread_name(model_id: str) -> str:
    """Worker threads carry the model id, so a thread dump says which model is busy."""
    return THREAD_PREFIX + model_id


def start_thread(model_id: str, job: Job) -> None:
    """Run ``job`` on a new daemon thread named after the model."""
    threading.Thread(target=job, name=thread_name(model_id), daemon=True).start()


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
            job = self._jobs.get()
            try:
                job()
            except BaseException:  # a job reports its own errors; never let the thread die
                logger.exception("llm-async dedicated worker job failed")


_dedicated_lock = threading.Lock()
_dedicated: dict[tuple[str, str, str], DedicatedThread] = {}


def dedicated_thread(key: tuple[str, str, str], model_id: str) -> DedicatedThread:
    """The dedicated thread of one model, started on first use and kept for the process."""
    with _dedicated_lock:
        worker = _dedicated.get(key)
        if worker is None:
            worker = _dedicated[key] = DedicatedThread(model_id)
        return worker
