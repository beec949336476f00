"""A Python client for a running training::

    from deepleaps.control.client import Client

    with Client(workspace=".") as client:
        client.send("ADD", "$TRAINING_BATCH( IMAGE_GRID )")
        client.send("SET", "optimizer.lr 0.001")
        print(client.send("STATUS")["message"])

Host, port and token come from the workspace unless given: what the running
server wrote in ``.deepleaps/`` or, before that, the ``COMMAND_CONTROLLER``
section of ``resource/configs/default.yaml``.
"""

from __future__ import annotations

import json
import socket
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
    ):
        info = _read_info(Path(workspace))
        self.host = host or info.get("host", "127.0.0.1")
        self.port = port if port is not None else info.get("port", 1568)
        if token is None and info.get("token_file"):
            token_path = Path(info["token_file"])
            token = token_path.read_text().strip() if token_path.is_file() else None
        self.token = token
        #: How long to wait for a reply; None: until the change is applied (the next safe point).
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._socket: socket.socket | None = None

    def connect(self) -> Client:
        if self.token is None:
            raise ControlError("no token: give one, or run in the workspace of the training")
        try:
            self._socket = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as problem:
            raise ControlError(f"cannot reach the training at {self.host}:{self.port}: {problem}") from None
        reply = self.send("HELLO", self.token)
        if not reply.get("ok"):
            self.close()
            raise ControlError(reply.get("message", "HELLO refused"))
        return self

    def send(self, verb: str, payload: str = "") -> dict[str, Any]:
        """Send ``VERB payload``; the JSON reply once the change is applied or rejected."""
        if self._socket is None:
            self.connect()
        assert self._socket is not None  # connect() leaves one open or raises
        text = f"{verb} {payload}" if payload else verb
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


def _read_info(workspace: Path) -> dict[str, Any]:
    """Where the training listens: what its server wrote (``.deepleaps/control.json``),
    else the ``COMMAND_CONTROLLER`` section of the workspace's command file."""
    path = workspace / INFO
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass
    config = workspace / COMMAND_FILE
    try:
        section = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("COMMAND_CONTROLLER") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return {}
    info = {"host": section.get("ipc_host"), "port": section.get("ipc_port")}
    token_file = Path(section.get("token_file", ".deepleaps/control.token"))
    info["token_file"] = str(token_file if token_file.is_absolute() else workspace / token_file)
    return {key: value for key, value in info.items() if value is not None}
