"""One prompt in a child interpreter: the preflight's sync run and the ``process.exit`` clause.

A child sees what this process sees (environment, user dir, working directory, ``sys.path``
and the plugins registered by hand rather than by entry point, e.g. in a conftest), so it runs
the model exactly as a clause would, but a crash (a segfault in a native library, an abort at
exit) ends the child, not the run, and shows up as its exit status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import types
from dataclasses import dataclass
from typing import Any

RESULT_MARK = "llm-conformance-child-result:"
CHILD_BOUND = 300.0

_CHILD = r"""
import asyncio, importlib, json, sys
spec = json.loads(sys.argv[1])
for entry in reversed(spec["sys_path"]):
    if entry not in sys.path:
        sys.path.insert(0, entry)
def report(data):
    sys.stdout.write("\n" + spec["mark"] + json.dumps(data) + "\n")
    sys.stdout.flush()
try:
    import llm
    for name, target in spec["plugins"]:
        module_name, _, attribute = target.partition(":")
        plugin = importlib.import_module(module_name)
        for part in filter(None, attribute.split(".")):
            plugin = getattr(plugin, part)
        if not llm.plugins.pm.is_registered(plugin) and llm.plugins.pm.get_plugin(name) is None:
            llm.plugins.pm.register(plugin, name=name)
except Exception as error:
    report({"ok": False, "setup": True, "type": type(error).__name__,
            "module": type(error).__module__, "message": str(error)})
    sys.exit(1)
kwargs = dict(spec["options"])
if spec["system"] is not None:
    kwargs["system"] = spec["system"]
kept = []  # the abandoned response stays referenced until the interpreter exits
try:
    if spec["mode"] == "sync":
        model = llm.get_model(spec["model_id"])
        text = model.prompt(spec["prompt"], **kwargs).text()
        if spec["abandon"]:
            kept.append(model.prompt(spec["prompt"], **kwargs))
            for chunk in kept[-1]:
                break
    else:
        async def main():
            model = llm.get_async_model(spec["model_id"])
            text = await model.prompt(spec["prompt"], **kwargs).text()
            if spec["abandon"]:
                kept.append(model.prompt(spec["prompt"], **kwargs))
                async for chunk in kept[-1]:
                    break
            return text
        text = asyncio.run(main())
except Exception as error:
    report({"ok": False, "type": type(error).__name__, "module": type(error).__module__,
            "message": str(error)})
    sys.exit(1)
report({"ok": True, "chars": len(text)})
"""


@dataclass
class ChildResult:
    """How the child ended: its exit status, the prompt's outcome, the tail of its stderr."""

    returncode: int | None  # None: it did not end within the bound
    outcome: dict[str, Any] | None
    stderr_tail: str

    @property
    def setup_failed(self) -> bool:
        """The child could not load the plugins this process registered by hand."""
        return bool(self.outcome and self.outcome.get("setup"))

    @property
    def signal_name(self) -> str | None:
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"

    def describe(self) -> str:
        """The child's end in one line."""
        if self.returncode is None:
            return f"did not finish within {CHILD_BOUND:g}s"
        if self.signal_name:
            return f"was killed by {self.signal_name}"
        if self.outcome is not None and not self.outcome.get("ok"):
            return f"failed: {self.outcome['type']}: {self.outcome['message']}"
        return f"exited with status {self.returncode}"


def hand_registered_plugins() -> list[tuple[str, str]]:
    """``(name, "module[:attribute]")`` of llm plugins registered by hand, not by entry point."""
    import llm

    manager = llm.plugins.pm
    from_entry_points = {id(plugin) for plugin, _ in manager.list_plugin_distinfo()}
    found = []
    for plugin in manager.get_plugins():
        name = manager.get_name(plugin)
        if id(plugin) in from_entry_points or name is None:
            continue
        if isinstance(plugin, types.ModuleType):
            target = plugin.__name__
        elif isinstance(plugin, type):
            target = f"{plugin.__module__}:{plugin.__qualname__}"
        else:
            continue
        if target.startswith("llm.") or target.split(":")[0] == "__main__":
            continue  # llm's own default plugins load in the child by themselves
        found.append((name, target))
    return found


def run_prompt(
    model_id: str,
    prompt: str,
    *,
    mode: str,
    system: str | None = None,
    options: dict[str, Any] | None = None,
    timeout: float = CHILD_BOUND,
    abandon: bool = False,
) -> ChildResult:
    """Run one prompt (``mode`` "sync" or "async") in a fresh interpreter and wait for it.

    ``abandon``: then start a second prompt and leave it after its first chunk, still
    referenced, so the interpreter exits while the model may still be generating it.
    """
    spec = {
        "model_id": model_id,
        "prompt": prompt,
        "system": system,
        "options": dict(options or {}),
        "mode": mode,
        "abandon": abandon,
        "plugins": hand_registered_plugins(),
        "sys_path": [entry for entry in sys.path if entry],
        "mark": RESULT_MARK,
    }
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(spec)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=dict(os.environ),
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        stderr = expired.stderr.decode(errors="replace") if expired.stderr else ""
        return ChildResult(None, None, stderr[-2000:])
    outcome = None
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            outcome = json.loads(line[len(RESULT_MARK) :])
    return ChildResult(done.returncode, outcome, done.stderr[-2000:])
