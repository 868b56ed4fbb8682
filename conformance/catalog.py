"""The clause catalog: every stable clause id, its group and the one line saying what it checks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClauseInfo:
    """One clause of the suite: ``id`` is stable and used in reports and expected failures."""

    id: str
    summary: str

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]


_CLAUSES: tuple[tuple[str, str], ...] = (
    ("suite.overrides", "no standard test is overridden in a subclass without @overridden('why')"),
    ("suite.expectations", "every expected-failure entry names a known clause id"),
    (
        "hook.version_gate",
        "llm >= 0.30: the adapter is active; llm < 0.30: llm still works, the adapter is inactive",
    ),
    ("hook.twin", "the async model llm returns for the id is the adapter's twin of the sync model"),
    ("hook.identity", "the twin's model_id, aliases and str() equal the sync model's"),
    (
        "hook.attributes",
        "every attribute the sync model declares (Options, keys, capability flags, plugin "
        "extras) reads the same on the twin",
    ),
    (
        "hook.native_untouched",
        "models registered with a native async model keep it; the adapter wraps none of them",
    ),
    (
        "options.valid",
        "valid option values pass the twin's validation and reach the sync execute() as the "
        "sync model's Options",
    ),
    ("options.invalid", "invalid option values fail on the twin exactly as on the sync model"),
    (
        "options.defaults",
        "a prompt without options reaches execute() with the model's default Options",
    ),
    ("keys.explicit", "a key passed to prompt(key=...) reaches the sync execute()"),
    ("keys.env", "a key in the model's key_env_var reaches the sync execute()"),
    ("keys.stored", "a key stored in keys.json (temporary user dir) reaches the sync execute()"),
    ("keys.missing", "without a key the twin fails like the sync model (NeedsKeyException)"),
    (
        "streaming.incremental",
        "the first chunk reaches the consumer while the sync generator is still paused "
        "after yielding it",
    ),
    (
        "streaming.order",
        "chunks reach the consumer in the order the generator yielded them, as with the sync model",
    ),
    ("streaming.no_stream", "stream=False reaches execute() and returns the whole text"),
    (
        "differential.output",
        "the twin gives the sync model's text, chunks, usage, tool calls, JSON and stream events "
        "(shape only for nondeterministic models)",
    ),
    ("differential.native", "where the plugin ships a native async model, the twin matches it too"),
    (
        "cancellation.task_cancel",
        "task.cancel() releases the caller at once; the generator is closed on its worker thread "
        "after at most one more chunk",
    ),
    (
        "cancellation.wait_for",
        "an asyncio.wait_for timeout releases the caller and closes the generator the same way",
    ),
    (
        "cancellation.aclose",
        "leaving astream_events() early (aclose) closes the generator the same way (llm 0.36+)",
    ),
    (
        "cancellation.abandoned",
        "a response dropped mid-stream is collected and its generator closed the same way",
    ),
    (
        "cancellation.loop_shutdown",
        "asyncio.run() returns promptly with a stream in flight; the generator is closed the "
        "same way",
    ),
    ("timeouts.response", "LLM_ASYNC_TIMEOUT fires a TimeoutError subclass and leaves no thread"),
    (
        "timeouts.first_chunk",
        "LLM_ASYNC_FIRST_CHUNK_TIMEOUT fires a TimeoutError subclass and leaves no thread",
    ),
    ("timeouts.idle", "LLM_ASYNC_IDLE_TIMEOUT fires a TimeoutError subclass and leaves no thread"),
    (
        "timeouts.queue",
        "LLM_ASYNC_QUEUE_TIMEOUT fires for a prompt waiting for a busy model; the running one "
        "completes",
    ),
    (
        "timeouts.stall",
        "LLM_ASYNC_STALL_TIMEOUT closes the stream of a consumer that stopped reading",
    ),
    (
        "errors.injected",
        "an exception raised mid-stream keeps its type, message and traceback; a BaseException "
        "is not turned into a truncated success",
    ),
    (
        "errors.model_raised",
        "the model's own exception for the failing sample prompt has the same type and message "
        "as with the sync model",
    ),
    ("errors.recovery", "a failing prompt does not poison the next prompt on the same twin"),
    (
        "conversation.turns",
        "second and third turns work and the sync execute() sees a sync Conversation whose "
        "responses[i].text() are str",
    ),
    (
        "conversation.rejected",
        "a model with supports_conversation=False rejects a second turn exactly like the sync "
        "model (llm 0.36+)",
    ),
    ("tools.chain", "a chain with a tool calls it and finishes as with the sync model"),
    ("schema.prompt", "a schema prompt reaches execute() and gives the sync model's output"),
    (
        "attachments.prompt",
        "an attachment reaches execute() with its content and gives the sync model's output",
    ),
    (
        "concurrency.limit",
        "concurrent prompts never overlap more executes than the configured model_concurrency, "
        "and do use it",
    ),
    ("concurrency.same_results", "concurrent prompts give the same results as serial ones"),
    (
        "concurrency.stdio",
        "after concurrent prompts, file descriptors 1 and 2 still point where they did and "
        "accept writes",
    ),
    (
        "loop.responsive",
        "the event loop keeps running while the model works (max lag reported; fails above 1 s)",
    ),
    ("hygiene.threads", "no thread is left behind after normal, cancelled and failed prompts"),
    ("hygiene.fds", "no file descriptor is left open after normal, cancelled and failed prompts"),
    ("hygiene.children", "no child process is left running after the prompts"),
    (
        "isolation.crash",
        "process isolation: a worker killed mid-stream (SIGKILL) delivers the chunks before, "
        "then WorkerCrashedError naming the model and signal; a fresh worker serves the next "
        "prompt",
    ),
    (
        "isolation.hard_cancel",
        "process isolation: a worker deaf to the stop (blocked in a read) is killed "
        "LLM_ASYNC_KILL_AFTER after a cancel and replaced",
    ),
    (
        "isolation.warm_reuse",
        "process isolation: prompts one after another run in the same worker on one model "
        "instance (weights load once per worker)",
    ),
    (
        "isolation.process_state",
        "process isolation: fds 1/2, sys.stdout, logging, warning filters, environ, cwd and "
        "signal handlers a worker's model changes stay unchanged here, during and after",
    ),
    (
        "isolation.no_orphans",
        "process isolation: when the parent is SIGKILLed its worker exits within a few seconds",
    ),
)

# What to change when a clause fails: appended to a failed clause's reason in the table and the
# JSON report (the isolation clauses judge the adapter's process server, so they point at it).
FIX_HINTS: dict[str, str] = {
    "isolation.crash": "watch the worker's exit in the process server and raise "
    "WorkerCrashedError (llm.ModelError) with the model, signal and stderr tail",
    "isolation.hard_cancel": "after a stop, kill a worker still inside the model after "
    "LLM_ASYNC_KILL_AFTER seconds and start a fresh one for the next prompt",
    "isolation.warm_reuse": "keep the worker and its one looked-up model instance for later "
    "prompts instead of starting or looking up per prompt",
    "isolation.process_state": "start workers as fresh interpreters with their own fds 1/2, "
    "never run execute() in the serving process",
    "isolation.no_orphans": "set PR_SET_PDEATHSIG in the worker and exit on EOF of the "
    "parent's pipe",
}

CLAUSES: dict[str, ClauseInfo] = {cid: ClauseInfo(cid, summary) for cid, summary in _CLAUSES}
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(info.group for info in CLAUSES.values()))


def order_key(clause_id: str) -> tuple[int, str]:
    """Sort clauses in catalog order; unknown ids go last, alphabetically."""
    ids = list(CLAUSES)
    return (ids.index(clause_id), "") if clause_id in CLAUSES else (len(ids), clause_id)


def group_of(clause_id: str) -> str:
    return clause_id.split(".", 1)[0]
