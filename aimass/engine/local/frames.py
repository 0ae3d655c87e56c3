"""Reading a worker's pipe a whole buffer at a time.

The worker writes with ``multiprocessing.Connection.send_bytes``: each message is a frame, a
4-byte big-endian signed length (``-1`` then an 8-byte length for messages over 2 GiB) and
the bytes. ``Connection.recv_bytes`` reads one frame in two ``read`` calls, and the server's
reader asked ``poll`` before each: four system calls per generated token, each a chance for
the gateway to lose its core to llama.cpp's threads. ``FrameReader.read`` makes one ``read``
of whatever is there and returns every complete frame in it; what is left of a frame waits
in its buffer for the next call.
"""

from __future__ import annotations

import os
import struct

_LENGTH = struct.Struct("!i")
_LONG_LENGTH = struct.Struct("!Q")
CHUNK = 1 << 16
"""Bytes asked of one ``read`` when no longer frame is known to be on its way."""


class FrameReader:
    """The frames that arrive on ``fd``; call ``read`` when it is readable."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buffer = bytearray()
        self.needed = 0
        """Bytes the frame at the head of ``buffer`` still lacks (0: unknown or none)."""

    def read(self) -> list[bytes]:
        """One ``read`` (it does not block: the caller knows ``fd`` is readable); the frames
        it completes, oldest first. ``EOFError`` when the writer has closed its end."""
        data = os.read(self.fd, max(CHUNK, self.needed))
        if not data:
            raise EOFError
        self.buffer += data
        return self._split()

    def _split(self) -> list[bytes]:
        buffer, frames, pos = self.buffer, [], 0
        view = memoryview(buffer)
        try:
            while True:
                start, size = _header(buffer, pos)
                if start < 0 or len(buffer) < start + size:
                    self.needed = max(0, start + size - len(buffer)) if start >= 0 else 0
                    break
                frames.append(bytes(view[start : start + size]))
                pos = start + size
        finally:
            view.release()
        del buffer[:pos]
        return frames


def _header(buffer: bytearray, pos: int) -> tuple[int, int]:
    """Where the frame at ``pos`` starts and its size; ``(-1, 0)`` if its header is not in."""
    if len(buffer) < pos + _LENGTH.size:
        return -1, 0
    (size,) = _LENGTH.unpack_from(buffer, pos)
    start = pos + _LENGTH.size
    if size != -1:
        return start, size
    if len(buffer) < start + _LONG_LENGTH.size:
        return -1, 0
    (size,) = _LONG_LENGTH.unpack_from(buffer, start)
    return start + _LONG_LENGTH.size, size
