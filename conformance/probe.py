"""The instrument across a process boundary: the sync ``execute()`` in a worker, reported here.

In process isolation the adapter runs the model in a worker interpreter, where the suite's
in-process wrapper (:mod:`conformance.instrument`) never sees it.  The promise: every clause
reads the same :class:`~conformance.instrument.Record` objects in both modes.

* :class:`RemoteInstrument` (the test process) wraps ``execute`` here as before *and* listens
  on a Unix socket in a private (0700) temporary directory of its own, short enough for
  ``AF_UNIX`` paths (about 107 bytes); it announces itself to workers
  through the environment variable :data:`PROBE_ENV` (address, authentication key, model class).
* The adapter's worker calls :func:`worker_setup` after llm's plugins are loaded (the
  ``LLM_ASYNC_WORKER_SETUP`` hook).  It wraps the model class's ``execute`` in the worker: each
  call opens one connection, receives the current :class:`~conformance.instrument.Plan`,
  reports its arguments, every chunk and how it ended, and blocks on the test's gates through
  the connection (a blocking ``recv``, like a model stuck in C).  Each chunk is acknowledged
  before it is yielded, so a chunk the consumer holds is always in the record already, and
  the worker says when the generator resumes: ``Record.at_yield`` means the same in both
  modes, and the record of a killed worker says whether it died suspended at a ``yield``.
* Thread names carry the worker's pid (``MainThread@pid 1234``), so "ran on the event loop's
  thread" can never match a worker thread by accident.

Reseeding: a compared run seeds ``random`` (and numpy and torch when the worker imported them)
in the worker with the sample seed at the start of each ``execute``; a test class's own
``reseed()`` runs in the test process only.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from . import adapter
from .instrument import ARG_NAMES, PAD_CHUNK, Chunk, Instrument, Plan, Record

PROBE_ENV = "LLM_CONFORMANCE_PROBE"
WORKER_SETUP_ENV = "LLM_ASYNC_WORKER_SETUP"
WORKER_SETUP = "conformance.probe:worker_setup"


# -- what crosses the boundary --------------------------------------------------------------


def _portable(value: Any) -> Any:
    """``value`` if it pickles, else its repr (the record must never break the stream)."""
    try:
        pickle.dumps(value)
        return value
    except Exception:
        return repr(value)


@dataclass
class PromptSeen:
    """What the worker's ``execute()`` received as ``prompt`` (the fields clauses read)."""

    prompt: Any
    system: Any
    options: Any
    schema: Any
    attachments: list[Any]


@dataclass
class SeenResponse:
    """One earlier response of a conversation as the worker saw it."""

    text_value: Any
    text_error: str | None
    prompt: Any

    def text(self) -> Any:
        if self.text_error is not None:
            raise RuntimeError(f"in the worker: {self.text_error}")
        return self.text_value


def _seen_prompt(prompt: Any) -> Any:
    import llm

    if prompt is None:
        return None
    attachments = []
    for attachment in getattr(prompt, "attachments", None) or []:
        try:
            content = attachment.content_bytes()
        except Exception:
            content = None
        attachments.append(llm.Attachment(type=attachment.type, content=content))
    return PromptSeen(
        prompt=getattr(prompt, "prompt", None),
        system=getattr(prompt, "system", None),
        options=_portable(getattr(prompt, "options", None)),
        schema=_portable(getattr(prompt, "schema", None)),
        attachments=attachments,
    )


def _seen_conversation(conversation: Any) -> Any:
    import llm

    if conversation is None:
        return None
    kind = type(conversation)
    responses = []
    for response in list(getattr(conversation, "responses", []) or []):
        value, error = None, None
        try:
            value = _portable(response.text())
        except Exception as failure:
            error = f"{type(failure).__name__}: {failure}"
        responses.append(
            SeenResponse(value, error, PromptSeen(response.prompt.prompt, None, None, None, []))
        )
    sync = isinstance(conversation, llm.Conversation) and not isinstance(
        conversation, llm.AsyncConversation
    )
    return {
        "sync": sync,
        "class": kind.__qualname__,
        "id": getattr(conversation, "id", None),
        "responses": responses,
    }


def _rebuild_conversation(seen: dict[str, Any] | None) -> Any:
    """A stand-in with the class, id and history the worker saw (``isinstance`` holds as it did)."""
    import llm

    if seen is None:
        return None
    base = llm.Conversation if seen["sync"] else type(seen["class"], (), {})
    stand_in = object.__new__(base)
    vars(stand_in).update(id=seen["id"], responses=seen["responses"])
    return stand_in


