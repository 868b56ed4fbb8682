"""The parent's handle on one worker process: start it, read its channel and its fds 1 and 2,
notice its death, kill it.

Contract:

* Workers are started by one long-lived spawner thread: Linux's parent-death signal fires when
  the *thread* that forked the child ends, so no short-lived thread may start one.  A worker is
  ``sys.executable`` with the parent's interpreter flags, run on this package's worker module;
  its environment is the parent's, unchanged; its end of a socketpair and the write end of
  this handle's doorbell pipe are passed with ``pass_fds`` and only their numbers are on the
  command line.
* One reader thread per worker routes each frame to the :class:`JobSink` of the prompt it
  belongs to.  While a prompt's chunks come less than ``gil.BATCH_EVERY`` apart it reads
  them in batches, every ``BATCH_EVERY``, instead of waiting in a receive: each chunk then
  costs the worker a system call but no wake-up of this thread (about 50 µs at the median and
  1 ms at p99 on a VM, where the worker's tokens take 1-2 ms).  The first chunk, and the first
  after a pause, is read at once.  When the channel reads EOF the worker is reaped and, if a
  prompt was running, its sink gets a :class:`~llm_all_models_async.errors.WorkerCrashedError`
  (after every chunk the worker sent before it died), naming the exit code or signal and the
  tail of the worker's stderr.
* fds 1 and 2 of the worker are pipes: one thread per pipe passes each line (cut at 4 KiB) to
  the ``llm_all_models_async`` logger with keys redacted, and the last 20 stderr lines are kept
  for the crash report.  Nothing the worker does to its fds reaches the parent's.
* :meth:`WorkerProcess.kill` sends SIGKILL; :meth:`WorkerProcess.close` shuts the channel, and
  the worker exits on EOF.  Neither blocks.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

from ..errors import WorkerCrashedError, WorkerStartError
from ..gil import BATCH_EVERY
from . import protocol, registry, wire
from .timers import Scheduled

logger = logging.getLogger("llm_all_models_async")

STDERR_TAIL_LINES = 20
LINE_LIMIT = 4096
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)
_BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    f"from {registry.WORKER_MARKER} import main; main()"
)


class JobSink(Protocol):
    """What a worker reports a running prompt's events to (called on its reader thread)."""

    def on_started(self) -> None: ...

    def on_chunk(self, chunk: Any) -> None: ...

    def on_op(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None: ...

    def on_tool_call(self, number: int, tool_call: Any) -> None:
        """``number``: the prompt the call came from, which its reply must carry."""

    def on_end(self, outcome: dict[str, Any]) -> None: ...

    def on_crash(self, error: WorkerCrashedError) -> None: ...


class _Spawner:
    """The one long-lived thread that forks every worker (see the module contract)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]
        self._jobs = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="llm-async-spawner", daemon=True
                )
                self._thread.start()
        self._jobs.put((fn, future))
        return future

    def _run(self) -> None:
        while True:
            fn, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as error:
                future.set_exception(error)


_spawner = _Spawner()


def plugin_paths() -> list[tuple[str, str | None]]:
    """Every plugin the parent has registered, by name, with an import path for the worker."""
    from llm.plugins import pm

    plugins = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        module = getattr(plugin, "__module__", None)
        if isinstance(plugin, type(sys)):
            path: str | None = plugin.__name__
        elif isinstance(plugin, type) and module:
            path = f"{module}:{plugin.__qualname__}"
        else:
            path = None
        if path is not None and path.partition(":")[0] == "__main__":
            path = None  # a script's namespace: the worker runs another __main__
        plugins.append((name, path))
    return plugins


class WorkerProcess:
    """One worker process of one model (see the module contract)."""

    def __init__(self, model_id: str, model_class: tuple[str, str]) -> None:
        self.model_id = model_id
        self.model_class = model_class
        self.python = sys.executable
        self.pid = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.connection: protocol.Connection | None = None
        self._bell: protocol.Doorbell | None = None
        self.ready: concurrent.futures.Future[WorkerProcess] = concurrent.futures.Future()
        self.exited = threading.Event()
        self.returncode: int | None = None
        self.closing = False
        self.channel_closed = False
        self.secrets: set[str] = set()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.prompts_started = 0
        self.on_exit: Callable[[WorkerProcess], None] | None = None
        self.on_job_end: Callable[[WorkerProcess], None] | None = None
        self.retire_timer: Scheduled | None = None
        self._lock = threading.Lock()
        self._sink: JobSink | None = None
        self._job = 0
        self._pumps: list[threading.Thread] = []

    # -- start ---------------------------------------------------------------------------

    def start(self) -> concurrent.futures.Future[WorkerProcess]:
        """Spawn the worker; the returned future resolves once it has loaded its model."""
        spawned = _spawner.submit(self._spawn)

        def after_spawn(done: concurrent.futures.Future[Any]) -> None:
            error = done.exception()
            if error is not None and not self.ready.done():
                self.ready.set_exception(error)

        spawned.add_done_callback(after_spawn)
        return self.ready

    def _spawn(self) -> None:
        python = self.python
        if not python:
            raise WorkerStartError(self.model_id, "(none)", "sys.executable is empty")
        parent_end, child_end = socket.socketpair()
        bell = self._bell = protocol.Doorbell()
        argv = [
            python,
            *subprocess._args_from_interpreter_flags(),  # type: ignore[attr-defined]
            "-c",
            _BOOTSTRAP,
            _PACKAGE_ROOT,
            str(child_end.fileno()),
            str(os.getpid()),
            str(bell.write_end),
        ]
        try:
            self.process = subprocess.Popen(
                argv,
                pass_fds=(child_end.fileno(), bell.write_end),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as error:
            parent_end.close()
            bell.close()
            raise WorkerStartError(
                self.model_id, python, f"{type(error).__name__}: {error}"
            ) from None
        finally:
            child_end.close()
            bell.close_write_end()
        self.pid = self.process.pid
        self.connection = protocol.Connection(parent_end)
        assert self.process.stdout is not None and self.process.stderr is not None
        for pipe, name in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr")):
            pump = threading.Thread(
                target=self._pump, args=(pipe, name), name=f"llm-async-{name}", daemon=True
            )
            pump.start()
            self._pumps.append(pump)
        threading.Thread(target=self._read, name="llm-async-reader", daemon=True).start()
        from llm.plugins import pm  # noqa: F401  (plugins are loaded by now)

        hello = {
            "sys_path": list(sys.path),
            "called_from_test": hasattr(sys, "_called_from_test"),
            "plugins": plugin_paths(),
            "model_id": self.model_id,
            "model_class": list(self.model_class),
        }
        with contextlib.suppress(OSError):  # a dead worker is reported by the reader
            self.connection.send(protocol.HELLO, 0, hello)

    # -- prompts -------------------------------------------------------------------------

    def begin(self, sink: JobSink, request: dict[str, Any]) -> int | None:
        """Send a prompt; its number, or None if this worker has died meanwhile."""
        with self._lock:
            if self.channel_closed or self.closing or self.connection is None:
                return None
            self.prompts_started += 1
            self._job += 1
            number = self._job
            self._sink = sink
            for secret in (request.get("key"), request.get("model_key")):
                if secret:
                    self.secrets.add(secret)
        with contextlib.suppress(OSError):  # the reader reports the crash to the sink
            self.connection.send(protocol.PROMPT, number, request)
        return number

    def send(self, kind: str, number: int, payload: Any = None) -> None:
        """A frame for prompt ``number``; dropped when that prompt has ended or the worker died."""
        connection = self.connection
        if connection is None or number != self._job or self.exited.is_set():
            return
        with contextlib.suppress(OSError):
            connection.send(kind, number, payload)

    def is_running(self) -> bool:
        """False once the process has ended, even before the reader noticed."""
        process = self.process
        if self.channel_closed or process is None:
            return False
        return process.poll() is None

    def kill(self) -> None:
        process = self.process
        if process is not None and not self.exited.is_set():
            with contextlib.suppress(OSError):
                process.send_signal(signal.SIGKILL)

    def close(self) -> None:
        """Ask the worker to exit (it exits when its channel reads EOF)."""
        self.closing = True
        if self.retire_timer is not None:
            self.retire_timer.cancel()
        if self.connection is not None:
            self.connection.close()

    # -- threads -------------------------------------------------------------------------

    def _read(self) -> None:
        connection, bell = self.connection, self._bell
        assert connection is not None and bell is not None
        batching = False  # chunks come close together: collect them, unannounced
        last_chunk = -BATCH_EVERY
        try:
            while True:
                # What is there already costs nobody a wake-up: the worker keeps sending
                # while this thread reads, as long as there is something to read.
                frames = connection.receive_ready(wait=False)
                if not frames and batching:
                    # The worker's sends wake nobody while this thread sleeps on the
                    # doorbell (see protocol.py): a chunk costs it a system call, not a
                    # wake-up.  It rings for the end of the prompt, a tool call, and when
                    # it cannot go on until this thread has read.
                    bell.wait(BATCH_EVERY)
                    frames = connection.receive_ready(wait=False)
                    if not any(frame[0] == protocol.CHUNK for frame in frames):
                        batching = False  # a pause: wait for each frame again
                elif not frames:
                    frames = connection.receive_ready(wait=True)
                if not batching and any(frame[0] == protocol.CHUNK for frame in frames):
                    now = time.monotonic()
                    batching = now - last_chunk < BATCH_EVERY
                    last_chunk = now
                for frame in frames:
                    if self._route(*frame):
                        batching = False  # the prompt ended: its next one starts unbatched
                        last_chunk = -BATCH_EVERY
        except EOFError:
            pass
        except BaseException:
            logger.exception(
                "llm-async: reading worker %d of model %r failed", self.pid, self.model_id
            )
            self.kill()
        with self._lock:
            self.channel_closed = True  # from now on begin() refuses new prompts
        bell.close()
        self._reap()

    def _route(self, kind: str, number: int, payload: Any) -> bool:
        """Hand one frame to whoever waits for it; True when it ended a prompt."""
        if kind == protocol.READY:
            self.ready.set_result(self)
            return False
        if kind == protocol.FAILED:
            reason = wire.decode_exception(payload, self.model_id)
            self.ready.set_exception(WorkerStartError(self.model_id, self.python, str(reason)))
            return False
        with self._lock:
            sink = self._sink if number == self._job else None
            if kind == protocol.END and sink is not None:
                self._sink = None
        if sink is None:
            return kind == protocol.END
        if kind == protocol.CHUNK:
            sink.on_chunk(payload)
        elif kind == protocol.STARTED:
            sink.on_started()
        elif kind == protocol.OP:
            name, args, kwargs = payload
            sink.on_op(name, args, kwargs)
        elif kind == protocol.TOOL_CALL:
            sink.on_tool_call(number, payload)
        elif kind == protocol.END:
            if self.on_job_end is not None:
                self.on_job_end(self)
            sink.on_end(payload)
            return True
        return False

    def _reap(self) -> None:
        process = self.process
        assert process is not None
        try:
            self.returncode = process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            self.returncode = process.wait()
        for pump in self._pumps:
            pump.join(timeout=1)
        with self._lock:
            self.exited.set()
            sink, self._sink = self._sink, None
        registry.remove(self.pid)
        if self.retire_timer is not None:
            self.retire_timer.cancel()
        error = WorkerCrashedError(self.model_id, self.pid, self.returncode, list(self.stderr_tail))
        if not self.ready.done():
            self.ready.set_exception(
                WorkerStartError(
                    self.model_id,
                    self.python,
                    f"the worker exited before it was ready ({error.how}); "
                    f"last lines of its stderr:\n{error.tail_text}",
                )
            )
        elif sink is None and not self.closing:
            logger.warning("llm-async: idle %s", error)
        if self.on_exit is not None:
            self.on_exit(self)
        if sink is not None:
            sink.on_crash(error)

    def _pump(self, pipe: IO[bytes], name: str) -> None:
        keep = name == "stderr"
        with pipe:
            while True:
                raw = pipe.readline(LINE_LIMIT)
                if not raw:
                    return
                line = wire.redact(raw.decode(errors="replace").rstrip("\r\n"), self.secrets)
                if keep:
                    self.stderr_tail.append(line)
                logger.info("worker %d (%s) %s: %s", self.pid, self.model_id, name, line)
