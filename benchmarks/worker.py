"""A benchmark worker process: answers one JSON request per line with one measurement.

Started by the orchestrator as ``python -m benchmarks.worker`` in this interpreter (adapter
0.2) or in the 0.1 adapter's own virtual environment. The first line it writes describes the
process (Python, llm, adapter); every later line answers one request
``{"family", "contender", "params"}`` with ``{"ok": true, "result": {...}}`` or an error.
Anything a model prints goes to stderr: stdout carries only the protocol.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import os
import sys
import traceback
from typing import Any, TextIO


def _protocol_stream() -> TextIO:
    """Keep the real stdout for the protocol and send fd 1 (and ``print``) to stderr."""
    stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def _send(stream: TextIO, message: dict[str, Any]) -> None:
    stream.write(json.dumps(message, default=str) + "\n")
    stream.flush()


def main() -> int:
    out = _protocol_stream()
    from . import contenders

    kind = os.environ.get(contenders.KIND_ENV, "0.2")
    try:
        info = contenders.prepare(kind)
    except Exception as error:
        _send(
            out,
            {
                "ok": False,
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            },
        )
        return 1
    from . import families
    from .spec import Unsupported

    # Everything imported so far lives as long as the process: keep it out of the collector,
    # so a gc.collect() inside a measurement costs what the measured objects cost.
    gc.collect()
    gc.freeze()
    _send(out, {"ok": True, "hello": info})

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("quit"):
            break
        try:
            family = families.BY_NAME[request["family"]]
            outcome = family.measure(request["contender"], request["params"])
            if inspect.isawaitable(outcome):
                outcome = loop.run_until_complete(outcome)
            reply = {"ok": True, "result": outcome, "options_patched": contenders.options_patched()}
        except Unsupported as error:
            reply = {"ok": False, "unsupported": str(error)}
        except Exception as error:
            sys.stderr.write(traceback.format_exc())
            reply = {
                "ok": False,
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            }
        gc.collect()
        _send(out, reply)
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
