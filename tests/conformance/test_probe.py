"""The process-mode probe: how the suite counts the executes of the adapter's worker processes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import llm

from conformance import probe
from conformance.instrument import Plan

BOUND = 10.0


class _Counted(llm.Model):
    model_id = "probe-counted"

    def execute(self, prompt: Any, stream: Any, response: Any, conversation: Any) -> Iterator[str]:
        yield "only"


class _Witness(threading.Condition):
    """The instrument's lock, noting when a probe thread (not the test) asks for it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked_elsewhere = threading.Event()

    def __enter__(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            self.asked_elsewhere.set()
        return super().__enter__()


def test_an_execute_returns_only_once_the_test_process_has_counted_its_end() -> None:
    """The next execute's "start" arrives on another connection, served by another thread:
    if an execute could return before its "end" was counted, two executes run one after the
    other would be counted as running at once (concurrency.limit failing a correct adapter)."""
    instrument = probe.RemoteInstrument(_Counted)
    witness = _Witness()
    instrument.lock = witness
    instrument.install()
    try:
        hold = threading.Event()
        instrument.use(Plan(hold_first=hold))
        returned = threading.Event()
        active_at_return: list[int] = []
        assert instrument._listener is not None
        address, authkey = str(instrument._listener.address), instrument._authkey

        def worker_execute() -> None:
            stream = probe._run_remote(
                address,
                authkey,
                _Counted.execute.__wrapped__,
                _Counted(),
                (None, True, None, None),
                {},
                {},
            )
            list(stream)
            active_at_return.append(instrument.active)
            returned.set()

        thread = threading.Thread(target=worker_execute, daemon=True)
        thread.start()
        assert len(instrument.wait_for_records(1, BOUND)) == 1
        with witness:
            witness.asked_elsewhere.clear()
            hold.set()  # the execute yields its chunk and ends while the test holds the lock
            assert witness.asked_elsewhere.wait(BOUND), "the execute's end never reached the test"
            # Its end is read and waits for this lock to be counted: the execute must not
            # return before that.
            assert not returned.wait(0.5), (
                "the worker's execute() returned before the test process counted its end"
            )
        assert returned.wait(BOUND)
        thread.join(BOUND)
        assert active_at_return == [0]
    finally:
        instrument.reset()
        instrument.uninstall()
