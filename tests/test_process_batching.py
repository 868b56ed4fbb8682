"""isolation=process: the parent reads a worker's fast chunks in batches, and the frames that
must not wait (the end of a prompt, a tool call) are read at once; the wire under it."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import llm
import process_models
import pytest
from process_helpers import stop_all_workers
from process_models import script_prompt

from llm_all_models_async.process import handle, protocol

pytestmark = pytest.mark.timeout(60)
LLM_032 = hasattr(llm.Response, "execute_tool_call")

process_models.register()


@pytest.fixture
def process_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LLM_ASYNC_ISOLATION", "process")
    yield
    stop_all_workers()


@pytest.fixture
def batches_never_end_by_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once chunks come close together the reader sleeps between batches for an hour: only
    the worker's doorbell can wake it within a test's time."""
    monkeypatch.setattr(handle, "BATCH_EVERY", 3600.0)


async def test_the_end_of_a_batched_prompt_is_read_at_once(
    process_mode: None, batches_never_end_by_time: None, tmp_path: Path
) -> None:
    steps = [["yield", str(index)] for index in range(20)]
    response = llm.get_async_model("proc-script").prompt(
        script_prompt(tmp_path / "record.txt", *steps)
    )
    text = await asyncio.wait_for(response.text(), 30)
    assert text == "".join(str(index) for index in range(20))


@pytest.mark.skipif(not LLM_032, reason="execute_tool_call exists from llm 0.32")
async def test_a_tool_call_after_batched_chunks_is_answered_at_once(
    process_mode: None, batches_never_end_by_time: None, tmp_path: Path
) -> None:
    def plus_two(x: int) -> int:
        """Add two, in the parent."""
        return x + 2

    go_ahead = tmp_path / "go-ahead"
    response = llm.get_async_model("proc-chatty-tools").prompt(str(go_ahead), tools=[plus_two])
    received = ""
    async for chunk in response:
        received += chunk
        if received == "thinking":
            (tmp_path / "go-ahead.1").touch()
        elif received == "thinking, still":  # two chunks close together: the reader batches
            (tmp_path / "go-ahead.2").touch()
    assert received == "thinking, still; the tool returned 42"


# -- the wire -----------------------------------------------------------------------------------


@pytest.fixture
def pair() -> Iterator[tuple[protocol.Connection, protocol.Connection]]:
    left, right = socket.socketpair()
    sender, reader = protocol.Connection(left), protocol.Connection(right)
    yield sender, reader
    sender.close()
    reader.close()


def test_a_reader_that_does_not_wait_gets_every_frame_that_has_arrived(pair) -> None:
    sender, reader = pair
    assert reader.receive_ready(wait=False) == []
    for index in range(3):
        sender.send(protocol.CHUNK, 7, f"chunk {index}")
    frames = reader.receive_ready(wait=False)
    assert frames == [(protocol.CHUNK, 7, f"chunk {index}") for index in range(3)]


def test_frames_sent_before_the_peer_died_are_read_before_its_end(pair) -> None:
    sender, reader = pair
    sender.send(protocol.CHUNK, 1, "a")
    sender.send(protocol.CHUNK, 1, "b")
    sender.close()
    assert reader.receive_ready(wait=False) == [(protocol.CHUNK, 1, "a"), (protocol.CHUNK, 1, "b")]
    with pytest.raises(EOFError):
        reader.receive_ready(wait=False)
    with pytest.raises(EOFError):
        reader.receive()


def test_a_frame_cut_short_by_the_peers_death_is_an_eof_not_a_frame(pair) -> None:
    sender, reader = pair
    sender.sock.sendall(b"\x00\x00\x00\x00\x00\x00\x01\x00" + b"x" * 10)  # 256 bytes announced
    assert reader.receive_ready(wait=False) == []  # not whole yet
    sender.close()
    with pytest.raises(EOFError, match="mid-frame"):
        reader.receive_ready(wait=False)


def test_a_frame_larger_than_the_socket_buffer_arrives_whole(pair) -> None:
    sender, reader = pair
    payload = bytes(range(256)) * (8 * 4096)  # 8 MiB: many reads, the sender blocking between
    thread = threading.Thread(target=sender.send, args=(protocol.OP, 3, payload), daemon=True)
    thread.start()
    assert reader.receive() == (protocol.OP, 3, payload)
    thread.join(10)


def test_the_doorbell_rings_only_for_frames_sent_with_ring() -> None:
    left, right = socket.socketpair()
    bell = protocol.Doorbell()
    sender = protocol.Connection(left, bell=bell.write_end)
    try:
        sender.send(protocol.CHUNK, 1, "quiet")
        assert not bell.wait(0)
        sender.send(protocol.END, 1, {}, ring=True)
        assert bell.wait(0)
        assert not bell.wait(0)  # heard once, then cleared
    finally:
        right.close()
        left.close()
        bell.close()


def test_rings_nobody_hears_never_block_the_worker() -> None:
    """A parent that reads each frame as it comes never drains its doorbell; the worker must
    go on sending past a full pipe."""
    left, right = socket.socketpair()
    bell = protocol.Doorbell()
    sender = protocol.Connection(left, bell=bell.write_end)
    reader = protocol.Connection(right)
    try:
        for index in range(70_000):  # more rings than a pipe holds (64 KiB)
            sender.send(protocol.END, index, None, ring=True)
            assert reader.receive() == (protocol.END, index, None)
        assert bell.wait(0)
    finally:
        reader.close()
        sender.sock.close()
        bell.close()


def test_a_sender_that_fills_the_socket_rings_before_it_waits() -> None:
    """A reader asleep between batches would otherwise leave a fast worker blocked for the
    rest of the batch interval."""
    left, right = socket.socketpair()
    bell = protocol.Doorbell()
    sender = protocol.Connection(left, bell=bell.write_end)
    reader = protocol.Connection(right)
    count = 20_000  # far more than a socket's buffer holds

    def send_all() -> None:
        for index in range(count):
            sender.send(protocol.CHUNK, 1, index)

    thread = threading.Thread(target=send_all, daemon=True)
    try:
        thread.start()
        assert bell.wait(30), "the sender blocked on a full socket without ringing"
        received: list[object] = []
        while len(received) < count:
            received += [payload for _, _, payload in reader.receive_ready(wait=True)]
        assert received == list(range(count))
        thread.join(10)
    finally:
        reader.close()
        sender.sock.close()
        bell.close()


def test_a_worker_out_of_credit_rings_before_it_waits() -> None:
    from llm_all_models_async.process.worker import Job

    rings: list[int] = []
    job = Job(1, {"credits": 2, "stall_timeout": None})

    def ring_and_get_a_credit() -> None:
        rings.append(job.taken)
        job.grant(1)  # the parent read, and its consumer took a chunk

    job.before_wait = ring_and_get_a_credit
    assert job.take_credit() and job.take_credit()
    assert rings == []  # credit left: nothing to ring for
    assert job.take_credit()
    assert rings == [2]  # out of credit: rang before waiting (and got one)
