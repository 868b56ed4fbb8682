"""Snapshots of this process's threads, open fds, child processes and process-wide state."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC_SELF_FD = Path("/proc/self/fd")


@dataclass(frozen=True)
class Snapshot:
    threads: dict[int, str]
    fds: dict[int, str] | None  # fd -> what it points to; None without /proc
    children: dict[int, str] | None  # pid -> command; None without /proc

    @classmethod
    def take(cls) -> Snapshot:
        return cls(live_threads(), open_fds(), child_processes())


def live_threads() -> dict[int, str]:
    return {t.ident or 0: t.name for t in threading.enumerate() if t.is_alive()}


def open_fds() -> dict[int, str] | None:
    if not PROC_SELF_FD.is_dir():
        return None
    out: dict[int, str] = {}
    for entry in os.listdir(PROC_SELF_FD):
        try:
            out[int(entry)] = os.readlink(PROC_SELF_FD / entry)
        except OSError:  # the fd used by listdir itself, already closed
            continue
    return out


def child_processes() -> dict[int, str] | None:
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    me = os.getpid()
    out: dict[int, str] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may contain spaces, so split after the last ')'
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) >= 2 and fields[0] != "Z" and int(fields[1]) == me:
            out[int(entry.name)] = stat.split("(", 1)[-1].rsplit(")", 1)[0]
    return out


def new_threads(before: Snapshot) -> dict[int, str]:
    now = live_threads()
    return {ident: name for ident, name in now.items() if ident not in before.threads}


def new_fds(before: Snapshot) -> dict[int, str]:
    now = open_fds()
    if now is None or before.fds is None:
        return {}
    return {
        fd: target for fd, target in now.items() if fd not in before.fds or before.fds[fd] != target
    }


def new_children(before: Snapshot) -> dict[int, str]:
    now = child_processes()
    if now is None or before.children is None:
        return {}
    return {pid: name for pid, name in now.items() if pid not in before.children}


def fd_identity(fd: int) -> tuple[int, int] | None:
    """(device, inode) of what ``fd`` points to; None when it is closed."""
    try:
        stat = os.fstat(fd)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def describe_fd(fd: int) -> str:
    try:
        return os.readlink(PROC_SELF_FD / str(fd))
    except OSError:
        identity = fd_identity(fd)
        return "closed" if identity is None else f"device {identity[0]} inode {identity[1]}"


@contextlib.contextmanager
def stdio_kept() -> Iterator[None]:
    """Put fds 1 and 2 back as they were on exit.

    A model that redirects them (gpt4all, llama.cpp) must not leave one clause's damage for the
    next, where ``concurrency.stdio`` would compare against an already broken fd.
    """
    saved = {fd: os.dup(fd) for fd in (1, 2) if fd_identity(fd) is not None}
    before = {fd: fd_identity(fd) for fd in saved}
    try:
        yield
    finally:
        for fd, copy in saved.items():
            if fd_identity(fd) != before[fd]:
                os.dup2(copy, fd)
            os.close(copy)


# -- process-wide state a model must not touch while it runs -----------------------------


def _logging_levels() -> dict[str, tuple[int, bool]]:
    """(level, disabled) of the root logger and every logger created so far."""
    levels = {"<root>": (logging.root.level, logging.root.disabled)}
    for name, found in list(logging.root.manager.loggerDict.items()):
        if isinstance(found, logging.Logger):
            levels[name] = (found.level, found.disabled)
    levels["<logging.disable>"] = (logging.root.manager.disable, False)
    return levels


def _signal_handlers() -> dict[str, Any]:
    handlers = {}
    for number in sorted(signal.valid_signals()):
        try:
            handlers[signal.Signals(number).name] = signal.getsignal(number)
        except (ValueError, OSError):
            continue
    return handlers


@dataclass(frozen=True)
class ProcessState:
    """What every thread of the process shares and a model could change while it runs."""

    fds: dict[int, tuple[tuple[int, int] | None, str]]  # fd -> (identity, description)
    stdout: Any
    stderr: Any
    logging: dict[str, tuple[int, bool]]
    warning_filters: tuple[Any, ...]
    environ: dict[str, str]
    cwd: str
    signals: dict[str, Any]

    @classmethod
    def take(cls) -> ProcessState:
        try:
            cwd = os.getcwd()
        except OSError as error:
            cwd = f"<unreadable: {error}>"
        return cls(
            fds={fd: (fd_identity(fd), describe_fd(fd)) for fd in (1, 2)},
            stdout=sys.stdout,
            stderr=sys.stderr,
            logging=_logging_levels(),
            warning_filters=tuple(warnings.filters),
            environ=dict(os.environ),
            cwd=cwd,
            signals=_signal_handlers(),
        )

    def changes_since(self, before: ProcessState) -> list[str]:
        """What differs from ``before``, one line per change (new loggers do not count)."""
        found = []
        for fd, name in ((1, "stdout"), (2, "stderr")):
            if self.fds[fd][0] != before.fds[fd][0]:
                found.append(
                    f"fd {fd} ({name}) pointed to {self.fds[fd][1]} instead of {before.fds[fd][1]}"
                )
        if self.stdout is not before.stdout:
            found.append(f"sys.stdout was replaced by {self.stdout!r}")
        if self.stderr is not before.stderr:
            found.append(f"sys.stderr was replaced by {self.stderr!r}")
        for name, (level, disabled) in self.logging.items():
            old = before.logging.get(name)
            if old is not None and old != (level, disabled):
                found.append(
                    f"logger {name}: level {logging.getLevelName(old[0])} -> "
                    f"{logging.getLevelName(level)}" + (", disabled" if disabled else "")
                )
        if self.warning_filters != before.warning_filters:
            found.append(
                f"warning filters changed ({len(before.warning_filters)} -> "
                f"{len(self.warning_filters)} entries)"
            )
        keys = sorted(set(self.environ) | set(before.environ))
        changed = [k for k in keys if self.environ.get(k) != before.environ.get(k)]
        if changed:
            found.append(f"os.environ changed: {', '.join(changed)}")
        if self.cwd != before.cwd:
            found.append(f"the working directory changed from {before.cwd} to {self.cwd}")
        moved = [n for n, h in self.signals.items() if before.signals.get(n) is not h]
        if moved:
            found.append(f"signal handlers changed: {', '.join(moved)}")
        return found

    def restore(self) -> None:
        """Put everything back (fds 1/2 are restored by :func:`stdio_kept`)."""
        sys.stdout, sys.stderr = self.stdout, self.stderr
        for name, (level, disabled) in self.logging.items():
            if name == "<logging.disable>":
                logging.disable(level)
                continue
            logger = logging.root if name == "<root>" else logging.getLogger(name)
            logger.setLevel(level)
            logger.disabled = disabled
        warnings.filters[:] = list(self.warning_filters)
        if dict(os.environ) != self.environ:
            os.environ.clear()
            os.environ.update(self.environ)
        with contextlib.suppress(OSError):
            if os.getcwd() != self.cwd:
                os.chdir(self.cwd)
        if threading.current_thread() is threading.main_thread():
            for name, handler in self.signals.items():
                if handler is not None and signal.getsignal(signal.Signals[name]) is not handler:
                    with contextlib.suppress(OSError, ValueError, TypeError):
                        signal.signal(signal.Signals[name], handler)
