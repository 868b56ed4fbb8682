"""The clause catalog: every stable clause id, what it checks and how a plugin author fixes it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClauseInfo:
    """One clause of the suite: ``id`` is stable and used in reports and expected failures.

    ``summary`` says what the clause checks; ``fix`` is the one-line advice for a plugin
    author whose model fails it (where the fault is the adapter's, it says so).
    """

    id: str
    summary: str
    fix: str

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]


_CATALOG: tuple[ClauseInfo, ...] = (
    ClauseInfo(
        "suite.overrides",
        "no standard test is overridden in a subclass without @overridden('why')",
        (
            "decorate the replacement with @conformance.overridden('why'), or declare an expected "
            "failure instead of overriding"
        ),
    ),
    ClauseInfo(
        "suite.expectations",
        (
            "every expected-failure entry names a known clause id and has a reason (and a valid "
            "match pattern)"
        ),
        (
            "correct the clause id (see this table) or the entry's reason/match in pyproject.toml, "
            "the file or the class attribute"
        ),
    ),
    ClauseInfo(
        "hook.version_gate",
        (
            "llm >= 0.30: the adapter is active; llm < 0.30: llm still works, the adapter is "
            "inactive"
        ),
        (
            "install llm>=0.30, or check INACTIVE_REASON: another plugin may have broken the "
            "register_models hook"
        ),
    ),
    ClauseInfo(
        "hook.twin",
        "the async model llm returns for the id is the adapter's twin of the sync model",
        (
            "make sure llm-all-models-async is installed and LLM_ASYNC_EXCLUDE does not match the "
            "model; uninstall other async wrappers"
        ),
    ),
    ClauseInfo(
        "hook.identity",
        "the twin's model_id, aliases and str() equal the sync model's",
        "register the model once with all its aliases; do not change model_id after registering",
    ),
    ClauseInfo(
        "hook.attributes",
        (
            "every attribute the sync model declares (Options, keys, capability flags, plugin "
            "extras) reads the same on the twin"
        ),
        (
            "make the differing attribute a plain class or instance attribute (not computed per "
            "call from global state)"
        ),
    ),
    ClauseInfo(
        "hook.native_untouched",
        "models registered with a native async model keep it; the adapter wraps none of them",
        (
            "pass your native async model as register(model, async_model); report an adapter bug if"
            " it is still replaced"
        ),
    ),
    ClauseInfo(
        "options.valid",
        (
            "valid option values pass the twin's validation and reach the sync execute() as the "
            "sync model's Options"
        ),
        (
            "declare options on the model's Options class (a pydantic llm.Options), not read from "
            "elsewhere; set options = {...} to valid values"
        ),
    ),
    ClauseInfo(
        "options.invalid",
        "invalid option values fail on the twin exactly as on the sync model",
        (
            "validate options in the Options class (field validators), not in execute(), so both "
            "paths reject them alike"
        ),
    ),
    ClauseInfo(
        "options.defaults",
        (
            "a prompt without options reaches execute() with the model's default Options, or is "
            "rejected exactly as the sync model rejects it"
        ),
        (
            "give every Options field a default, or make required fields fail in validation so both"
            " paths reject them alike"
        ),
    ),
    ClauseInfo(
        "keys.explicit",
        "a key passed to prompt(key=...) reaches the sync execute()",
        (
            "subclass llm.KeyModel and use the key argument of execute() instead of reading the key"
            " yourself"
        ),
    ),
    ClauseInfo(
        "keys.env",
        "a key in the model's key_env_var reaches the sync execute()",
        "set key_env_var on the model and read the key from execute()'s key argument",
    ),
    ClauseInfo(
        "keys.stored",
        "a key stored in keys.json (temporary user dir) reaches the sync execute()",
        "set needs_key to the name used with `llm keys set` and read execute()'s key argument",
    ),
    ClauseInfo(
        "keys.missing",
        "without a key the twin fails like the sync model (NeedsKeyException)",
        (
            "let llm raise NeedsKeyException (needs_key set, no default key) instead of failing "
            "later inside execute()"
        ),
    ),
    ClauseInfo(
        "streaming.incremental",
        (
            "the first chunk reaches the consumer while the sync generator is still paused after "
            "yielding it"
        ),
        (
            "yield each piece as soon as you have it; set can_stream = False if the backend only "
            "returns whole answers"
        ),
    ),
    ClauseInfo(
        "streaming.order",
        (
            "chunks reach the consumer in the order the generator yielded them, as with the sync "
            "model"
        ),
        (
            "do not keep per-thread buffers or thread-local state that reorders output off the main"
            " thread"
        ),
    ),
    ClauseInfo(
        "streaming.no_stream",
        "stream=False reaches execute() and returns the whole text",
        (
            "honour the stream argument of execute(): with stream=False yield the whole answer (one"
            " or more chunks)"
        ),
    ),
    ClauseInfo(
        "differential.output",
        (
            "the twin gives the sync model's text and chunks (compared on shape, with a note, for a"
            " sampling model; a model that changes after a cancelled or failed prompt is reported "
            "as carrying state)"
        ),
        (
            "make output depend only on the prompt and options (no thread-local or main-thread-only"
            " state); reset shared state at the start of execute()"
        ),
    ),
    ClauseInfo(
        "differential.native",
        "where the plugin ships a native async model, the twin matches it too",
        (
            "make the native async model and the sync model produce the same output for the same "
            "prompt"
        ),
    ),
    ClauseInfo(
        "cancellation.task_cancel",
        (
            "task.cancel() while the model is inside next() releases the caller at once; the "
            "generator is closed on its worker thread after at most one more chunk"
        ),
        (
            "do not catch GeneratorExit (or BaseException) around yield; put clean-up in finally; "
            "poll llm_all_models_async.cancelled() in long loops"
        ),
    ),
    ClauseInfo(
        "cancellation.at_yield",
        (
            "task.cancel() while the model is suspended at a yield (the worker waiting for buffer "
            "room, or for credit in a worker process) closes the generator on its worker thread, "
            "never on the event loop's"
        ),
        (
            "an adapter bug if the model closes cleanly elsewhere; otherwise do not catch "
            "GeneratorExit around yield"
        ),
    ),
    ClauseInfo(
        "cancellation.wait_for",
        "an asyncio.wait_for timeout releases the caller and closes the generator the same way",
        "as for cancellation.task_cancel: let GeneratorExit through and clean up in finally",
    ),
    ClauseInfo(
        "cancellation.aclose",
        "leaving astream_events() early (aclose) closes the generator the same way (llm 0.36+)",
        "as for cancellation.task_cancel: let GeneratorExit through and clean up in finally",
    ),
    ClauseInfo(
        "cancellation.abandoned",
        "a response dropped mid-stream is collected and its generator closed the same way",
        (
            "do not keep the response object in a global, a cache or a thread of your own; keep "
            "only what you need from it"
        ),
    ),
    ClauseInfo(
        "cancellation.loop_shutdown",
        (
            "asyncio.run() returns promptly with a stream in flight; the generator is closed the "
            "same way"
        ),
        "do not block in a finally (joins, waits without timeout) when the generator is closed",
    ),
    ClauseInfo(
        "timeouts.response",
        "LLM_ASYNC_TIMEOUT fires a TimeoutError subclass and leaves no thread",
        (
            "let GeneratorExit through so the adapter can close a timed-out stream; poll "
            "cancelled() in blocking loops"
        ),
    ),
    ClauseInfo(
        "timeouts.first_chunk",
        "LLM_ASYNC_FIRST_CHUNK_TIMEOUT fires a TimeoutError subclass and leaves no thread",
        "as for timeouts.response",
    ),
    ClauseInfo(
        "timeouts.idle",
        "LLM_ASYNC_IDLE_TIMEOUT fires a TimeoutError subclass and leaves no thread",
        "as for timeouts.response",
    ),
    ClauseInfo(
        "timeouts.queue",
        (
            "LLM_ASYNC_QUEUE_TIMEOUT fires for a prompt waiting for a busy model; the running one "
            "completes"
        ),
        (
            "an adapter bug unless the model ignores GeneratorExit; report it with the clause's "
            "message"
        ),
    ),
    ClauseInfo(
        "timeouts.stall",
        "LLM_ASYNC_STALL_TIMEOUT closes the stream of a consumer that stopped reading",
        "as for timeouts.response",
    ),
    ClauseInfo(
        "errors.injected",
        (
            "an exception raised mid-stream keeps its type, message and traceback; a BaseException "
            "is not turned into a truncated success"
        ),
        "do not catch and swallow exceptions around yield; re-raise what you cannot handle",
    ),
    ClauseInfo(
        "errors.model_raised",
        (
            "the model's own exception for the failing sample prompt has the same type and message "
            "as with the sync model"
        ),
        (
            "raise the same exception whatever thread execute() runs on (no signal-based timeouts "
            "or main-thread checks)"
        ),
    ),
    ClauseInfo(
        "errors.recovery",
        "a failing prompt does not poison the next prompt on the same twin",
        (
            "reset per-request state at the start of execute() and in finally, so an error leaves "
            "nothing behind"
        ),
    ),
    ClauseInfo(
        "conversation.turns",
        (
            "second and third turns work and the sync execute() sees a sync Conversation whose "
            "responses[i].text() are str"
        ),
        (
            "read history through conversation.responses and response.text(), not through private "
            "attributes"
        ),
    ),
    ClauseInfo(
        "conversation.rejected",
        (
            "a model with supports_conversation=False rejects a second turn exactly like the sync "
            "model (llm 0.36+)"
        ),
        "declare supports_conversation = False and let llm reject later turns",
    ),
    ClauseInfo(
        "tools.chain",
        "a chain with a tool calls it and finishes as with the sync model",
        (
            "record tool calls with response.add_tool_call() and read results from "
            "prompt.tool_results"
        ),
    ),
    ClauseInfo(
        "schema.prompt",
        "a schema prompt reaches execute() and gives the sync model's output",
        "read the schema from prompt.schema and declare supports_schema = True",
    ),
    ClauseInfo(
        "attachments.prompt",
        "an attachment reaches execute() with its content and gives the sync model's output",
        (
            "read attachments through attachment.content_bytes() / resolve_type() and list their "
            "types in attachment_types"
        ),
    ),
    ClauseInfo(
        "worker.contextvars",
        "execute() runs in a copy of the caller's contextvars context",
        (
            "an adapter bug: the worker must run the generator inside contextvars.copy_context() of"
            " the caller"
        ),
    ),
    ClauseInfo(
        "worker.fifo",
        "prompts waiting for a busy model start first come, first served",
        "an adapter bug: waiting prompts must be admitted in arrival order",
    ),
    ClauseInfo(
        "worker.buffer",
        (
            "the worker reads at most LLM_ASYNC_BUFFER chunks ahead of a consumer that stopped "
            "reading, and does use that room"
        ),
        "an adapter bug: the producer must wait for buffer room before pulling the next chunk",
    ),
    ClauseInfo(
        "worker.slot_release",
        (
            "a model exception (before or after its first chunk) frees the model's slot at once: "
            "the next prompt starts within seconds"
        ),
        (
            "an adapter bug if the model's exception is raised normally; otherwise do not block in "
            "finally after an error"
        ),
    ),
    ClauseInfo(
        "concurrency.limit",
        (
            "concurrent prompts never overlap more executes than the configured model_concurrency, "
            "and do use it"
        ),
        (
            "keep model_concurrency at 1 for a model that is not thread-safe (`llm async set MODEL "
            "model_concurrency 1`)"
        ),
    ),
    ClauseInfo(
        "concurrency.same_results",
        (
            "each of several concurrent prompts receives exactly the chunks its own execute() "
            "yielded (and, for a deterministic model, what a serial run gives)"
        ),
        (
            "keep per-request state in locals, not on the model instance or module globals; or keep"
            " model_concurrency at 1"
        ),
    ),
    ClauseInfo(
        "concurrency.stdio",
        (
            "while executes overlap (paused mid-stream) and after them, file descriptors 1 and 2 "
            "point where they did and accept writes"
        ),
        (
            "do not redirect fds 1/2 with os.dup2 while generating, or keep model_concurrency at 1 "
            "/ use isolation process"
        ),
    ),
    ClauseInfo(
        "process.state",
        (
            "while the model streams, fds 1/2, sys.stdout/stderr, logging levels, warning filters, "
            "os.environ, the working directory and signal handlers are untouched (in process mode: "
            "in the parent)"
        ),
        (
            "change no process-wide state while generating; if you must, run the model with "
            "LLM_ASYNC_ISOLATION=process (`llm async set MODEL isolation process`)"
        ),
    ),
    ClauseInfo(
        "process.exit",
        (
            "a child interpreter that runs one prompt through the twin, then leaves a second "
            "after its first chunk, exits with status 0 (no abort or crash at exit)"
        ),
        (
            "stop and join your own threads and free native resources at exit (atexit), or make "
            "them daemon threads"
        ),
    ),
    ClauseInfo(
        "logs.record",
        (
            "the model id and resolved model that `llm logs` records for the async response equal "
            "the sync response's"
        ),
        (
            "set the resolved model with response.set_resolved_model() on the response passed to "
            "execute()"
        ),
    ),
    ClauseInfo(
        "loop.responsive",
        "the event loop keeps running while the model works (max lag reported; fails above 1 s)",
        (
            "an adapter bug unless the model holds the GIL in C code for long stretches; release "
            "the GIL in native calls"
        ),
    ),
    ClauseInfo(
        "hygiene.threads",
        "no thread is left behind after normal, cancelled and failed prompts",
        (
            "join the threads you start before execute() returns or in its finally; daemon threads "
            "still count"
        ),
    ),
    ClauseInfo(
        "hygiene.fds",
        "no file descriptor is left open after normal, cancelled and failed prompts",
        (
            "close files, sockets and pipes in a finally (or with blocks) so a closed generator "
            "releases them"
        ),
    ),
    ClauseInfo(
        "hygiene.children",
        "no child process is left running after the prompts",
        "terminate and wait for child processes in a finally, so a closed generator stops them",
    ),
    ClauseInfo(
        "isolation.crash",
        "process isolation: a worker killed mid-stream (SIGKILL) delivers the chunks before, "
        "then WorkerCrashedError naming the model and signal; a fresh worker serves the next "
        "prompt",
        (
            "an adapter bug (the process server): watch the worker's exit there and "
            "raise WorkerCrashedError (llm.ModelError) with the model, signal and stderr tail"
        ),
    ),
    ClauseInfo(
        "isolation.hard_cancel",
        "process isolation: a worker deaf to the stop (blocked in a read) is killed "
        "LLM_ASYNC_KILL_AFTER after a cancel and replaced",
        (
            "an adapter bug (the process server): after a stop, kill a worker still inside the "
            "model after LLM_ASYNC_KILL_AFTER seconds and start a fresh one for the next prompt"
        ),
    ),
    ClauseInfo(
        "isolation.warm_reuse",
        "process isolation: prompts one after another run in the same worker on one model "
        "instance (weights load once per worker)",
        (
            "an adapter bug (the process server): keep the worker and its one looked-up model "
            "instance for later prompts instead of starting or looking up per prompt"
        ),
    ),
    ClauseInfo(
        "isolation.process_state",
        "process isolation: fds 1/2, sys.stdout, logging, warning filters, environ, cwd and "
        "signal handlers a worker's model changes stay unchanged here, during and after",
        (
            "an adapter bug (the process server): start workers as fresh interpreters with their "
            "own fds 1/2, never run execute() in the serving process"
        ),
    ),
    ClauseInfo(
        "isolation.no_orphans",
        "process isolation: when the parent is SIGKILLed its worker exits within a few seconds",
        (
            "an adapter bug (the process server): set PR_SET_PDEATHSIG in the worker and exit on "
            "EOF of the parent's pipe"
        ),
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

CLAUSES: dict[str, ClauseInfo] = {info.id: info for info in _CATALOG}
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(info.group for info in CLAUSES.values()))


def order_key(clause_id: str) -> tuple[int, str]:
    """Sort clauses in catalog order; unknown ids go last, alphabetically."""
    ids = list(CLAUSES)
    return (ids.index(clause_id), "") if clause_id in CLAUSES else (len(ids), clause_id)


def group_of(clause_id: str) -> str:
    return clause_id.split(".", 1)[0]
