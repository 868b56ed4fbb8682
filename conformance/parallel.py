"""Running the suite under pytest-xdist: alone-clauses get the machine to themselves.

Workers are separate processes, so a clause's threads, fds and ``sys.stdout`` are its own
worker's; what other workers can still disturb is time (a loop-lag or stall measurement on a
busy CPU) and the machine's shared state. Clauses in :data:`ALONE_GROUPS` therefore run alone:
every clause holds a shared lock on one file per run while it runs, an alone-clause holds it
exclusively, so it starts only when no other worker is inside a clause and none starts until
it ends. A second "turnstile" lock keeps new clauses from overtaking a waiting alone-clause.

Outside xdist nothing here does anything: a serial run has no one to wait for.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Groups whose clauses measure time (cancellation: release within a second), the loop's lag,
# fds 1/2 or other process-wide state.
ALONE_GROUPS = frozenset({"loop", "concurrency", "timeouts", "hygiene", "cancellation"})


def runs_alone(clause_id: str) -> bool:
    """Whether ``clause_id`` must not share the machine with other workers' clauses."""
    return clause_id.split(".", 1)[0] in ALONE_GROUPS or "stdio" in clause_id


def lock_path(config: Any) -> Path | None:
    """The run's lock file on an xdist worker, else None.

    Workers' temporary directories sit side by side in the controller's (``popen-gwN``), so
    the file goes beside them and pytest's own retention removes it with the run.
    """
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return None
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None:
        return Path(factory.getbasetemp()).parent / "llm-conformance.lock"
    run_id = str(workerinput.get("testrunuid", "run"))
    return Path(tempfile.gettempdir()) / f"llm-conformance-{run_id}.lock"


@contextmanager
def turn(path: Path | None, *, alone: bool) -> Iterator[None]:
    """Hold the run's lock for one clause: shared, or exclusive when ``alone``."""
    if path is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no flock; xdist runs keep their workers' overlap
        yield
        return
    gate = os.open(f"{path}.turnstile", os.O_RDWR | os.O_CREAT, 0o600)
    main = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(gate, fcntl.LOCK_EX)  # wait behind an alone-clause that is waiting
        try:
            fcntl.flock(main, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:  # an alone-clause keeps the turnstile until it has run
                fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(main, fcntl.LOCK_UN)
            if alone:
                fcntl.flock(gate, fcntl.LOCK_UN)
    finally:
        os.close(main)
        os.close(gate)
