"""Serving the dashboard with uvicorn: in a thread beside a training, or in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import threading

import uvicorn

from deepleaps.dashboard.app import make_app
from deepleaps.dashboard.feed import Feed
from deepleaps.dashboard.link import Link
from deepleaps.dashboard.settings import DashboardSettings
from deepleaps.lang.diagnostics import Diagnostic, ProgramError, describe


class _Server(uvicorn.Server):
    """uvicorn's server, doing its housekeeping (the Date header, the exit flag) once a second
    rather than ten times: beside a training, every wake-up of its thread takes the GIL from
    the training for a moment. :meth:`wake` makes it look at the exit flag at once."""

    async def main_loop(self) -> None:
        self._woken = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter += 10  # on_tick refreshes the Date header when counter % 10 == 0
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._woken.wait(), 1.0)

    def wake(self) -> None:
        """Look at the exit flag now (call on the server's loop)."""
        if hasattr(self, "_woken"):
            self._woken.set()


class Dashboard:
    """The page's server, bound at once (so that its URL is known, and a port that is taken
    is an error, before anything starts), with a fresh token (48 hex digits) that every
    request must carry.

    Raises:
        ProgramError: the address cannot be bound.
    """

    def __init__(self, settings: DashboardSettings):
        self.token = secrets.token_hex(24)
        self.settings = settings
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        try:
            self._socket = socket.create_server((settings.host, settings.port), family=family)
        except OSError as problem:
            where = f"{settings.host}:{settings.port}"
            raise ProgramError([Diagnostic(f"the dashboard cannot serve at {where}: {describe(problem)}")]) from None
        host, port = self._socket.getsockname()[:2]
        self.url = f"http://{f'[{host}]' if family == socket.AF_INET6 else host}:{port}/?token={self.token}"
        self.feed: Feed | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _prepare(self, link: Link) -> _Server:
        self.feed = Feed(link, self.settings.interval, self.settings.max_points)
        config = uvicorn.Config(
            make_app(self.feed, link, self.token),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        return self._server

    def serve(self, link: Link) -> None:
        """Serve requests to ``link`` until Ctrl-C (SIGINT) or SIGTERM."""
        self._prepare(link).run(sockets=[self._socket])

    def start(self, link: Link) -> Dashboard:
        """Serve requests to ``link`` in a thread of this process, until :meth:`close`."""
        self._prepare(link)
        self._thread = threading.Thread(target=self._serve_here, name="deepleaps-dashboard", daemon=True)
        self._thread.start()
        return self

    def _serve_here(self) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            assert self._server is not None  # start() made it
            await self._server.serve(sockets=[self._socket])

        asyncio.run(serve())

    def close(self, reason: str | None = None) -> None:
        """End every page's event stream, telling it ``reason``, and stop serving."""
        if self._server is not None:
            self._server.should_exit = True
        if self._loop is not None and self._server is not None and self.feed is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                self._loop.call_soon_threadsafe(self.feed.close, reason)
                self._loop.call_soon_threadsafe(self._server.wake)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()
