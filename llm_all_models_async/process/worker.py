"""A worker process's main: load llm's plugins as the parent did, look the model up once, then
serve the parent's prompts one at a time.

Contract:

* Started by the parent as a fresh interpreter (never a fork) with the numbers of its end of a
  private socketpair and of the parent's doorbell on the command line; nothing secret is in
  argv or in the environment.  It rings the doorbell after the frames the parent must read at
  once (``END``, ``TOOL_CALL``), when its socket is full and before it waits for credit; the
  parent reads fast chunks in batches.
* Dies with its parent: ``PR_SET_PDEATHSIG(SIGKILL)`` on Linux, and the thread reading the
  channel exits the process as soon as the channel reads EOF.  It ignores SIGINT: a Ctrl-C
  meant for the parent must not end up as an exception of the model.
* Loads plugins exactly as the parent: the same environment (``LLM_LOAD_PLUGINS``, the user
  dir) makes llm load the same entry points; plugins the parent registered by hand are imported
  from the paths the parent sent (with the parent's ``sys.path``) and registered under the same
  names; plugins the parent does not have are unregistered.  Then it looks the sync model up
  once and keeps that instance for every prompt, so weights load once per worker.
* Runs each prompt on its main thread.  It pulls a chunk from the generator only while it holds
  a credit (the parent grants ``LLM_ASYNC_BUFFER`` and one more per chunk consumed); waiting for
  credit longer than the stall timeout closes the stream.  A ``STOP`` makes it discard the chunk
  in flight and close the generator at its ``yield``; ``cancelled()`` turns True first.
* Reports how the generator ended in one ``END`` frame, after every ``CHUNK`` and ``OP``.
* Keeps its record for ``llm async workers`` (:mod:`.registry`) up to date from a thread of its
  own, so the prompt's path never waits for a file write.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from . import protocol, registry, wire


def main() -> None:
    channel_fd, parent_pid, bell_fd = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    _die_with_parent(parent_pid)
    # Ctrl-C in a terminal reaches the whole process group: the parent handles it (and
    # stops its streams); a worker must not turn it into the model's exception.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    connection = protocol.Connection(socket.socket(fileno=channel_fd), bell=bell_fd)
    try:
        kind, _, hello = connection.receive()
    except EOFError:
        os._exit(0)
    if kind != protocol.HELLO:
        os._exit(3)
    try:
        model = _load(hello)
        _setup_hook()
    except BaseException as error:
        connection.send(protocol.FAILED, 0, wire.encode_exception(error))
        connection.close()
        os._exit(0)
    Worker(connection, model, hello).run()


def _setup_hook() -> None:
    """``LLM_ASYNC_WORKER_SETUP=module:function``: called once in each worker after the model
    is looked up.  A seam for tools that must see ``execute()`` where it runs (the conformance
    suite's probe, :mod:`conformance.probe`); unset in normal use."""
    spec = os.environ.get("LLM_ASYNC_WORKER_SETUP")
    if not spec:
        return
    module_name, _, function = spec.partition(":")
    getattr(importlib.import_module(module_name), function or "setup")()


def _die_with_parent(parent_pid: int) -> None:
    """Get SIGKILL when the parent dies (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(0)


def _load(hello: dict[str, Any]) -> Any:
    """Load plugins as the parent has them; return the sync model instance."""
    sys.path[:] = hello["sys_path"]
    if hello["called_from_test"]:
        sys._called_from_test = True  # type: ignore[attr-defined]
    import llm
    from llm.plugins import load_plugins, pm

    load_plugins()  # type: ignore[no-untyped-call]
    wanted: list[tuple[str, str | None]] = hello["plugins"]
    for name, path in wanted:
        if pm.get_plugin(name) is not None:
            continue
        if path is None:
            raise ImportError(
                f"plugin {name!r} cannot be imported by the worker: it was registered from "
                "__main__ or as an instance; register a module or class from an importable "
                "module instead"
            )
        try:
            module_name, _, qualname = path.partition(":")
            plugin: Any = importlib.import_module(module_name)
            for part in filter(None, qualname.split(".")):
                plugin = getattr(plugin, part)
        except BaseException as error:
            raise ImportError(
                f"plugin {name!r} ({path}) failed to import in the worker: "
                f"{type(error).__name__}: {error}"
            ) from error
        if pm.is_registered(plugin):
            continue
        pm.register(plugin, name=name)
    keep = {name for name, _ in wanted}
    for name, plugin in list(pm.list_name_plugin()):
        if name not in keep and plugin is not None:
            pm.unregister(name=name)

    model_id, class_path = hello["model_id"], tuple(hello["model_class"])
    candidates = []
    for entry in llm.get_models_with_aliases():
        model = entry.model
        if model is None or str(model.model_id) != model_id:
            continue
        candidates.append(model)
        if (type(model).__module__, type(model).__qualname__) == class_path:
            return model
    if candidates:
        found = ", ".join(f"{type(m).__module__}.{type(m).__qualname__}" for m in candidates)
        raise LookupError(
            f"model {model_id!r} in the worker is {found}, not {'.'.join(class_path)}"
        )
    raise LookupError(
        f"the worker's plugins register no sync model {model_id!r} "
        f"(plugins loaded: {', '.join(sorted(keep)) or 'none'})"
    )


class Job:
    """One prompt's flow-control state, shared by the reader thread and the main thread."""

    def __init__(self, number: int, request: dict[str, Any]) -> None:
        self.number = number
        self.request = request
        # Two counters, each written by one thread only (granted: the reader; taken: the main
        # thread), so a credit is taken without the lock while any is left.
        self.granted: int = request["credits"]
        self.taken = 0
        self.stall_timeout: float | None = request["stall_timeout"]
        self.stopped = False
        self.stalled = False
        self.tool_replies: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self.changed = threading.Condition()
        # Called before waiting for credit: the parent may be reading in batches, and this
        # worker can do nothing until it has read what is sent.
        self.before_wait: Callable[[], None] = _nothing

    def grant(self, credits: int) -> None:
        with self.changed:
            self.granted += credits
            self.changed.notify_all()

    def stop(self) -> None:
        with self.changed:
            self.stopped = True
            self.changed.notify_all()
        self.tool_replies.put((False, None))

    def take_credit(self) -> bool:
        """Wait for a credit and take it; False when stopped (or stalled) first."""
        if self.granted > self.taken and not self.stopped:
            self.taken += 1
            return True
        if not self.stopped:
            self.before_wait()
        with self.changed:
            deadline = None
            if self.stall_timeout is not None:
                deadline = time.monotonic() + self.stall_timeout
            while self.granted <= self.taken and not self.stopped:
                if deadline is None:
                    self.changed.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.stalled = self.stopped = True
                    break
                self.changed.wait(remaining)
            if self.stopped:
                return False
            self.taken += 1
            return True


class Worker:
    """The serving loop of one worker process."""

    def __init__(self, connection: protocol.Connection, model: Any, hello: dict[str, Any]):
        self.connection = connection
        self.model = model
        self.model_id = str(hello["model_id"])
        self.jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.current: Job | None = None
        self.secrets: set[str] = set()
        self._record_changed = threading.Event()
        self.record = registry.WorkerRecord(
            pid=os.getpid(),
            parent_pid=os.getppid(),
            model_id=self.model_id,
            python=sys.executable,
            started=time.time(),
            start_tick=registry.start_tick(os.getpid()),
            last_active=time.time(),
        )

    def run(self) -> None:
        self._store_record()
        self.connection.send(protocol.READY, 0, {"pid": os.getpid()})
        threading.Thread(target=self._read, name="llm-async-channel", daemon=True).start()
        threading.Thread(target=self._record_keeper, name="llm-async-record", daemon=True).start()
        while True:
            self._serve(self.jobs.get())

    def _write_record(self) -> None:
        """Have the record rewritten, off the prompt's path (a file write per prompt start
        and end would delay first chunks)."""
        self._record_changed.set()

    def _record_keeper(self) -> None:
        while True:
            self._record_changed.wait()
            self._record_changed.clear()
            self._store_record()

    def _store_record(self) -> None:
        try:
            registry.write(dataclasses.replace(self.record))
        except OSError as error:
            sys.stderr.write(f"llm-async worker: cannot write its registry record: {error}\n")

    def _read(self) -> None:
        """Reader thread: route the parent's frames; the parent's end closing ends the process."""
        while True:
            try:
                kind, number, payload = self.connection.receive()
            except EOFError:
                registry.remove(os.getpid())
                os._exit(0)
            if kind == protocol.PROMPT:
                job = Job(number, payload)
                self.current = job
                self.jobs.put(job)
                continue
            job_ = self.current
            if job_ is None or job_.number != number:
                continue  # a frame for a prompt that has already ended
            if kind == protocol.CREDIT:
                job_.grant(int(payload))
            elif kind == protocol.STOP:
                job_.stop()
            elif kind == protocol.TOOL_RESULT:
                job_.tool_replies.put((True, payload))

    def _serve(self, job: Job) -> None:
        from .. import cancellation

        self.connection.send(protocol.STARTED, job.number)
        self.record.busy = True
        self._write_record()
        cancellation.bind(job)
        job.before_wait = self.connection.ring
        error: BaseException | None = None
        generator: Any = None
        request = job.request
        saved_key = getattr(self.model, "key", None)
        key: str | None = request["key"]
        for secret in (key, request["model_key"]):
            if secret:
                self.secrets.add(secret)
        try:
            if request["model_key"] is not None:
                self.model.key = request["model_key"]
            prompt = wire.decode_prompt(request["prompt"], self.model)
            conversation = wire.decode_conversation(request["conversation"], self.model)
            response = _make_response(self, job, prompt, conversation)
            extra = {"key": key} if request["passes_key"] else {}
            if job.stopped:
                return
            generator = self.model.execute(
                prompt, request["stream"], response, conversation, **extra
            )
            source = iter(generator)
            while job.take_credit():
                try:
                    chunk = next(source)
                except StopIteration:
                    break
                if job.stopped:
                    break
                response.record(chunk)
                self.connection.send(protocol.CHUNK, job.number, chunk)
            if not job.stopped:
                _close(generator)
                generator = None
                response.run_done_callbacks()
        except BaseException as exc:
            error = exc
        finally:
            if generator is not None:
                try:
                    _close(generator)
                except BaseException as exc:
                    if error is None and not job.stopped:
                        error = exc
                    else:
                        sys.stderr.write(f"model raised while closing: {exc!r}\n")
            if request["model_key"] is not None:
                self.model.key = saved_key
            cancellation.bind(None)
            outcome: dict[str, Any] = {"stalled": job.stalled, "error": None}
            if error is not None and not job.stopped:
                outcome["error"] = wire.encode_exception(error, self.secrets)
            del error, generator
            self.record.busy = False
            self.record.prompts_served += 1
            self.record.last_active = time.time()
            self._write_record()
            self.current = None
            self.connection.send(protocol.END, job.number, outcome, ring=True)


def _nothing() -> None:
    pass


def _close(generator: Any) -> None:
    close = getattr(generator, "close", None)
    if close is None:
        return
    try:
        close()
    except RuntimeError as error:  # "generator ignored GeneratorExit"
        sys.stderr.write(f"model did not close cleanly: {error}\n")


def _make_response(worker: Worker, job: Job, prompt: Any, conversation: Any) -> Any:
    from .remote_response import RemoteResponse

    def send_op(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        worker.connection.send(protocol.OP, job.number, (name, args, kwargs))

    def call_tool(tool_call: Any) -> Any:
        worker.connection.send(protocol.TOOL_CALL, job.number, tool_call, ring=True)
        delivered, reply = job.tool_replies.get()
        if not delivered:
            raise RuntimeError("the stream was stopped while its tool call ran in the parent")
        ok, value = reply
        if not ok:
            raise wire.decode_exception(value, worker.model_id)
        return value

    return RemoteResponse(
        prompt, worker.model, job.request["stream"], conversation, send_op, call_tool
    )


if __name__ == "__main__":
    main()