def _seen_args(bound: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": _seen_prompt(bound.get("prompt")),
        "stream": bound.get("stream"),
        "conversation": _seen_conversation(bound.get("conversation")),
        "key": bound.get("key"),
    }


def _thread_label(pid: int | None = None) -> str:
    return f"{threading.current_thread().name}@pid {pid or os.getpid()}"


# -- the test process ----------------------------------------------------------------------


class RemoteInstrument(Instrument):
    """An :class:`Instrument` that also records the executes of the adapter's worker processes."""

    def __init__(self, model_class: type) -> None:
        super().__init__(model_class)
        self.directory: Path | None = None
        self.seed: int | None = None
        self.instances: list[tuple[int, int]] = []  # (pid, id(model instance)) per execute
        self._listener: Listener | None = None
        self._authkey = secrets.token_bytes(32)

    def announcement(self) -> dict[str, str]:
        """The environment a worker needs to report here (set for the run by the bench)."""
        assert self._listener is not None, "install() first"
        value = {
            "address": str(self._listener.address),
            "authkey": self._authkey.hex(),
            "class": f"{self.model_class.__module__}:{self.model_class.__qualname__}",
        }
        return {PROBE_ENV: json.dumps(value), WORKER_SETUP_ENV: WORKER_SETUP}

    def install(self) -> None:
        super().install()
        self.directory = Path(tempfile.mkdtemp(prefix="llm-probe-"))
        address = str(self.directory / "probe.sock")
        self._listener = Listener(address, family="AF_UNIX", authkey=self._authkey)
        threading.Thread(target=self._accept, name="llm-conformance-probe", daemon=True).start()

    def uninstall(self) -> None:
        super().uninstall()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def _accept(self) -> None:
        while self._listener is not None:
            try:
                connection = self._listener.accept()
            except Exception:  # closed by uninstall, or a peer failed authentication
                if self._listener is None:
                    return
                continue
            threading.Thread(
                target=self._serve, args=(connection,), name="llm-conformance-probe", daemon=True
            ).start()

    def _serve(self, connection: Connection) -> None:
        record: Record | None = None
        try:
            kind, info = connection.recv()
            if kind != "start":
                return
            with self.lock:
                plan = self.plan
                record = Record(len(self.records), info["thread"], 0, _rebuild(info["args"]))
                record.pid = info["pid"]
                self.records.append(record)
                self.instances.append((info["pid"], info["instance"]))
                self.active += 1
                self.max_active = max(self.max_active, self.active)
                self.lock.notify_all()
            connection.send(self._plan_message(plan))
            self._follow(connection, plan, record)
        except (EOFError, OSError):
            pass  # the worker died or was killed: the record ends as "lost"
        finally:
            connection.close()
            if record is not None and not record.done.is_set():
                if record.ended_by is None:
                    record.ended_by = "lost"
                with self.lock:
                    self.active -= 1
                    self.lock.notify_all()
                record.ended = time.monotonic()
                record.done.set()

    def _plan_message(self, plan: Plan) -> dict[str, Any]:
        error = None
        if plan.raise_after is not None and plan.error is not None:
            made = plan.error()
            try:
                error = pickle.dumps(made)
            except Exception:
                error = pickle.dumps(RuntimeError(f"{type(made).__name__}: {made}"))
        return {
            "hold_first": plan.hold_first is not None,
            "gate_after": plan.gate_after,
            "pad_to": plan.pad_to,
            "raise_after": plan.raise_after,
            "error": error,
            "stop_after": plan.stop_after,
            "synthetic": plan.synthetic,
            "wait_bound": plan.wait_bound,
            "meddle": plan.meddle,
            "seed": self.seed,
        }

    def _follow(self, connection: Connection, plan: Plan, record: Record) -> None:
        while True:
            kind, info = connection.recv()
            if kind == "chunk":
                record.chunks.append(Chunk(info["value"], info["thread"], info["at"]))
                record.padded = info["padded"]
                record.at_yield = True  # from the ack until the worker reports "resumed"
                connection.send(True)  # recorded before the chunk leaves the worker's execute()
            elif kind == "resumed":
                record.at_yield = False
            elif kind == "hold":
                assert plan.hold_first is not None
                released = plan.hold_first.wait(plan.wait_bound)
                record.gate_timed_out = record.gate_timed_out or not released
                connection.send(released)
            elif kind == "gate":
                record.gate_reached.set()
                released = plan.gate.wait(plan.wait_bound)
                record.gate_timed_out = record.gate_timed_out or not released
                # Whether the test stopped consuming before it opened the gate: the worker
                # then waits for the adapter's stop to arrive (see _await_stop).
                connection.send(record.stop_mark is not None)
            elif kind == "meddled":
                record.meddled = list(info)
            elif kind == "after_gate":
                record.cancelled_after_gate = info
            elif kind == "end":
                record.at_yield = False
                record.ended_by = record.ended_by or info["ended_by"]
                record.end_thread = info["thread"]
                record.cancelled_at_end = info["cancelled"]
                record.error = _unpickle(info["error"])
                record.real_close_error = _unpickle(info["close_error"])
                with self.lock:
                    self.active -= 1
                    self.lock.notify_all()
                record.ended = time.monotonic()
                record.done.set()
                connection.send(True)  # counted: the worker's execute() may return now
                return


