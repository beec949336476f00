"""A Python client for a running training::

    from deepleaps.control.client import Client

    with Client(workspace=".") as client:
        client.send("ADD", "$TRAINING_BATCH( IMAGE_GRID )")
        client.send("SET", "optimizer.lr 0.001")
        print(client.send("STATUS")["message"])

Host, port and token come from the workspace unless given: what the running
server wrote in ``.deepleaps/`` or, before that, the ``COMMAND_CONTROLLER``
section of ``resource/configs/default.yaml``. A server that uses TLS is
reached with it, its certificate checked against ``cafile`` (by default the
certificate the server names). A server that is busy (too many clients) is
asked again after a pause that doubles, for up to ``retry_for`` seconds.
"""

from __future__ import annotations

import json
import random
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import yaml

from deepleaps.control.framing import Closed, FrameError, read_frame, write_frame

INFO = Path(".deepleaps") / "control.json"
COMMAND_FILE = Path("resource/configs/default.yaml")


class ControlError(Exception):
    """The server could not be reached or answered something unreadable."""


class Client:
    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        token: str | None = None,
        *,
        workspace: str | Path = ".",
        timeout: float | None = None,
        connect_timeout: float = 10.0,
        cafile: str | Path | None = None,
        retry_for: float = 30.0,
    ):
        workspace = Path(workspace).absolute()
        info, found_in = _read_info(workspace)
        self.host = host or info.get("host", "127.0.0.1")
        self.port = port if port is not None else info.get("port", 1568)
        token_path = Path(info["token_file"]) if info.get("token_file") else None
        self._unreadable: str | None = None
        if token is None and token_path is not None and token_path.is_file():
            try:
                token = token_path.read_text().strip()
            except OSError as problem:  # another user's training: its token is not ours to read
                self._unreadable = f"cannot read the token file {token_path}: {problem.strerror or problem}"
        self.token = token
        # What connect()'s errors name: the file the workspace gave the address in, and
        # the file whose absence means that no training runs there.
        self._address_from = found_in if host is None and port is None else None
        from_server = found_in is not None and found_in.name == INFO.name and token_path is not None
        self._looked_for = token_path if from_server else workspace / INFO
        #: How long to wait for a reply; None: until the change is applied (the next safe point).
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        cafile = cafile or info.get("tls_cert")
        self._tls = ssl.create_default_context(cafile=str(cafile)) if cafile else None
        #: How long a busy server is asked again.
        self.retry_for = retry_for
        self._socket: socket.socket | None = None

    def connect(self) -> Client:
        """Connect and send HELLO, again after a pause while the server is busy. Without a
        token, or refused at the address the workspace gave, no training runs there: the
        error says what was looked at."""
        if self._unreadable is not None:
            raise ControlError(self._unreadable)
        if self.token is None:
            raise ControlError(f"no training is running in this workspace (looked for {self._looked_for})")
        for pause in self._pauses():
            self._open()
            try:
                reply = self._exchange(f"HELLO {self.token}")
            except ControlError:  # closed before it answered: it made way for newer connections
                reply = {"ok": False, "busy": True, "message": "the server closed the connection"}
            if reply.get("ok"):
                return self
            self.close()
            if not reply.get("busy") or pause is None:
                raise ControlError(reply.get("message", "HELLO refused"))
            time.sleep(pause)
        raise AssertionError("unreachable: the last pause is None")

    def send(self, verb: str, payload: str = "") -> dict[str, Any]:
        """Send ``VERB payload``; the JSON reply once the change is applied or rejected
        (sent again, on a new connection, while the server answers that it is busy)."""
        text = f"{verb} {payload}" if payload else verb
        for pause in self._pauses():
            if self._socket is None:
                self.connect()
            reply = self._exchange(text)
            if not reply.get("busy") or pause is None:
                return reply
            self.close()  # a busy server closes the connection
            time.sleep(pause)
        raise AssertionError("unreachable: the last pause is None")

    def _pauses(self):
        """Pauses between tries, doubling from 50 ms to 2 s with a little jitter; None after ``retry_for``."""
        deadline = time.monotonic() + self.retry_for
        pause = 0.05
        while time.monotonic() + pause < deadline:
            yield pause * random.uniform(0.5, 1.0)
            pause = min(pause * 2, 2.0)
        yield None

    def _open(self) -> None:
        try:
            plain = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as problem:
            if isinstance(problem, ConnectionRefusedError) and self._address_from is not None:
                raise ControlError(
                    f"no training is running in this workspace "
                    f"(nothing answers at {self.host}:{self.port}, the address in {self._address_from})"
                ) from None
            raise ControlError(f"cannot reach the training at {self.host}:{self.port}: {problem}") from None
        if self._tls is None:
            self._socket = plain
            return
        try:
            self._socket = self._tls.wrap_socket(plain, server_hostname=self.host)
        except (OSError, ssl.SSLError) as problem:
            plain.close()
            raise ControlError(f"TLS with the training at {self.host}:{self.port} failed: {problem}") from None

    def _exchange(self, text: str) -> dict[str, Any]:
        assert self._socket is not None  # connect() leaves one open or raises
        try:
            write_frame(self._socket, text.encode("utf-8"))
            frame = read_frame(self._socket, max_size=1 << 30, idle_timeout=self.timeout, read_timeout=60.0)
        except (OSError, Closed, FrameError) as problem:
            self.close()
            raise ControlError(f"the connection to the training failed: {problem or 'closed'}") from None
        return json.loads(frame.decode("utf-8"))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Client:
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.close()


def _read_info(workspace: Path) -> tuple[dict[str, Any], Path | None]:
    """Where the training listens, and the file that says so: what its server wrote
    (``.deepleaps/control.json``), else the ``COMMAND_CONTROLLER`` section of the
    workspace's command file, else nothing."""
    config = workspace / COMMAND_FILE
    try:
        section = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("COMMAND_CONTROLLER") or {}
        token_file = Path(section.get("token_file", ".deepleaps/control.token"))
    except (OSError, yaml.YAMLError, AttributeError, TypeError):
        section, token_file = None, Path(".deepleaps/control.token")
    token_file = token_file if token_file.is_absolute() else workspace / token_file
    # The server writes its info beside its token file.
    for path in dict.fromkeys((workspace / INFO, token_file.parent / INFO.name)):
        if path.is_file():
            try:
                return json.loads(path.read_text()), path
            except (OSError, json.JSONDecodeError):
                pass
    if section is None:
        return {}, None
    info = {"host": section.get("ipc_host"), "port": section.get("ipc_port"), "token_file": str(token_file)}
    return {key: value for key, value in info.items() if value is not None}, config


def reply_message(reply: dict[str, Any]) -> str:
    """A reply's message as people read it, a refusal marked as an error once.

    The message of a refusal with diagnostics is their rendered text, which says
    ``error:`` itself; any other refusal's message is a plain sentence.
    """
    message = reply.get("message", "")
    if reply.get("ok") or reply.get("errors") or not message:
        return message
    return f"error: {message}"


def reply_lines(reply: dict[str, Any]) -> list[tuple[str, bool]]:
    """What ``deepleaps send`` prints of a reply, line by line, each with whether it goes
    to stderr: the diff, the message, and where a change was applied."""
    lines = [(line, False) for line in reply.get("diff", [])]
    message = reply_message(reply)
    if message:
        lines.append((message, not reply.get("ok")))
    if reply.get("patch_id") is not None:
        point = reply.get("point") or {}
        where = f"{point.get('path')} {point.get('counters')}"
        lines.append((f"patch {reply['patch_id']} applied at {where} (version {reply.get('version')})", False))
    return lines
