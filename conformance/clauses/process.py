"""Process clauses: process-wide state while the model runs, and a clean exit of a child.

``process.state`` watches from the consumer's side, on the event loop's thread, at every
chunk and while the model is held mid-stream after its first chunk: whatever it sees changed
is what the rest of the program (the loop's own writes, logging, other requests) lives with
while the model runs.  In thread mode any change fails the clause, whatever the concurrency:
the program shares the process with the model.  In process mode the model runs elsewhere and
the same observation checks that this (parent) process stays untouched.
"""

from __future__ import annotations

from typing import Any

import pytest

from .. import childrun
from ..context import ISOLATION_ENV, Context, isolation_mode
from ..instrument import Plan
from ..marks import clause
from ..resources import ProcessState, stdio_kept
from ..waiting import wait_event

BOUND = 10.0


class ProcessClauses:
    """process.state and process.exit."""

    @clause("process.state")
    def test_process_state(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        mode = ctx.bench.isolation or isolation_mode(ctx.model_id)
        in_thread = mode != "process"
        ctx.use(Plan())
        ctx.twin_run()  # warm-up: imports and one-time set-up are not "while it runs"
        # In thread mode the instrumentation holds the model mid-stream after its first
        # chunk; in process mode execute() runs in the worker process, out of its reach.
        plan = ctx.use(Plan(gate_after=1, pad_to=3) if in_thread else Plan())
        twin = ctx.twin()

        async def main() -> tuple[ProcessState, list[tuple[str, list[str]]], Any]:
            before = ProcessState.take()  # inside the loop: asyncio.run's own SIGINT handler
            seen: list[tuple[str, list[str]]] = []
            response = twin.prompt(ctx.samples.prompt, **ctx.prompt_kwargs())
            index = 0
            try:
                async for _ in response:
                    index += 1
                    seen.append((f"after chunk {index}", ProcessState.take().changes_since(before)))
                    if index == 1 and in_thread:
                        record = ctx.records(1)[0]
                        if await wait_event(record.gate_reached, BOUND):
                            seen.append(
                                (
                                    "while the model was held after its first chunk",
                                    ProcessState.take().changes_since(before),
                                )
                            )
                        plan.gate.set()
                error = None
            except Exception as failure:
                error = failure
            finally:
                plan.release()
            seen.append(("after the stream", ProcessState.take().changes_since(before)))
            return before, seen, error

        outside = ProcessState.take()  # what to put back (asyncio.run restores its own SIGINT)
        with stdio_kept():
            _, seen, error = ctx.loop(main)
            outside.restore()
        changed = [(when, found) for when, found in seen if found]
        if changed:
            first_when, first = changed[0]
            summary = f"{first_when}: " + "; ".join(first)
            if len(changed) > 1:
                summary += f" (and at {len(changed) - 1} other observation(s))"
            if in_thread:
                pytest.fail(
                    f"the model changed process-wide state while it ran in thread mode, "
                    f"which everything else in the process sees: {summary}. Run it in its own "
                    f"process: {ISOLATION_ENV}=process (or `llm async set {ctx.model_id} "
                    "isolation process`)",
                    pytrace=False,
                )
            pytest.fail(
                f"in process mode the parent's process-wide state changed: {summary}",
                pytrace=False,
            )
        assert error is None, f"the prompt failed: {type(error).__name__}: {error}"
        ctx.note(
            f"{len(seen)} observations ({mode} mode): fds 1/2, sys.stdout/stderr, logging, "
            "warning filters, os.environ, cwd and signal handlers untouched"
        )

    @clause("process.exit")
    def test_process_exit(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        result = childrun.run_prompt(
            ctx.model_id,
            ctx.samples.prompt,
            mode="async",
            system=ctx.samples.system,
            options=dict(ctx.samples.prompt_options),
            abandon=True,
        )
        if result.setup_failed:
            pytest.skip(
                "a child interpreter cannot load the plugins this run registered by hand "
                f"({result.outcome['type']}: {result.outcome['message']}); install the plugin "
                "(an llm entry point) to run it"
            )
        where = (
            f"a child interpreter that ran the prompt through the twin, then left a second "
            f"one after its first chunk (asyncio.run, then exit) {result.describe()}"
        )
        tail = " ".join(result.stderr_tail.split())[-600:]
        if result.outcome is None or not result.outcome.get("ok"):
            pytest.fail(
                f"{where}{'; stderr: ' + tail if tail else ''}"
                + (
                    ": the process aborted or crashed at exit, after the answer (threads or "
                    "native resources the model leaves running at interpreter shutdown)"
                    if result.outcome is None and result.returncode is not None
                    else ""
                ),
                pytrace=False,
            )
        if result.returncode != 0:
            sync = childrun.run_prompt(
                ctx.model_id,
                ctx.samples.prompt,
                mode="sync",
                system=ctx.samples.system,
                options=dict(ctx.samples.prompt_options),
                abandon=True,
            )
            who = (
                f"; on llm's sync path alone the child {sync.describe()} too: a plugin or "
                "native-library problem, not the adapter"
                if sync.returncode != 0
                else "; on llm's sync path alone the child exits cleanly: the async run "
                "(its worker threads) leaves something running at shutdown"
            )
            pytest.fail(
                f"{where} after answering: the process aborted or crashed at exit (threads or "
                f"native resources left running at interpreter shutdown){who}"
                + (f"; stderr: {tail}" if tail else ""),
                pytrace=False,
            )
        ctx.note(
            f"the child answered ({result.outcome.get('chars')} chars), left a second prompt "
            "after its first chunk and exited with 0"
        )
