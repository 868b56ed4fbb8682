"""Snapshots of this process's threads, open file descriptors and child processes."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
