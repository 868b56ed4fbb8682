"""Start, talk to and stop benchmark worker processes, one per (adapter kind, environment)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from .contenders import KIND_ENV, REPO_ROOT


class WorkerError(RuntimeError):
    """A worker failed to start, crashed, or did not answer in time."""


def clean_environ(extra: dict[str, str], kind: str, user_dir: Path) -> dict[str, str]:
    """The environment of a worker: ours without ``LLM_ASYNC_*`` settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_ASYNC_")}
    for name in ("LLM_LOAD_PLUGINS", "BENCH_PLUGINS"):
        env.pop(name, None)
    if kind == "0.1":
        env.pop("PYTHONPATH", None)
    env.update(
        {
            KIND_ENV: kind,
            "LLM_USER_PATH": str(user_dir),
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class Worker:
    """One worker process; :meth:`call` sends a request and waits for its answer."""

    def __init__(
        self, python: str, kind: str, env: dict[str, str], log: Path, start_timeout: float = 120.0
    ) -> None:
        self.kind = kind
        self.log = log
        user_dir = Path(env.get("LLM_USER_PATH") or tempfile.mkdtemp(prefix="bench-user-"))
        user_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = open(log, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [python, "-m", "benchmarks.worker"],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            env=clean_environ(env, kind, user_dir),
        )
        hello = self._read(start_timeout)
        if not hello.get("ok"):
            self.close()
            raise WorkerError(hello.get("error", "worker failed to start"))
        self.hello: dict[str, Any] = hello["hello"]

    def _read(self, timeout: float) -> dict[str, Any]:
        stdout: IO[bytes] = self.proc.stdout  # type: ignore[assignment]
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise WorkerError(f"no answer within {timeout:g}s (log: {self.log})")
            ready, _, _ = select.select([stdout], [], [], remaining)
            if ready:
                line = stdout.readline()
                if not line:
                    code = self.proc.wait()
                    raise WorkerError(f"worker exited with code {code} (log: {self.log})")
                return json.loads(line)

    def call(
        self, family: str, contender: str, params: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Run one measurement in the worker and return its reply."""
        if self.proc.poll() is not None:
            raise WorkerError(f"worker is gone (log: {self.log})")
        request = {"family": family, "contender": contender, "params": params}
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        return self._read(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        """Ask the worker to quit, and kill it if it does not within a few seconds."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"quit": true}\n')
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self._log_file.close()


class Pool:
    """Workers keyed by (kind, environment), started on first use and stopped together."""

    def __init__(self, pythons: dict[str, str], logs: Path, user_dir: Path) -> None:
        self.pythons = pythons
        self.logs = logs
        self.user_dir = user_dir
        self.workers: dict[tuple[str, tuple[tuple[str, str], ...]], Worker] = {}
        self.failed: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        self.hellos: dict[str, dict[str, Any]] = {}
        self.sources: set[str] = set()

    def get(self, kind: str, env: tuple[tuple[str, str], ...]) -> Worker:
        key = (kind, env)
        if key in self.failed:
            raise WorkerError(self.failed[key])
        if key not in self.workers:
            python = self.pythons.get(kind)
            if python is None:
                self.failed[key] = f"no Python for adapter {kind}"
                raise WorkerError(self.failed[key])
            log = self.logs / f"worker-{kind}-{len(self.workers) + len(self.failed)}.log"
            extra = dict(env)
            extra.setdefault("LLM_USER_PATH", str(self.user_dir / f"{kind}-{len(self.workers)}"))
            try:
                self.workers[key] = Worker(python, kind, extra, log)
            except WorkerError as error:
                self.failed[key] = str(error)
                raise
            hello = self.workers[key].hello
            self.hellos.setdefault(kind, hello)
            if kind == "0.2" and hello.get("adapter_source_sha"):
                self.sources.add(hello["adapter_source_sha"])
        return self.workers[key]

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()
        self.workers.clear()
        self.failed.clear()
