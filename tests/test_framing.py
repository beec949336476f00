"""Frames whose length disagrees with their text: named as such, not read as something else."""

from __future__ import annotations

import socket

import pytest

from deepleaps.control.framing import HEADER, FrameError, check_frame_end, frame_text, read_frame


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    with server, client:
        yield server, client


def read(sock: socket.socket) -> bytes:
    return read_frame(sock, max_size=1 << 20, idle_timeout=5, read_timeout=5)


def test_a_length_in_characters_leaves_text_where_the_next_header_should_be(pair):
    server, client = pair
    data = "EXPORT note=wörld"
    client.sendall(HEADER.pack(len(data)) + data.encode())  # the seed's client: len() counts characters
    frame = read(server)
    assert frame == b"EXPORT note=w\xc3\xb6rl"
    with pytest.raises(FrameError, match="must count the bytes of the UTF-8 text, not its characters"):
        check_frame_end(server, len(frame))


def test_a_length_in_characters_can_cut_a_character(pair):
    server, client = pair
    data = "EXPORT note=wö"
    client.sendall(HEADER.pack(len(data)) + data.encode())
    with pytest.raises(FrameError, match="end in the middle of a UTF-8 character: the length must count the bytes"):
        frame_text(read(server))


def test_frames_sent_back_to_back_and_no_frame_at_all_are_fine(pair):
    server, client = pair
    client.sendall(HEADER.pack(4) + b"PING" + HEADER.pack(6) + b"STATUS")
    assert frame_text(read(server)) == "PING"
    check_frame_end(server, 4)
    assert read(server) == b"STATUS"
    timeout = server.gettimeout()
    check_frame_end(server, 6)  # nothing waits
    assert server.gettimeout() == timeout


def test_text_that_is_not_utf8_is_still_called_so():
    with pytest.raises(FrameError, match="must be UTF-8 text"):
        frame_text(b"ADD \xff\xfe")


def test_text_read_as_a_header_says_what_it_likely_is(pair):
    server, client = pair
    client.sendall(b"ld" + HEADER.pack(4)[:6])  # the end of a frame counted in characters, then a header
    with pytest.raises(FrameError, match=r"over the limit.*looks like text left over.*not its characters"):
        read(server)