def _rebuild(args: dict[str, Any]) -> dict[str, Any]:
    rebuilt = dict(args)
    rebuilt["conversation"] = _rebuild_conversation(args.get("conversation"))
    return rebuilt


def _unpickle(data: bytes | None) -> BaseException | None:
    if data is None:
        return None
    try:
        return pickle.loads(data)
    except Exception as error:
        return RuntimeError(f"(not rebuilt here: {error})")


def _pickled_error(error: BaseException | None) -> bytes | None:
    if error is None:
        return None
    try:
        data = pickle.dumps(error)
        pickle.loads(data)
        return data
    except Exception:
        return pickle.dumps(RuntimeError(f"{type(error).__name__}: {error}"))


# -- the worker process --------------------------------------------------------------------


def _import_class(spec: str) -> type:
    import importlib

    module_name, _, qualname = spec.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def _reseed(seed: int) -> None:
    import random

    random.seed(seed)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def _meddle(undo: list[Any]) -> list[str]:
    """Change this worker's process-wide state as gpt4all or llama.cpp bindings do while they
    stream; ``undo`` collects the restores (run at the end of the stream)."""
    import io
    import logging
    import signal
    import warnings

    done = []
    null = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        saved = os.dup(fd)
        os.dup2(null, fd)
        undo.append(lambda fd=fd, saved=saved: (os.dup2(saved, fd), os.close(saved)))
    os.close(null)
    done.append("fds 1/2 (to /dev/null)")
    streams = (sys.stdout, sys.stderr)
    sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
    undo.append(lambda: setattr(sys, "stdout", streams[0]) or setattr(sys, "stderr", streams[1]))
    done.append("sys.stdout/sys.stderr")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    logging.disable(logging.CRITICAL)
    undo.append(lambda: root.setLevel(level) or logging.disable(logging.NOTSET))
    done.append("logging levels")
    filters = list(warnings.filters)
    warnings.simplefilter("ignore")
    undo.append(lambda: warnings.filters.__setitem__(slice(None), filters))
    done.append("warning filters")
    os.environ["LLM_CONFORMANCE_MEDDLED"] = "1"
    undo.append(lambda: os.environ.pop("LLM_CONFORMANCE_MEDDLED", None))
    done.append("os.environ")
    cwd = os.getcwd()
    os.chdir(os.path.abspath(os.sep))
    undo.append(lambda: os.chdir(cwd))
    done.append("cwd")
    if threading.current_thread() is threading.main_thread():
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        undo.append(lambda: signal.signal(signal.SIGINT, handler))
        done.append("the SIGINT handler")
    return done


