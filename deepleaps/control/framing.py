"""Frames on the control socket: an 8-byte big-endian length, then that many bytes.

Compatible with the seed's client, which sends ``pack('>Q', len(data))`` and
the UTF-8 text ``VERB payload``, then reads one ``0x00`` byte back. Its length
counts characters, which is right for ASCII text only; a frame whose length
falls short of its text is refused with an error that says so (:func:`frame_text`,
:func:`check_frame_end`), never carried out cut.
"""

from __future__ import annotations

import socket
import struct
import time

HEADER = struct.Struct(">Q")
#: The seed's acknowledgement: one zero byte per frame.
ACK = b"\x00"
DEFAULT_MAX_FRAME = 1 << 20
#: What a length that disagrees with its frame's text most likely means: the
#: seed's client sends ``pack('>Q', len(data))``, which counts characters.
COUNT_BYTES = "the length must count the bytes of the UTF-8 text, not its characters"


class FrameError(Exception):
    """A frame that cannot be read: too large, cut short, too slow, or its length miscounted."""


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
        problem = f"frame of {size} bytes is over the limit of {max_size} bytes"
        if header[0]:  # no length is 2**56 bytes or more: text where a header should be
            problem += f"; its header {header!r} looks like text left over from a frame before it: {COUNT_BYTES}"
        raise FrameError(problem)
    return _read_exactly(sock, size, deadline)


def frame_text(frame: bytes) -> str:
    """The UTF-8 text of a frame; one that ends in the middle of a character was cut short by its length."""
    try:
        return frame.decode("utf-8")
    except UnicodeDecodeError as problem:
        if problem.reason == "unexpected end of data":
            raise FrameError(
                f"the frame's {len(frame)} bytes end in the middle of a UTF-8 character: {COUNT_BYTES}"
            ) from None
        raise FrameError("a frame must be UTF-8 text: VERB payload") from None


def check_frame_end(sock: socket.socket, size: int) -> None:
    """Raise FrameError if what already waits after a frame of ``size`` bytes cannot begin a header.

    A length that falls short of its text ends the frame early, and the rest of
    the text arrives at once where the next header should be. A header starts
    with a zero byte (no frame is 2**56 bytes long); text does not.
    """
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        waiting = sock.recv(HEADER.size, socket.MSG_PEEK)
    except BlockingIOError:
        return  # nothing waits
    finally:
        sock.settimeout(timeout)
    if waiting[:1] not in (b"", b"\0"):
        raise FrameError(
            f"the frame's length says {size} bytes, but its text goes on ({waiting!r} follows at once): {COUNT_BYTES}"
        )


def write_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(HEADER.pack(len(payload)) + payload)
