"""The wire between the parent and a worker: length-prefixed pickle frames on a private socket.

Contract:

* A frame is one pickled tuple ``(kind, job, payload)`` preceded by its length (8 bytes, big
  endian).  ``job`` numbers the prompt a frame belongs to (0 for the worker's own frames), so
  frames of a prompt that was stopped are recognised and dropped.
* The socket is one end of a ``socketpair`` made by the parent and handed to the worker with
  ``pass_fds``: only these two processes hold it, which is why keys may travel on it and
  nowhere else.
* :meth:`Connection.send` may be called from any thread (one lock per connection);
  :meth:`Connection.receive` and :meth:`Connection.receive_ready` from one thread only.  A
  closed or broken peer reads as :class:`EOFError`, after every whole frame it sent.
* A send wakes the peer only if it is waiting in a receive.  A reader that instead sleeps and
  then takes whatever has arrived (:meth:`Connection.receive_ready` with ``wait=False``)
  spares the sender that wake-up; the frames wait in the kernel, so a sender that dies
  meanwhile loses none of them.  It sleeps on a :class:`Doorbell`, which the worker rings
  after a frame the parent must not wait for (``send(..., ring=True)``: the end of a prompt,
  a tool call) and when it cannot go on until the parent has read (its socket is full, or it
  is out of credit).

Frame kinds, parent to worker: ``HELLO`` (what to load), ``PROMPT``, ``CREDIT`` (the consumer
took chunks: the worker may pull that many more), ``STOP``, ``TOOL_RESULT``.  Worker to
parent: ``READY``, ``FAILED`` (start-up error), ``STARTED`` (the prompt is being begun: from
here on it may have reached the model), ``CHUNK``, ``OP`` (a write on the response),
``TOOL_CALL``, ``END`` (the generator is closed; payload says how it ended).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import socket
import struct
import threading
from typing import Any

HELLO = "hello"
PROMPT = "prompt"
CREDIT = "credit"
STOP = "stop"
TOOL_RESULT = "tool_result"
STARTED = "started"
READY = "ready"
FAILED = "failed"
CHUNK = "chunk"
OP = "op"
TOOL_CALL = "tool_call"
END = "end"

Frame = tuple[str, int, Any]

_HEADER = struct.Struct("!Q")
_MAX_FRAME = 1 << 34  # 16 GiB: anything larger is a corrupt header, not a frame
_RECEIVE_SIZE = 1 << 16


class Connection:
    """Frames over one connected stream socket."""

    def __init__(self, sock: socket.socket, bell: int | None = None) -> None:
        self.sock = sock
        self.bell = bell  # the write end of the peer's Doorbell, if it has one
        self._received = bytearray()  # bytes read from the socket; parsed up to _parsed
        self._parsed = 0
        self._eof: str | None = None  # why the peer's end reads as closed, once it does
        self._send_lock = threading.Lock()

    def send(self, kind: str, job: int = 0, payload: Any = None, ring: bool = False) -> None:
        """Send one frame, then with ``ring`` ring the peer's doorbell; raises ``OSError`` when
        the peer is gone."""
        body = pickle.dumps((kind, job, payload), protocol=pickle.HIGHEST_PROTOCOL)
        data = _HEADER.pack(len(body)) + body
        with self._send_lock:
            try:
                sent = self.sock.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                # The socket is full: the peer must read before this thread can go on.
                self.ring()
                self.sock.sendall(memoryview(data)[sent:])
        if ring:
            self.ring()

    def ring(self) -> None:
        """Ring the peer's doorbell: what was sent must be read now, not with the next batch."""
        bell = self.bell
        if bell is not None:
            # Non-blocking: a full pipe already holds a ring the reader has not heard.
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(bell, b"!")

    def receive(self) -> Frame:
        """The next frame, waiting for it; ``EOFError`` when the peer closed its end or died."""
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            self._read(wait=True)

    def receive_ready(self, wait: bool) -> list[Frame]:
        """Every whole frame that has arrived.  With ``wait``, at least one (waiting for it);
        without, possibly none.  ``EOFError`` once the peer is gone and no frame is left."""
        while self._read(wait=False):
            pass
        frames = []
        while (frame := self._parse()) is not None:
            frames.append(frame)
        if frames or not wait:
            if not frames and self._eof is not None:
                raise EOFError(self._eof)
            return frames
        return [self.receive()]

    def _read(self, wait: bool) -> bool:
        """Append what the socket holds (waiting for something if ``wait``); False when it
        held nothing.  Raises ``EOFError`` only when waiting on a closed peer."""
        if self._eof is not None:
            if wait:
                raise EOFError(self._eof)
            return False
        received = self._received
        if self._parsed:  # one move per read, not one per frame
            del received[: self._parsed]
            self._parsed = 0
        wanted = _RECEIVE_SIZE
        if len(received) >= _HEADER.size:  # the rest of a large frame in one go
            (size,) = _HEADER.unpack_from(received)
            wanted = max(wanted, min(size, _MAX_FRAME) + _HEADER.size - len(received))
        try:
            data = self.sock.recv(wanted, 0 if wait else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except (OSError, ValueError) as error:
            data, self._eof = b"", str(error) or type(error).__name__
        if not data:
            self._eof = self._eof or "peer closed the channel"
            if wait:
                raise EOFError(self._eof)
            return False
        received += data
        return True

    def _parse(self) -> Frame | None:
        """The next whole frame received; None if there is none yet."""
        received, start = self._received, self._parsed
        left = len(received) - start
        if left < _HEADER.size:
            if left and self._eof is not None:
                raise EOFError("peer closed the channel mid-frame")
            return None
        (size,) = _HEADER.unpack_from(received, start)
        if size > _MAX_FRAME:
            raise EOFError(f"corrupt frame header (length {size})")
        end = start + _HEADER.size + size
        if len(received) < end:
            if self._eof is not None:
                raise EOFError("peer closed the channel mid-frame")
            return None
        body = bytes(received[start + _HEADER.size : end])
        self._parsed = end
        kind, job, payload = pickle.loads(body)
        return str(kind), int(job), payload

    def close(self) -> None:
        """Close our end; a thread blocked in :meth:`receive` then reads EOF."""
        if self.bell is not None:
            with contextlib.suppress(OSError):
                os.close(self.bell)
            self.bell = None
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class Doorbell:
    """A pipe a worker writes a byte to when its frames must be read now; the parent sleeps on
    it between batches.  Both ends are non-blocking: rings nobody has heard yet add nothing."""

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()
        os.set_blocking(self.read_end, False)
        os.set_blocking(self.write_end, False)

    def wait(self, timeout: float) -> bool:
        """Sleep until the bell rings or ``timeout`` passes; True if it rang (rings are
        cleared)."""
        readable, _, _ = select.select([self.read_end], [], [], timeout)
        if not readable:
            return False
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self.read_end, 4096):
                pass
        return True

    def close_write_end(self) -> None:
        """The parent's copy, once the worker has its own."""
        write_end, self.write_end = self.write_end, -1
        _close_fd(write_end)

    def close(self) -> None:
        """Close what is still open (each fd once: a number closed twice may be another's)."""
        self.close_write_end()
        read_end, self.read_end = self.read_end, -1
        _close_fd(read_end)


def _close_fd(fd: int) -> None:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)
