"""The wire between the parent and a worker: length-prefixed pickle frames on a private socket.

Contract:

* A frame is one pickled tuple ``(kind, job, payload)`` preceded by its length (8 bytes, big
  endian).  ``job`` numbers the prompt a frame belongs to (0 for the worker's own frames), so
  frames of a prompt that was stopped are recognised and dropped.
* The socket is one end of a ``socketpair`` made by the parent and handed to the worker with
  ``pass_fds``: only these two processes hold it, which is why keys may travel on it and
  nowhere else.
* :meth:`Connection.send` may be called from any thread (one lock per connection);
  :meth:`Connection.receive` from one thread only.  A closed or broken peer reads as
  :class:`EOFError`.

Frame kinds, parent to worker: ``HELLO`` (what to load), ``PROMPT``, ``CREDIT`` (the consumer
took chunks: the worker may pull that many more), ``STOP``, ``TOOL_RESULT``.  Worker to
parent: ``READY``, ``FAILED`` (start-up error), ``STARTED`` (the prompt is being begun: from
here on it may have reached the model), ``CHUNK``, ``OP`` (a write on the response),
``TOOL_CALL``, ``END`` (the generator is closed; payload says how it ended).
"""

from __future__ import annotations

import contextlib
import pickle
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


class Connection:
    """Frames over one connected stream socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader = sock.makefile("rb")
        self._send_lock = threading.Lock()

    def send(self, kind: str, job: int = 0, payload: Any = None) -> None:
        """Send one frame; raises ``OSError`` when the peer is gone."""
        body = pickle.dumps((kind, job, payload), protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self.sock.sendall(_HEADER.pack(len(body)) + body)

    def receive(self) -> Frame:
        """The next frame; ``EOFError`` when the peer closed its end or died."""
        try:
            header = self._reader.read(_HEADER.size)
        except (OSError, ValueError) as error:
            raise EOFError(str(error)) from None
        if header is None or len(header) < _HEADER.size:
            raise EOFError("peer closed the channel")
        (size,) = _HEADER.unpack(header)
        if size > _MAX_FRAME:
            raise EOFError(f"corrupt frame header (length {size})")
        try:
            body = self._reader.read(size)
        except (OSError, ValueError) as error:
            raise EOFError(str(error)) from None
        if body is None or len(body) < size:
            raise EOFError("peer closed the channel mid-frame")
        kind, job, payload = pickle.loads(body)
        return str(kind), int(job), payload

    def close(self) -> None:
        """Close our end; a thread blocked in :meth:`receive` then reads EOF."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
