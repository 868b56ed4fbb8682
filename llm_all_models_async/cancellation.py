"""``cancelled()``: lets a sync model's long blocking loop ask whether its stream was stopped.

The contract, stated once:

* A stream is *stopped* when its consumer is cancelled, times out, closes the response, drops
  it, or its event loop shuts down.  The awaiting caller is released at once; the adapter then
  sets the stop flag, and the worker thread closes the sync generator at its next ``yield``
  (``GeneratorExit`` is raised there, so ``finally`` blocks run on the worker thread).
* Python cannot interrupt a ``next()`` that blocks in C code or in a long loop.  Plugins with
  such loops (a tokenizer, a subprocess read, a model forward pass per token) can poll
  :func:`cancelled` and return early.  Workers still busy long after a stop are logged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol


class _Stoppable(Protocol):
    stopped: bool


_current = threading.local()


def cancelled() -> bool:
    """True when the stream whose sync ``execute()`` runs on this thread has been stopped.

    Always False outside a worker thread of this adapter, so plugins can call it
    unconditionally, also when they run synchronously.
    """
    channel: _Stoppable | None = getattr(_current, "channel", None)
    return bool(channel is not None and channel.stopped)


def bind(channel: _Stoppable | None) -> None:
    """Make ``channel`` the one :func:`cancelled` reports on for the calling thread."""
    _current.channel = channel


def on_stop(callback: Callable[[], object]) -> Callable[[], None]:
    """Call ``callback`` once the stream served by this thread is stopped (at once if it is).

    Returns a function that unregisters it.  Outside a worker thread nothing is registered:
    there is no stream to stop.
    """
    channel: _Stoppable | None = getattr(_current, "channel", None)
    # A thread stream's Channel can call back; a bound object without ``on_stop`` (another
    # server's job) cannot, and then nothing is registered.
    register: Callable[[Callable[[], object]], Callable[[], None]] | None = getattr(
        channel, "on_stop", None
    )
    if register is None:
        return _nothing
    return register(callback)


def _nothing() -> None:
    return None
