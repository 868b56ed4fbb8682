"""What a result was measured on: Python, llm, the adapters, the machine and the work tree."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

from .contenders import REPO_ROOT


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _read(path: str) -> str | None:
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:
        return None


def cpuidle() -> str | None:
    """How idle CPUs wait (Linux): the cpuidle driver, and for ``haltpoll`` (a KVM guest) how
    long an idle vCPU polls before it halts.  A halted vCPU's wake-up is the cost of every
    blocking hand-over between threads (the ``wakeup`` family)."""
    driver = _read("/sys/devices/system/cpu/cpuidle/current_driver")
    if driver is None:
        return None
    poll_ns = _read("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
    if driver == "haltpoll" and poll_ns is not None:
        return f"{driver} (guest_halt_poll_ns={poll_ns})"
    return driver


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: how busy the machine was (others' work adds noise)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def describe() -> dict[str, Any]:
    """Facts about this machine and this interpreter, recorded with every result."""
    # Changes to tracked files only: an untracked file (a clone's .cache symlink) changes no
    # code that runs; the adapter's own source is recorded by digest (contenders.py).
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "llm": _version("llm"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": _memory_gib(),
        "load_average": load_average(),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "switch_interval_ms": sys.getswitchinterval() * 1000,
        "cpuidle": cpuidle(),
    }
