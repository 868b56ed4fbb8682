"""Records of live worker processes in llm's user dir, so ``llm async workers`` run from another
process can list and stop them.

Contract:

* Each worker writes ``<llm user dir>/llm-async-workers/<pid>.json`` once it is ready and
  rewrites it (atomically) when a prompt starts and ends: pid, parent pid, model id, Python,
  start time, the kernel's start tick of the process, prompts served, busy, last active.
  Never a key or a prompt.  The directory is created with mode 0700.
* A record is believed only while its pid is alive, has the same kernel start tick, and runs
  this module's worker entry point; :func:`live_records` deletes every other record, so pids
  reused by unrelated processes are never reported or signalled.
* :func:`stop` signals only a verified worker: SIGTERM, then SIGKILL if it has not exited
  within ``grace`` seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

DIRNAME = "llm-async-workers"
WORKER_MARKER = "llm_all_models_async.process.worker"


@dataclasses.dataclass
class WorkerRecord:
    pid: int
    parent_pid: int
    model_id: str
    python: str
    started: float
    start_tick: str | None
    prompts_served: int = 0
    busy: bool = False
    last_active: float = 0.0

    def idle_seconds(self, now: float | None = None) -> float | None:
        """Seconds since the last prompt ended (None while a prompt runs)."""
        if self.busy:
            return None
        return max(0.0, (time.time() if now is None else now) - self.last_active)

    def rss_bytes(self) -> int | None:
        return rss_bytes(self.pid)


def records_dir() -> Path:
    import llm

    return Path(llm.user_dir()) / DIRNAME  # type: ignore[no-untyped-call]


def start_tick(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat); None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid`` from /proc (None when unknown)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def write(record: WorkerRecord) -> None:
    directory = records_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{record.pid}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(record)))
    os.replace(tmp, path)


def remove(pid: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        (records_dir() / f"{pid}.json").unlink()


def _read(path: Path) -> WorkerRecord | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return WorkerRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def is_live_worker(record: WorkerRecord) -> bool:
    """True when ``record``'s pid is still the worker that wrote it."""
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # not ours
    if not Path("/proc").is_dir():
        return True  # no way to check further off Linux
    if start_tick(record.pid) != record.start_tick:
        return False
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes()
    except OSError:
        return False
    return WORKER_MARKER.encode() in cmdline


def live_records() -> list[WorkerRecord]:
    """Records of workers alive now, by pid; stale records are deleted."""
    directory = records_dir()
    if not directory.is_dir():
        return []
    records = []
    for path in sorted(directory.glob("*.json")):
        record = _read(path)
        if record is None or not is_live_worker(record):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        records.append(record)
    return sorted(records, key=lambda r: r.pid)


def stop(record: WorkerRecord, grace: float = 5.0) -> bool:
    """Stop a verified worker; True once it is gone."""
    if not is_live_worker(record):
        remove(record.pid)
        return True
    os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(record.pid):
            remove(record.pid)
            return True
        time.sleep(0.02)  # polling another process's exit: there is nothing to wait on
    if is_live_worker(record):
        os.kill(record.pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(record.pid):
            remove(record.pid)
            return True
        time.sleep(0.02)
    return False


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"
