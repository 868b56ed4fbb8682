"""Loop clause: the event loop keeps ticking while the model works on its thread."""

from __future__ import annotations

import asyncio
import threading
import time

from ..context import Context
from ..instrument import Plan
from ..marks import clause

TICK = 0.01
TICKS_WHILE_HELD = 20  # the model is held until the loop ticked this often
HOLD_BOUND = 3.0  # ...or this long: a loop that cannot tick shows a lag of at least this much
STALL = 1.0  # an order of magnitude above normal scheduling noise


class LoopClauses:
    """loop.responsive."""

    @clause("loop.responsive")
    def test_loop_responsive(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        ticked = threading.Event()
        ctx.use(Plan(hold_first=ticked, wait_bound=HOLD_BOUND))
        twin = ctx.twin()

        async def main() -> tuple[float, int, object]:
            lags: list[float] = []
            done = asyncio.Event()

            async def ticker() -> None:
                while not done.is_set():
                    planned = time.monotonic() + TICK
                    await asyncio.sleep(TICK)
                    lags.append(max(0.0, time.monotonic() - planned))
                    if len(lags) >= TICKS_WHILE_HELD:
                        ticked.set()

            ticking = asyncio.create_task(ticker())
            try:
                result = await ctx.async_run(model=twin)
            finally:
                done.set()
                await ticking
            return max(lags, default=0.0), len(lags), result

        worst, ticks, result = ctx.loop(main)
        assert getattr(result, "error", None) is None, f"the prompt failed: {result.error!r}"
        assert worst <= STALL, (
            f"the event loop stalled for {worst:.2f}s while the model ran: execute() (or "
            "something the twin does) blocks the loop thread"
        )
        ctx.note(f"max loop lag {worst * 1000:.1f} ms over {ticks} ticks of {TICK * 1000:g} ms")
