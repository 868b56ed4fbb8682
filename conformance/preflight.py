"""The preflight: the sample prompt once through the sync model alone, before any clause.

A missing key, a server that is down, bad options or a plugin that crashes by itself make
every clause fail, several of them blaming the adapter.  The preflight runs the prompt the
way a user would, on llm's sync path in a child interpreter (so a segfaulting native library
is reported, not fatal), and the run stops with exit code 2 and one message naming the error
and how to fix it.
"""

from __future__ import annotations

from typing import Any

from .childrun import ChildResult, run_prompt

EXIT_CODE = 2
WORKER_KEY = "llm_conformance_preflight"  # xdist: the failure, sent to the controller
CONNECTION_WORDS = ("connection refused", "connecterror", "failed to establish", "connect call")


def _advice(result: ChildResult, sync_model: Any) -> str:
    outcome = result.outcome or {}
    kind, message = str(outcome.get("type", "")), str(outcome.get("message", ""))
    if result.signal_name:
        return (
            f"the sync path alone crashed (signal {result.signal_name}) — a plugin/native-"
            "library problem, not the adapter: check the plugin with `llm -m MODEL PROMPT`, "
            "and rebuild its native library for this machine (portable build flags)"
        )
    if result.returncode is None:
        return "the model did not answer: check its server, or make it faster (prompt_options)"
    if kind == "NeedsKeyException":
        env_var = getattr(sync_model, "key_env_var", None)
        where = f"set ${env_var} " if env_var else "set the key "
        return (
            f"{where}(env = {{...}} on the test class, or in the environment of the run; the "
            "run uses a temporary llm user directory)"
        )
    lowered = f"{kind} {message}".lower()
    if any(word in lowered for word in CONNECTION_WORDS):
        return "the model's server is not reachable: start it, or set it up with --llm-fixture"
    if kind == "ValidationError":
        return "the prompt options are invalid for this model: fix prompt_options"
    return (
        "fix the samples (prompt, prompt_options, system), the fixtures or the plugin's "
        "configuration; `llm -m MODEL PROMPT` shows the same failure without the suite"
    )


def _in_process(
    model_id: str, sync_model: Any, prompt: str, system: str | None, options: dict[str, Any]
) -> str | None:
    kwargs: dict[str, Any] = dict(options)
    if system is not None:
        kwargs["system"] = system
    try:
        sync_model.prompt(prompt, **kwargs).text()
    except Exception as error:
        outcome = {"ok": False, "type": type(error).__name__, "message": str(error)}
        result = ChildResult(1, outcome, "")
        return (
            f"llm conformance preflight: the sample prompt {prompt!r} on the sync model "
            f"{model_id!r} alone (llm's sync path, no adapter) failed: "
            f"{type(error).__name__}: {error}. No clause can give a verdict. To fix: "
            f"{_advice(result, sync_model)}."
        )
    return None


def failure(
    model_id: str, sync_model: Any, prompt: str, system: str | None, options: dict[str, Any]
) -> str | None:
    """None when the sample prompt works on the sync model, else the message to stop with."""
    result = run_prompt(model_id, prompt, mode="sync", system=system, options=options)
    if result.setup_failed:
        # The child cannot rebuild this process's hand-made plugin set-up: run it here.
        return _in_process(model_id, sync_model, prompt, system, options)
    if result.outcome is not None and result.outcome.get("ok"):
        # It answered.  A crash at exit afterwards is not a fixture problem: the clauses can
        # still judge the model, and process.exit reports the exit.
        return None
    detail = result.describe()
    if result.stderr_tail and (result.signal_name or result.outcome is None):
        detail += "; its stderr ends with: " + " ".join(result.stderr_tail.split())[-600:]
    return (
        f"llm conformance preflight: the sample prompt {prompt!r} on the sync model "
        f"{model_id!r} alone (llm's sync path, no adapter, in a child process) {detail}. "
        f"No clause can give a verdict. To fix: {_advice(result, sync_model)}."
    )
