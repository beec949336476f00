"""The control server inside the training process (docs/design.md §5).

Two ways to talk to it:

- the seed's: frames of ``VERB payload``, each answered with one ``0x00``
  byte as soon as it is queued — only when ``unauthenticated: true`` is
  configured, and only on a loopback address (otherwise such a first frame
  resets the connection, and the log says how to allow it);
- ``HELLO <token>`` first: every later frame is answered with a framed JSON
  reply once the change has been applied (or rejected).

Defaults: bind 127.0.0.1 (anything else needs ``allow_remote`` and TLS), a
fresh token per run in a file only its owner can read (compared in constant
time), frames of at most 1 MiB, a read timeout per frame, a bounded number of
clients. A connection that has not sent its token within ``auth_timeout`` is
closed; connections waiting to authenticate have slots of their own, the
oldest making way for a new one, so they never keep an authenticated client
out; a client over ``max_clients`` may still send ``STOP``, ``STATUS`` and
``PING``, and is told it is busy otherwise (clients retry). Each connection
is held to ``max_requests_per_second``. A bad frame gets an error and a
closed connection (the seed's client, which cannot read an error, a reset
one); the training never waits for a client. docs/security.md has the rest.
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
import ssl
import struct
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import attrs

from deepleaps.control.engine import ALWAYS_SERVED, Controller
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
from deepleaps.control.replies import internal_error
from deepleaps.lang.diagnostics import Diagnostic, ProgramError
from deepleaps.workspace.confine import Confinement

log = logging.getLogger("deepleaps.control")

PROTOCOL = 1
#: The refusal a client retries (after a pause) rather than report.
BUSY = "too many clients; try again later"


@attrs.frozen
class ServerSettings:
    """The ``COMMAND_CONTROLLER`` section of the command file."""

    ipc_host: str = "127.0.0.1"
    ipc_port: int = 1568
    unauthenticated: bool = False
    token_file: str = ".deepleaps/control.token"
    max_frame: int = DEFAULT_MAX_FRAME
    max_clients: int = 8
    #: Connections still to send their token (the oldest is closed to make way for a new one).
    max_pending: int = 16
    #: Seconds a connection has to authenticate (HELLO, or the seed's first frame).
    auth_timeout: float = 5.0
    #: Requests one connection may make a second (a burst of as many first); more wait their turn.
    max_requests_per_second: float = 100.0
    #: The share of the training's time that requests, all connections together, may take
    #: (deepleaps.control.pacing); more wait their turn. 1: unpaced.
    change_share: float = attrs.field(default=0.05, validator=lambda _, __, value: _check_share(value))
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
    #: Bind an address beyond loopback (needs tls_cert and tls_key: the token would cross the network).
    allow_remote: bool = False
    #: The server's certificate chain and private key (PEM), relative to the workspace: clients connect with TLS.
    tls_cert: str | None = None
    tls_key: str | None = None

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


def tls_context(settings: ServerSettings, workspace: Path) -> ssl.SSLContext | None:
    """The server's TLS context, or None without a certificate; refuses a non-loopback address without one.

    Raises:
        ProgramError: a remote address without ``allow_remote`` or without TLS, or a certificate that cannot be used.
    """
    host = settings.ipc_host
    if not is_loopback(host):
        if settings.unauthenticated:
            raise _refusal(f"unauthenticated control is allowed on a loopback address only, not '{host}'")
        if not settings.allow_remote:
            raise _refusal(
                f"ipc_host '{host}' is beyond loopback: set COMMAND_CONTROLLER.allow_remote (with tls_cert and "
                "tls_key), or keep 127.0.0.1 and reach it through an SSH tunnel (docs/security.md)"
            )
        if settings.tls_cert is None:
            raise _refusal(
                f"ipc_host '{host}' is beyond loopback and the token would cross the network in clear: "
                "set COMMAND_CONTROLLER.tls_cert and tls_key"
            )
    if settings.tls_cert is None:
        return None
    if settings.unauthenticated:
        raise _refusal("the seed's unauthenticated mode cannot use TLS: its client does not speak it")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    cert = workspace / settings.tls_cert
    key = workspace / settings.tls_key if settings.tls_key else None
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as problem:
        raise _refusal(f"cannot use the TLS certificate {cert}: {problem}") from None
    return context


def _check_share(value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise _refusal(f"COMMAND_CONTROLLER.change_share must be a number in (0, 1], not {value!r}")


def _refusal(message: str) -> ProgramError:
    return ProgramError([Diagnostic(message)])


class RateLimit:
    """A token bucket: ``per_second`` requests a second, after a first burst of as many."""

    def __init__(self, per_second: float):
        self.per_second = per_second
        self._tokens = max(per_second, 1.0)
        self._last = time.monotonic()

    def wait(self) -> None:
        """Return once one more request is allowed (at once while under the rate)."""
        now = time.monotonic()
        self._tokens = min(max(self.per_second, 1.0), self._tokens + (now - self._last) * self.per_second)
        self._last = now
        if self._tokens < 1:
            time.sleep((1 - self._tokens) / self.per_second)
            self._tokens, self._last = 1.0, time.monotonic()
        self._tokens -= 1


class ControlServer:
    def __init__(self, controller: Controller, settings: ServerSettings, workspace: Path):
        self._tls = tls_context(settings, workspace)
        self.controller = controller
        self.settings = settings
        self.workspace = workspace
        self.token = secrets.token_hex(32)
        self._slots = threading.BoundedSemaphore(settings.max_clients)
        #: Connections that have not authenticated yet, oldest first (dicts keep their order).
        self._pending: dict[socket.socket, None] = {}
        self._pending_lock = threading.Lock()
        self._stopping = threading.Event()
        self._socket = self._bind()
        self.host, self.port = self._socket.getsockname()[:2]
        token_path = Path(settings.token_file)
        self.token_path = token_path if token_path.is_absolute() else workspace / token_path
        write_private(self.token_path, self.token + "\n")
        self.info_path = self.token_path.parent / "control.json"
        # Clients on this machine reach a wildcard address through loopback (which the certificate names).
        here = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        info = {"host": here, "port": self.port, "pid": os.getpid(), "token_file": str(self.token_path)}
        if self._tls is not None:
            info["tls_cert"] = str(workspace / str(settings.tls_cert))
        self.info_path.write_text(json.dumps(info))
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
        server.listen(128)
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
            with self._pending_lock:
                if len(self._pending) >= self.settings.max_pending:
                    _shut(next(iter(self._pending)))  # its thread sees the connection end and lets go of it
                self._pending[connection] = None
            threading.Thread(
                target=self._serve, args=(connection, address), name="deepleaps-client", daemon=True
            ).start()

    def _serve(self, connection: socket.socket, address) -> None:
        mode: str | None = None  # "json" after HELLO, "seed" for the seed's client
        origin = f"{address[0]}:{address[1]}"
        slot = False  # whether it holds one of the max_clients slots
        settings = self.settings
        deadline = time.monotonic() + settings.auth_timeout
        limit = RateLimit(settings.max_requests_per_second)
        try:
            if self._tls is not None:
                connection = self._handshake(connection, deadline)
            while not self._stopping.is_set():
                left = deadline - time.monotonic() if mode is None else None
                if left is not None and left <= 0:
                    raise FrameError(f"not authenticated within {settings.auth_timeout} s")
                frame = read_frame(
                    connection,
                    max_size=settings.max_frame,
                    idle_timeout=left if left is not None else settings.idle_timeout,
                    read_timeout=min(left, settings.read_timeout) if left is not None else settings.read_timeout,
                )
                if mode is None and not _is_hello(frame):
                    if not settings.unauthenticated:
                        self._refuse_unauthenticated(connection, origin)
                        return
                    mode = "seed"
                    slot = self._authenticated(connection)
                text = frame_text(frame)
                if self._tls is None:
                    check_frame_end(connection, len(frame))
                verb, _, payload = text.strip().partition(" ")
                verb = verb.upper()
                if mode is None:  # HELLO
                    if not hmac.compare_digest(payload.strip().encode(), self.token.encode()):
                        raise FrameError("wrong token")
                    mode = "json"
                    slot = self._authenticated(connection)
                    self._reply(
                        connection,
                        {"ok": True, "verb": "HELLO", "protocol": PROTOCOL, "version": self.controller.version},
                    )
                    continue
                limit.wait()
                if not slot and verb.partition("@")[0] not in ALWAYS_SERVED:
                    self._busy(connection, mode, origin)
                    return
                if mode == "seed":
                    future = self.controller.request(verb, payload.strip(), origin)
                    future.add_done_callback(functools.partial(_log_seed_reply, verb))
                    connection.sendall(ACK)
                else:
                    reply = self.controller.request(verb, payload.strip(), origin).result()
                    self._reply(connection, reply.to_json())
        except Closed:
            pass
        except FrameError as problem:
            message = str(problem)
            if mode is None and message == "connection idle for too long":
                message = f"not authenticated within {settings.auth_timeout} s"
            self.controller.refusals.warning("control client %s: %s", origin, message)
            self._last_word(connection, mode, message)
        except (OSError, ValueError) as problem:  # a reset, a failed handshake, a connection shut to make way
            log.info("control client %s: %s", origin, problem)
        except Exception:  # a bug: the client gets an id that run.log holds with the traceback
            self._last_word(connection, mode, internal_error(f"control client {origin}"))
        finally:
            self._forget(connection)
            connection.close()
            if slot:
                self._slots.release()

    def _handshake(self, connection: socket.socket, deadline: float) -> ssl.SSLSocket:
        """The TLS handshake, within the time the connection has to authenticate."""
        assert self._tls is not None
        secure = self._tls.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        with self._pending_lock:  # the wrapped socket is the one to shut to make way
            if connection in self._pending:
                del self._pending[connection]
                self._pending[secure] = None
        try:
            secure.settimeout(max(deadline - time.monotonic(), 0.01))
            secure.do_handshake()
        except BaseException:
            self._forget(secure)
            secure.close()
            raise
        return secure

    def _authenticated(self, connection: socket.socket) -> bool:
        """The connection leaves the waiting ones; whether it got a client slot (else: STOP, STATUS, PING only)."""
        self._forget(connection)
        return self._slots.acquire(blocking=False)

    def _forget(self, connection: socket.socket) -> None:
        with self._pending_lock:
            self._pending.pop(connection, None)

    def _busy(self, connection: socket.socket, mode: str | None, origin: str) -> None:
        """A request over ``max_clients`` that is not one of ALWAYS_SERVED: refused, the client to retry."""
        self.controller.refusals.warning("control client %s: %s", origin, BUSY)
        if mode == "seed":
            _reset_on_close(connection)
            return
        with contextlib.suppress(OSError):
            self._reply(connection, {"ok": False, "busy": True, "message": BUSY})

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


def _shut(connection: socket.socket) -> None:
    """End a connection another thread reads: its read returns at once."""
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


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
