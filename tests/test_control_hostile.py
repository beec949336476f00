"""The control server against bad, slow, unauthorised and too many clients, and against
requests made to flood its replies and its log or to break its parser (docs/design.md §5).

One training in token mode (``read_timeout: 1``, ``max_clients: 24``) takes
all of it; after each test it must still answer and still train. Loopback
only; every socket has a timeout and every loop a bound.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from control_fixtures import (
    Training,
    frame,
    is_closed,
    make_control_workspace,
    read_reply,
    running,
    wait_for,
)

from deepleaps.control.client import ControlError
from deepleaps.control.framing import DEFAULT_MAX_FRAME, HEADER
from deepleaps.control.replies import LOGGED_PER_SECOND, MAX_DIAGNOSTICS, MAX_REPLY

MAX_CLIENTS = 24
QUIET = 'run_cycle="TRAINING_BATCH.step:100000"'


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    workspace = make_control_workspace(tmp_path_factory.mktemp("control-hostile"))
    controller = {"read_timeout": 1, "max_clients": MAX_CLIENTS}
    with running(workspace, "hostile", throttle=0.05, controller=controller) as started:
        yield started


@pytest.fixture(autouse=True)
def still_serving_and_training(training):
    """After every test: the server answers and batches keep coming."""
    yield
    assert training.process.poll() is None, training.describe()
    assert training.send("PING")["ok"]
    training.wait_logged(training.last_logged_step() + 2, timeout=30)


@contextlib.contextmanager
def raw(training: Training, timeout: float = 10):
    sock = training.connect_raw(timeout)
    try:
        yield sock
    finally:
        sock.close()


def hello(sock: socket.socket, token: str) -> dict | None:
    sock.sendall(frame(f"HELLO {token}".encode()))
    return read_reply(sock)


# ---- bad frames -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [DEFAULT_MAX_FRAME + 1, 1 << 40, (1 << 64) - 1])
def test_length_over_the_limit_gets_an_error_and_a_closed_connection(training, size):
    with raw(training) as sock:
        sock.sendall(HEADER.pack(size))
        reply = read_reply(sock)
        assert reply is not None and reply["ok"] is False
        assert "over the limit" in reply["message"] and str(DEFAULT_MAX_FRAME) in reply["message"]
        assert is_closed(sock)


def test_a_frame_of_exactly_the_limit_is_read(training):
    with raw(training) as sock:
        assert hello(sock, training.token)["ok"]
        payload = b"PING " + b" " * (DEFAULT_MAX_FRAME - 5)
        sock.sendall(frame(payload))
        reply = read_reply(sock)
        assert reply == {"ok": True, "verb": "PING", "message": "pong", "version": reply["version"]}


def test_a_frame_that_is_not_utf8_gets_an_error_and_a_closed_connection(training):
    with raw(training) as sock:
        sock.sendall(frame(b"HELLO \xff\xfe\x80 not text"))
        reply = read_reply(sock)
        assert reply is not None and reply["ok"] is False
        assert "UTF-8" in reply["message"]
        assert is_closed(sock)


def test_the_same_after_hello(training):
    with raw(training) as sock:
        assert hello(sock, training.token)["ok"]
        sock.sendall(frame(b"\xc3\x28\xa0\xa1"))
        reply = read_reply(sock)
        assert reply is not None and reply["ok"] is False and "UTF-8" in reply["message"]
        assert is_closed(sock)


@pytest.mark.parametrize("text", ["EXPORT note=héllo wörld", "EXPORT note=wö"])
def test_a_length_that_counts_characters_gets_an_error_that_says_so(training, text):
    with raw(training) as sock:
        assert hello(sock, training.token)["ok"]
        sock.sendall(HEADER.pack(len(text)) + text.encode())
        reply = read_reply(sock)
        assert reply is not None and reply["ok"] is False
        assert "the length must count the bytes of the UTF-8 text, not its characters" in reply["message"]
        assert is_closed(sock)


@pytest.mark.parametrize(
    "garbage",
    [
        bytes(range(256)) * 4,
        b"\xde\xad\xbe\xef" * 64,
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"\x00\x00\x00\x00\x00\x00\x00\x05\xff\xff\xff\xff\xff",
    ],
)
def test_garbage_bytes_get_an_error_or_a_closed_connection(training, garbage):
    with raw(training) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(garbage)
        reply = read_reply(sock)  # the server may reset the connection before its reply is read
        assert reply is None or reply["ok"] is False
        assert is_closed(sock)


def test_a_header_cut_short_and_closed_does_no_harm(training):
    for cut in (1, 3, 7):
        with raw(training) as sock:
            sock.sendall(HEADER.pack(20)[:cut])
    with raw(training) as sock:
        sock.sendall(HEADER.pack(20) + b"PING")  # 4 of 20 bytes, then gone
    assert training.send("PING")["ok"]


# ---- slow and unauthorised clients ------------------------------------------------------------


@pytest.mark.parametrize("sent", [HEADER.pack(100) + b"HELLO ", HEADER.pack(100)[:5]])
def test_half_a_frame_is_closed_after_the_read_timeout_while_others_are_served(training, sent):
    with raw(training) as slow:
        slow.sendall(sent)
        started = time.monotonic()
        with training.client(timeout=10) as other:  # served while the slow one waits
            for _ in range(3):
                assert other.send("STATUS")["ok"]
        reply = read_reply(slow, timeout=15)
        waited = time.monotonic() - started
        assert reply is not None and reply["ok"] is False
        assert "not complete in time" in reply["message"]
        assert is_closed(slow)
        assert 0.8 <= waited < 10, f"closed after {waited:.2f} s with read_timeout 1"


def test_a_wrong_token_is_refused_and_the_right_one_still_works(training):
    with raw(training) as sock:
        reply = hello(sock, "0" * len(training.token))
        assert reply == {"ok": False, "message": "wrong token"}
        assert is_closed(sock)
    with raw(training) as sock:
        reply = hello(sock, "")
        assert reply is not None and reply["ok"] is False
        assert is_closed(sock)
    with pytest.raises(ControlError, match="wrong token"):
        training.client(token=training.token[:-1] + ("0" if training.token[-1] != "0" else "1")).connect()
    with raw(training) as sock:  # token mode: no verb before HELLO; no reply, which the seed would take for an ack
        sock.sendall(frame(b"STATUS"))
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
    with raw(training) as sock:
        assert hello(sock, training.token)["ok"]
        sock.sendall(frame(b"STATUS"))
        assert read_reply(sock)["ok"]


# ---- many clients -----------------------------------------------------------------------------


def test_twenty_clients_at_once_each_patch_applied_exactly_once(training):
    clients, rounds = 20, 2
    version = training.send("STATUS")["version"]
    journal_before = len(training.journal())
    logged_before = training.last_logged_step()
    replies: dict[int, list[dict]] = {index: [] for index in range(clients)}
    problems: list[str] = []
    barrier = threading.Barrier(clients, timeout=30)

    def work(index: int) -> None:
        try:
            with training.client(timeout=60) as client:
                barrier.wait()
                for round_ in range(rounds):
                    replies[index].append(client.send("STATUS"))
                    node = f'*PrintCommand[content="c{index}-{round_}", {QUIET}]'
                    added = client.send("ADD", f"$TRAINING_BATCH( {node} )")
                    replies[index].append(added)
                    if added.get("ok"):
                        (op,) = [op for op in added["script"]["operations"] if op["op"] == "add_node"]
                        replies[index].append(client.send("REMOVE", op["name"]))
        except Exception as problem:  # reported below, with the thread it came from
            problems.append(f"client {index}: {type(problem).__name__}: {problem}")

    threads = [threading.Thread(target=work, args=(index,), daemon=True) for index in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    for thread in threads:
        thread.join(timeout=max(0.1, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "clients still waiting after 120 s"
    assert not problems, problems

    every = [reply for per_client in replies.values() for reply in per_client]
    assert len(every) == clients * rounds * 3
    assert all(reply["ok"] for reply in every), [reply for reply in every if not reply["ok"]][:3]
    patches = [reply for reply in every if reply["verb"] in ("ADD", "REMOVE")]
    ids = [reply["patch_id"] for reply in patches]
    assert len(set(ids)) == len(ids) == clients * rounds * 2
    # Each ADD was answered with a distinct version, and the program moved once per patch.
    assert len({reply["version"] for reply in patches}) == len(patches)
    assert training.send("STATUS")["version"] == version + len(patches)

    journal = training.journal()
    assert len(journal) == journal_before + len(patches)
    counted = Counter(entry["id"] for entry in journal)
    assert all(counted[patch_id] == 1 for patch_id in ids)
    assert max(counted.values()) == 1
    new = journal[journal_before:]
    assert Counter(entry["verb"] for entry in new) == {"ADD": clients * rounds, "REMOVE": clients * rounds}
    # Every node added was removed again: the program is back where it was.
    assert not any(name.startswith("PrintCommand") for name in training.send("STATUS")["message"].split())
    training.wait_logged(logged_before + 3)


def test_more_than_max_clients_are_told_they_are_busy(training):
    held: list[socket.socket] = []
    try:
        for _ in range(MAX_CLIENTS):
            # A slot of a connection closed by an earlier test may take a moment to come free.
            def connect() -> socket.socket | None:
                sock = training.connect_raw()
                reply = hello(sock, training.token)
                if reply is not None and reply["ok"]:
                    return sock
                sock.close()
                assert reply is None or "too many clients" in reply["message"], reply
                return None

            held.append(wait_for(connect, "a free client slot", timeout=20, interval=0.1))
        for _ in range(3):  # one over: STOP, STATUS and PING only; anything else is busy, to retry
            with raw(training) as extra:
                assert hello(extra, training.token)["ok"]
                extra.sendall(frame(b"PING"))
                assert read_reply(extra)["ok"]
                extra.sendall(frame(b"EXPORT crowded 1"))
                assert read_reply(extra) == {"ok": False, "busy": True, "message": "too many clients; try again later"}
                assert is_closed(extra)
        for sock in held:  # the held ones still work
            sock.sendall(frame(b"PING"))
            assert read_reply(sock)["ok"]
        held.pop().close()

        def served() -> bool:
            try:
                return training.send("PING", timeout=5)["ok"]
            except ControlError:
                return False

        wait_for(served, "a slot to come free after a client left", timeout=20, interval=0.1)
    finally:
        for sock in held:
            sock.close()


def test_replies_are_json_frames(training):
    with raw(training) as sock:
        assert hello(sock, training.token)["ok"]
        sock.sendall(frame('ADD $TRAINING_BATCH( *PrintCommand[content="é" )'.encode()))
        reply = read_reply(sock)
        assert reply["ok"] is False and {"line", "column", "errors"} <= reply.keys()
        json.dumps(reply)
    assert Path(training.info["token_file"]).stat().st_mode & 0o077 == 0


# ---- bounded replies and logs ------------------------------------------------------------------


def run_log_size(training: Training) -> int:
    return (training.run_dir / "run.log").stat().st_size


def test_a_megabyte_of_mistakes_gets_twenty_diagnostics_in_a_small_reply_and_a_few_log_lines(training):
    count = (DEFAULT_MAX_FRAME - 100) // len("*NoSuch, ")
    payload = "$TRAINING_BATCH( " + ", ".join(["*NoSuch"] * count) + " )"
    logged = run_log_size(training)
    # Parsing a megabyte of program takes seconds, off the training thread; a busy machine, minutes.
    with raw(training) as sock:
        assert hello(sock, training.token)["ok"]
        sock.settimeout(300)
        sock.sendall(frame(f"ADD {payload}".encode()))
        header = sock.recv(HEADER.size, socket.MSG_WAITALL)
        (size,) = HEADER.unpack(header)
        reply = json.loads(sock.recv(size, socket.MSG_WAITALL))
    assert size <= MAX_REPLY
    assert reply["ok"] is False and len(reply["errors"]) == MAX_DIAGNOSTICS + 1
    assert reply["errors"][0]["message"] == "unknown command class '*NoSuch'"
    assert reply["errors"][-1]["message"] == f"and {count - MAX_DIAGNOSTICS} more not shown (a reply holds 20)"
    assert run_log_size(training) - logged < 16 * 1024


def test_a_flood_of_refusals_is_logged_ten_a_second_then_counted(training):
    log_path = training.run_dir / "run.log"
    start = run_log_size(training)
    with training.client() as client:
        for _ in range(100):
            assert not client.send("FLOOD")["ok"]

    def tally() -> tuple[int, int]:
        text = log_path.read_bytes()[start:].decode("utf-8", errors="replace")
        left_out = sum(int(number) for number in re.findall(r"(\d+) more rejections not logged", text))
        return text.count("FLOOD rejected"), left_out

    # Each refusal is logged or counted; the last count is logged within a second or so.
    wait_for(
        lambda: sum(tally()) >= 100 or None, "every refusal logged or counted", timeout=10, on_fail=training.describe
    )
    logged, left_out = tally()
    assert left_out > 0 and 0 < logged <= 3 * LOGGED_PER_SECOND and logged + left_out == 100


@pytest.mark.parametrize(
    ("verb", "payload", "message"),
    [
        ("ADD", "(" * 100_000, "expected a node"),
        ("ADD", "$TRAINING_BATCH( *PrintCommand[content=" + "[" * 100_000 + "] )", "nesting deeper than 64"),
        ("PATCH", "[" * 100_000, "PATCH: the JSON nests too deeply to be an edit script"),
        ("IMPORT_MODULE", "src.ipc\0CustomCommand", "IMPORT_MODULE takes a module name such as src.ipc.CustomCommand"),
        ("LOAD", "resource/configs/command/\0.yaml", "LOAD takes the path of a command file"),
    ],
)
def test_a_hostile_payload_gets_a_diagnostic_and_never_a_python_exception(training, verb, payload, message):
    reply = training.send(verb, payload)
    assert reply["ok"] is False and message in reply["message"], reply
    assert reply["errors"] and not re.search(r"[A-Z]\w*Error\b", json.dumps(reply))
