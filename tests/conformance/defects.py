"""Deliberate adapter defects, patched into the real adapter inside a pytester run.

Each breaks exactly one promise of the adapter that every clause used to let through; the
suite must fail the clause that names it.  ``apply(name)`` is called from the run's conftest;
``apply_in_workers(name)`` patches the adapter's worker processes instead (process isolation).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import sys
import types
from collections.abc import Callable
from typing import Any

from llm_all_models_async import bridge, limits, settings, views


def close_on_loop_thread() -> None:
    """A stop that finds the worker waiting for buffer room closes the generator itself, on
    the stopping (event loop) thread, instead of leaving the close to the worker."""
    produce = bridge._produce

    def _produce(channel: Any, make_iterator: Callable[[], Any], on_exit: Any) -> None:
        def make() -> Any:
            channel.defect_iterator = make_iterator()
            return channel.defect_iterator

        produce(channel, make, on_exit)

    stop = bridge.Channel.stop

    def stop_here(self: Any) -> None:
        iterator = getattr(self, "defect_iterator", None)
        if iterator is not None and self.producer_waiting and not self.stopped:
            with contextlib.suppress(ValueError):
                iterator.close()
        stop(self)

    bridge._produce = _produce
    bridge.Channel.stop = stop_here


def no_contextvars() -> None:
    """The worker runs the generator in an empty context, not a copy of the caller's."""
    bridge.contextvars = types.SimpleNamespace(copy_context=contextvars.Context)


def lifo() -> None:
    """Waiting prompts are admitted newest first."""

    def _admit_locked(self: Any) -> None:
        while self._waiters and self.in_use < self.limit:
            waiter = self._waiters.pop()
            if waiter.future.cancelled():
                continue
            try:
                waiter.loop.call_soon_threadsafe(limits._grant, waiter.future)
            except RuntimeError:
                continue
            waiter.granted = True
            self.in_use += 1

    limits.SlotLimiter._admit_locked = _admit_locked


def ignore_buffer() -> None:
    """LLM_ASYNC_BUFFER is read but not used: every stream gets the default buffer."""
    resolve = settings.resolve

    def resolve_default_buffer(model_id: str, environ: Any = None) -> Any:
        found = resolve(model_id, environ)
        return dataclasses.replace(found, buffer=settings.SPECS["buffer"].default)

    settings.resolve = resolve_default_buffer


def leak_slot_on_error() -> None:
    """The model's slot is released when a stream ends normally, never after an error."""
    produce = bridge._produce

    def _produce(channel: Any, make_iterator: Callable[[], Any], on_exit: Any) -> None:
        def release_unless_failed() -> None:
            if channel.error is None:
                on_exit()

        produce(channel, make_iterator, release_unless_failed)

    bridge._produce = _produce


def drop_resolved_model() -> None:
    """The response view the sync execute() gets swallows set_resolved_model()."""
    views.SyncResponseView.set_resolved_model = lambda self, model_id: None


def worker_ignores_stop() -> None:
    """Process isolation: the worker drops every STOP, so a stopped stream's generator stays
    suspended at its yield, waiting for credit, until LLM_ASYNC_KILL_AFTER kills the worker."""
    from llm_all_models_async.process import worker

    worker.Job.stop = lambda self: None


DEFECTS: dict[str, Callable[[], None]] = {
    "close_on_loop_thread": close_on_loop_thread,
    "no_contextvars": no_contextvars,
    "lifo": lifo,
    "ignore_buffer": ignore_buffer,
    "leak_slot_on_error": leak_slot_on_error,
    "drop_resolved_model": drop_resolved_model,
    "worker_ignores_stop": worker_ignores_stop,
}

WORKER_DEFECT_ENV = "CONFORMANCE_TEST_WORKER_DEFECT"


def apply(name: str) -> None:
    DEFECTS[name]()


def apply_in_workers(name: str) -> None:
    """Have every worker process the adapter starts apply ``name``.

    The worker imports each plugin the parent registered, so registering this module makes
    it run there, where it finds the defect's name in the environment the worker inherits.
    """
    import llm

    os.environ[WORKER_DEFECT_ENV] = name
    if not llm.plugins.pm.is_registered(sys.modules[__name__]):
        llm.plugins.pm.register(sys.modules[__name__], name="conformance-defects")


if os.environ.get(WORKER_DEFECT_ENV):  # imported as a plugin by a worker process
    apply(os.environ[WORKER_DEFECT_ENV])
