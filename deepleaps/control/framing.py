"""Frames on the control socket: an 8-byte big-endian length, then that many bytes.

Compatible with the seed's client, which sends ``pack('>Q', len(data))`` and
the UTF-8 text ``VERB payload``, then reads one ``0x00`` byte back.
"""

from __future__ import annotations

import socket
import struct
import time

HEADER = struct.Struct(">Q")
#: The seed's acknowledgement: one zero byte per frame.
ACK = b"\x00"
DEFAULT_MAX_FRAME = 1 << 20


class FrameError(Exception):
    """A frame that cannot be read: too large, cut short, too slow."""


class Closed(Exception):
    """The peer closed the connection between frames."""


def _read_exactly(sock: socket.socket, count: int, deadline: float | None) -> bytes:
    chunks, remaining = [], count
    while remaining:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise FrameError(f"frame not complete in time ({count - remaining} of {count} bytes)")
            sock.settimeout(left)
        try:
            chunk = sock.recv(min(remaining, 1 << 16))
        except TimeoutError:
            raise FrameError(f"frame not complete in time ({count - remaining} of {count} bytes)") from None
        if not chunk:
            if remaining == count:
                raise Closed()
            raise FrameError(f"connection closed in the middle of a frame ({count - remaining} of {count} bytes)")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(
    sock: socket.socket, *, max_size: int = DEFAULT_MAX_FRAME, idle_timeout: float | None, read_timeout: float
) -> bytes:
    """Wait (up to ``idle_timeout``) for a frame to start, then read it within ``read_timeout``.

    Raises:
        Closed: the peer closed the connection before a new frame.
        FrameError: a bad, oversized, cut or slow frame.
    """
    sock.settimeout(idle_timeout)
    try:
        first = sock.recv(1)
    except TimeoutError:
        raise FrameError("connection idle for too long") from None
    if not first:
        raise Closed()
    deadline = time.monotonic() + read_timeout
    header = first + _read_exactly(sock, HEADER.size - 1, deadline)
    (size,) = HEADER.unpack(header)
    if size > max_size:
        raise FrameError(f"frame of {size} bytes is over the limit of {max_size} bytes")
    return _read_exactly(sock, size, deadline)


def write_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(HEADER.pack(len(payload)) + payload)