def worker_setup() -> None:
    """Wrap the announced model class's ``execute`` in this worker (no-op when not announced)."""
    raw = os.environ.get(PROBE_ENV)
    if not raw:
        return
    announced = json.loads(raw)
    model_class = _import_class(announced["class"])
    original = model_class.execute
    address, authkey = announced["address"], bytes.fromhex(announced["authkey"])

    def execute(model_self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        bound = dict(zip(ARG_NAMES, args, strict=False))
        bound.update(kwargs)
        return _run_remote(address, authkey, original, model_self, args, kwargs, bound)

    execute.__wrapped__ = original  # type: ignore[attr-defined]
    execute.__name__ = "execute"
    execute.__qualname__ = f"{model_class.__qualname__}.execute"
    model_class.execute = execute


HIGH_FD = 512
STOP_ARRIVAL_BOUND = 2.0
END_ACK_BOUND = 10.0  # the test process counts an ended execute well within this


def _await_stop() -> bool:
    """``cancelled()`` once the adapter's stop reached this worker (bounded); its value then.

    In a thread the stop is a flag set before the test opens the gate.  Here the stop is a
    frame on the adapter's channel and the gate a reply on the probe's: without this wait the
    model could race through its last chunks before the stop arrives, and the suite would blame
    the adapter for its own two channels.
    """
    deadline = time.monotonic() + STOP_ARRIVAL_BOUND
    pause = threading.Event()
    while not adapter.cancelled() and time.monotonic() < deadline:
        pause.wait(0.001)
    return bool(adapter.cancelled())


def _out_of_the_way(connection: Connection) -> Connection:
    """Move the probe's socket to a descriptor number far above the lowest free one.

    Models that close a descriptor twice (llm-gpt4all's output suppression closes a saved fd,
    then its file object closes the same number again when collected) hit whatever reused that
    number last; the instrument must not be what they hit, or the suite would report its own
    breakage as the model's.
    """
    import fcntl

    try:
        high = fcntl.fcntl(connection.fileno(), fcntl.F_DUPFD_CLOEXEC, HIGH_FD)
    except OSError:  # a low descriptor limit: keep the one we have
        return connection
    connection.close()
    return Connection(high)


def _run_remote(
    address: str,
    authkey: bytes,
    original: Any,
    model_self: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    bound: dict[str, Any],
) -> Iterator[Any]:
    connection = _out_of_the_way(Client(address, family="AF_UNIX", authkey=authkey))
    connection.send(
        (
            "start",
            {
                "pid": os.getpid(),
                "instance": id(model_self),
                "thread": _thread_label(),
                "args": _seen_args(bound),
            },
        )
    )
    plan = connection.recv()
    if plan["seed"] is not None:
        _reseed(plan["seed"])
    count, padded = 0, 0
    ended_by, error, close_error = None, None, None
    source: Any = None
    undo: list[Any] = []
    try:
        if plan["hold_first"]:
            connection.send(("hold", None))
            connection.recv()
        if plan["synthetic"] is not None:
            source = iter(plan["synthetic"])
        else:
            source = iter(original(model_self, *args, **kwargs))
        exhausted = False
        while True:
            if plan["raise_after"] is not None and count == plan["raise_after"] and plan["error"]:
                raise pickle.loads(plan["error"])
            if plan["stop_after"] is not None and count >= plan["stop_after"]:
                ended_by = "truncated"
                break
            if not exhausted:
                try:
                    value = next(source)
                except StopIteration:
                    exhausted = True
            if exhausted:
                if count >= plan["pad_to"]:
                    break
                value = PAD_CHUNK.format(count)
                padded += 1
            count += 1
            connection.send(
                (
                    "chunk",
                    {
                        "value": _portable(value),
                        "thread": _thread_label(),
                        "at": time.monotonic(),
                        "padded": padded,
                    },
                )
            )
            connection.recv()
            yield value
            connection.send(("resumed", None))  # no longer suspended at the yield
            if plan["meddle"] and count == 1:
                connection.send(("meddled", _meddle(undo)))
            if plan["gate_after"] is not None and count == plan["gate_after"]:
                connection.send(("gate", None))
                stopped = connection.recv()
                connection.send(("after_gate", _await_stop() if stopped else adapter.cancelled()))
        ended_by = ended_by or "exhausted"
    except GeneratorExit:
        ended_by = "close"
        raise
    except BaseException as failure:
        ended_by, error = "error", failure
        raise
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            try:
                close()
            except BaseException as failure:
                close_error = failure
        for restore in reversed(undo):
            restore()
        with contextlib.suppress(OSError, EOFError):  # the test process went away
            connection.send(
                (
                    "end",
                    {
                        "ended_by": ended_by,
                        "thread": _thread_label(),
                        "cancelled": adapter.cancelled(),
                        "error": _pickled_error(error),
                        "close_error": _pickled_error(close_error),
                    },
                )
            )
            # Wait for the test process to have counted this execute as ended: the adapter
            # may start the next execute as soon as this one returns, and its "start" comes
            # on another connection, served by another thread, which could otherwise be
            # counted first (two executes "at once" where the adapter ran them one by one).
            if connection.poll(END_ACK_BOUND):
                connection.recv()
        connection.close()
