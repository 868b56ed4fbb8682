"""The time limits of one prompt, and the one place they become the deadline of a wait.

Both servers wait in the same places: for a model slot (``queue``), for a worker process to
start (``start``), for the first chunk (``first``), for each later chunk (``later``), and
before handing over chunks already buffered (``handover``).  :meth:`Deadlines.nearest` says
which limit ends each of those waits first, so a timeout means the same on threads and in
worker processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from .errors import (
    AdapterTimeoutError,
    FirstChunkTimeoutError,
    IdleTimeoutError,
    QueueTimeoutError,
    ResponseTimeoutError,
)

if TYPE_CHECKING:
    from .settings import Settings


class Limit(NamedTuple):
    """The nearest deadline of a wait: seconds left (may be negative) and the error it raises."""

    remaining: float
    error: AdapterTimeoutError


Phase = Literal["queue", "start", "first", "later", "handover"]


class Deadlines(NamedTuple):
    """The consumer-side time limits of one prompt, in seconds (None: no limit).

    :meth:`nearest` is the one place the adapter turns them into the deadline of a wait:
    the slot wait (``queue``), the wait for the first chunk (``first``) and for each later
    one (``later``); in ``start`` (a worker process starting) and ``handover`` (chunks
    already buffered: a consumer slower than the model still times out) only the
    whole-response limit applies.

    A named tuple rather than a frozen dataclass: one is built per prompt, on the way to its
    first chunk, and a frozen dataclass's ``__init__`` costs several times as much.
    """

    timeout: float | None = None
    first_chunk_timeout: float | None = None
    idle_timeout: float | None = None
    stall_timeout: float | None = None
    stuck_warning: float | None = None
    queue_timeout: float | None = None

    @classmethod
    def from_settings(cls, config: Settings) -> Deadlines:
        """The limits of ``config``, built once per settings object: every prompt asks, and
        ``settings.resolve`` hands out the same object while nothing changed."""
        cached = _by_settings.get(id(config))
        if cached is not None and cached[0] is config:
            return cached[1]
        deadlines = cls(
            timeout=config.timeout,
            first_chunk_timeout=config.first_chunk_timeout,
            idle_timeout=config.idle_timeout,
            stall_timeout=config.stall_timeout,
            stuck_warning=config.stuck_warning,
            queue_timeout=config.queue_timeout,
        )
        if len(_by_settings) > 256:
            _by_settings.clear()
        # The settings object is kept with its limits, so its id cannot be reused meanwhile.
        _by_settings[id(config)] = (config, deadlines)
        return deadlines

    def nearest(
        self,
        model_id: str,
        phase: Phase,
        *,
        started_at: float,
        worker_started_at: float | None = None,
        now: float | None = None,
    ) -> Limit | None:
        """The deadline that comes first in ``phase`` (None: the wait is unbounded).

        ``started_at`` is when the prompt was made; ``worker_started_at`` when its worker
        began (the first-chunk clock; None while it has not).
        """
        now = time.monotonic() if now is None else now
        limits: list[Limit] = []
        if self.timeout is not None:
            limits.append(
                Limit(started_at + self.timeout - now, ResponseTimeoutError(model_id, self.timeout))
            )
        if phase == "queue" and self.queue_timeout is not None:
            limits.append(
                Limit(
                    started_at + self.queue_timeout - now,
                    QueueTimeoutError(model_id, self.queue_timeout),
                )
            )
        if phase == "first" and self.first_chunk_timeout is not None and worker_started_at:
            limits.append(
                Limit(
                    worker_started_at + self.first_chunk_timeout - now,
                    FirstChunkTimeoutError(model_id, self.first_chunk_timeout),
                )
            )
        if phase == "later" and self.idle_timeout is not None:
            limits.append(Limit(self.idle_timeout, IdleTimeoutError(model_id, self.idle_timeout)))
        return min(limits, key=lambda limit: limit.remaining, default=None)


_by_settings: dict[int, tuple[Settings, Deadlines]] = {}


async def wait_within(awaitable: Awaitable[Any], limit: Limit | None) -> None:
    """Await ``awaitable``; raise ``limit.error`` (cancelling it) if the deadline comes first."""
    if limit is None:
        await awaitable
        return
    try:
        await asyncio.wait_for(awaitable, max(limit.remaining, 0))
    except asyncio.TimeoutError:
        raise limit.error from None
