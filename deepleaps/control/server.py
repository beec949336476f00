"""The control server inside the training process (docs/design.md §5).

Two ways to talk to it:

- the seed's: frames of ``VERB payload``, each answered with one ``0x00``
  byte as soon as it is queued — only when ``unauthenticated: true`` is
  configured, and only on a loopback address (otherwise such a first frame
  resets the connection, and the log says how to allow it);
- ``HELLO <token>`` first: every later frame is answered with a framed JSON
  reply once the change has been applied (or rejected).

Defaults: bind 127.0.0.1, a fresh token per run in a file only its owner can
read (compared in constant time), frames of at most 1 MiB, a read timeout
per frame, a bounded number of clients. A bad frame gets an error and a
closed connection (the seed's client, which cannot read an error, a reset
one); the training never waits for a client.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import ipaddress
import json
import logging
import os
import secrets
import socket
import struct
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import attrs

from deepleaps.control.engine import Controller, internal_error
from deepleaps.control.framing import (
    ACK,
    DEFAULT_MAX_FRAME,
    Closed,
    FrameError,
    check_frame_end,
    frame_text,
    read_frame,
    write_frame,
)
from deepleaps.lang.diagnostics import Diagnostic, ProgramError
from deepleaps.workspace.confine import Confinement

log = logging.getLogger("deepleaps.control")

PROTOCOL = 1


@attrs.frozen
class ServerSettings:
    """The ``COMMAND_CONTROLLER`` section of the command file."""

    ipc_host: str = "127.0.0.1"
    ipc_port: int = 1568
    unauthenticated: bool = False
    token_file: str = ".deepleaps/control.token"
    max_frame: int = DEFAULT_MAX_FRAME
    max_clients: int = 8
    read_timeout: float = 10.0
    idle_timeout: float | None = 3600.0
    allow_external_modules: bool = False
    #: Module namespaces whose classes a program may name, besides the workspace's and CLASS_NAMESPACES.
    allow_classes: list[str] = attrs.field(factory=list)
    #: Folders commands may read from / write to besides the workspace and the run directories.
    allow_read: list[str] = attrs.field(factory=list)
    allow_write: list[str] = attrs.field(factory=list)
    #: Load checkpoints and weights that hold arbitrary pickled objects (which can run code).
    allow_pickle: bool = False

    def confinement(self, workspace: Path, runs: Path | None = None) -> Confinement:
        """What the run's program may reach (relative folders are the workspace's)."""
        return Confinement(
            workspace,
            runs=runs,
            classes=tuple(self.allow_classes),
            read=tuple(workspace / folder for folder in self.allow_read),
            write=tuple(workspace / folder for folder in self.allow_write),
            external_modules=self.allow_external_modules,
            pickle=self.allow_pickle,
        )

    @classmethod
    def from_section(cls, section: dict[str, Any] | None, **overrides: Any) -> ServerSettings:
        values = dict(section or {})
        known = {field.name for field in attrs.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ProgramError(
                [
                    Diagnostic(
                        f"unknown COMMAND_CONTROLLER setting {', '.join(sorted(unknown))}; "
                        f"settings are {', '.join(sorted(known))}"
                    )
                ]
            )
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read or write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        os.write(descriptor, text.encode())
    finally:
        os.close(descriptor)


class ControlServer:
    def __init__(self, controller: Controller, settings: ServerSettings, workspace: Path):
        if settings.unauthenticated and not is_loopback(settings.ipc_host):
            raise ProgramError(
                [
                    Diagnostic(
                        f"unauthenticated control is allowed on a loopback address only, not '{settings.ipc_host}'"
                    )
                ]
            )
        self.controller = controller
        self.settings = settings
        self.workspace = workspace
        self.token = secrets.token_hex(32)
        self._slots = threading.BoundedSemaphore(settings.max_clients)
        self._stopping = threading.Event()
        self._socket = self._bind()
        self.host, self.port = self._socket.getsockname()[:2]
        token_path = Path(settings.token_file)
        self.token_path = token_path if token_path.is_absolute() else workspace / token_path
        write_private(self.token_path, self.token + "\n")
        self.info_path = self.token_path.parent / "control.json"
        self.info_path.write_text(
            json.dumps({"host": self.host, "port": self.port, "pid": os.getpid(), "token_file": str(self.token_path)})
        )
        self._thread = threading.Thread(target=self._accept, name="deepleaps-control", daemon=True)

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.settings.ipc_host else socket.AF_INET
        server = socket.socket(family, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind((self.settings.ipc_host, self.settings.ipc_port))
        except OSError as problem:
            if self.settings.ipc_port == 0:
                raise
            log.warning("control port %s is taken (%s); using a free port", self.settings.ipc_port, problem)
            server.bind((self.settings.ipc_host, 0))
        server.listen(16)
        server.settimeout(0.5)
        return server

    def start(self) -> ControlServer:
        self._thread.start()
        log.info("control server on %s:%s", self.host, self.port)
        return self

    def close(self) -> None:
        """Stop listening and remove the token and address files: the run is over."""
        self._stopping.set()
        self._socket.close()
        self._thread.join(timeout=2)
        for path in (self.token_path, self.info_path):
            path.unlink(missing_ok=True)

    # ---- connections -------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, address = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            if not self._slots.acquire(blocking=False):
                self._refuse(connection, "too many clients; try again later")
                continue
            threading.Thread(
                target=self._serve, args=(connection, address), name="deepleaps-client", daemon=True
            ).start()

    def _refuse(self, connection: socket.socket, message: str) -> None:
        with contextlib.suppress(OSError):
            connection.settimeout(1.0)
            write_frame(connection, json.dumps({"ok": False, "message": message}).encode())
        connection.close()

    def _serve(self, connection: socket.socket, address) -> None:
        mode: str | None = None  # "json" after HELLO, "seed" for the seed's client
        origin = f"{address[0]}:{address[1]}"
        try:
            while not self._stopping.is_set():
                frame = read_frame(
                    connection,
                    max_size=self.settings.max_frame,
                    idle_timeout=self.settings.idle_timeout,
                    read_timeout=self.settings.read_timeout,
                )
                if mode is None and not _is_hello(frame):
                    if not self.settings.unauthenticated:
                        self._refuse_unauthenticated(connection, origin)
                        return
                    mode = "seed"
                text = frame_text(frame)
                check_frame_end(connection, len(frame))
                verb, _, payload = text.strip().partition(" ")
                verb = verb.upper()
                if mode is None:  # HELLO
                    if not hmac.compare_digest(payload.strip().encode(), self.token.encode()):
                        raise FrameError("wrong token")
                    mode = "json"
                    self._reply(
                        connection,
                        {"ok": True, "verb": "HELLO", "protocol": PROTOCOL, "version": self.controller.version},
                    )
                elif mode == "seed":
                    future = self.controller.request(verb, payload.strip(), origin)
                    future.add_done_callback(functools.partial(_log_seed_reply, verb))
                    connection.sendall(ACK)
                else:
                    reply = self.controller.request(verb, payload.strip(), origin).result()
                    self._reply(connection, reply.to_json())
        except Closed:
            pass
        except FrameError as problem:
            self.controller.refusals.warning("control client %s: %s", origin, problem)
            self._last_word(connection, mode, str(problem))
        except OSError as problem:
            log.info("control client %s: %s", origin, problem)
        except Exception:  # a bug: the client gets an id that run.log holds with the traceback
            self._last_word(connection, mode, internal_error(f"control client {origin}"))
        finally:
            connection.close()
            self._slots.release()

    def _last_word(self, connection: socket.socket, mode: str | None, message: str) -> None:
        """Before the connection is closed: an error reply, or for the seed's client a reset."""
        if mode == "seed":
            _reset_on_close(connection)
            return
        with contextlib.suppress(OSError):
            self._reply(connection, {"ok": False, "message": message})

    def _refuse_unauthenticated(self, connection: socket.socket, origin: str) -> None:
        """A first frame other than HELLO, with the seed's mode off: nothing is sent back, since
        a reply's first byte would pass for the seed's acknowledgement; the log says what to do."""
        self.controller.refusals.warning(
            "control client %s: refused, its first frame is not 'HELLO <token>'. "
            "For the seed's client.py, set 'COMMAND_CONTROLLER: {unauthenticated: true}' in the command file "
            "(loopback addresses only); clients that send HELLO (deepleaps send, Client) read the token from %s",
            origin,
            self.token_path,
        )
        _reset_on_close(connection)

    def _reply(self, connection: socket.socket, body: dict) -> None:
        connection.settimeout(self.settings.read_timeout)
        write_frame(connection, json.dumps(body).encode("utf-8"))


def _is_hello(frame: bytes) -> bool:
    """Whether a connection's first frame is ``HELLO …``; read before its text is checked,
    since it decides how the connection's errors are answered."""
    return frame.strip().partition(b" ")[0].upper() == b"HELLO"


def _reset_on_close(connection: socket.socket) -> None:
    """Make closing the connection reset it. The seed's client takes whatever its
    ``recv(1)`` returns for an acknowledgement, even the ``b""`` of a closed
    connection; only a reset makes it fail."""
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _log_seed_reply(verb: str, done: Future) -> None:
    """The seed's client gets no reply: the outcome goes to the training's output
    (and, when applied, to the log; the engine logs every rejection)."""
    reply = done.result()
    if reply.ok:
        log.info("%s: %s", verb, reply.message)
        print(f"[control] {verb}: {reply.message}", flush=True)
    else:
        print(f"[control] {verb} rejected:\n{reply.message}", flush=True)
