"""How the dashboard reaches the training: the controller's one way in, never a second one.

A request from the page is a ``VERB payload`` like any other: queued, carried out at the
next safe point with the commit protocol, journaled, answered with the same reply.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, Protocol

from deepleaps.control.client import Client, ControlError
from deepleaps.control.engine import Controller


class Link(Protocol):
    async def request(self, verb: str, payload: str = "") -> dict[str, Any]:
        """The JSON reply to ``VERB payload``.

        Raises:
            ControlError: the training cannot be reached.
        """
        ...


class ControllerLink:
    """In the training's process (``deepleaps run --dashboard``): requests go to its Controller."""

    def __init__(self, controller: Controller):
        self.controller = controller

    async def request(self, verb: str, payload: str = "") -> dict[str, Any]:
        # Off the event loop: a request may wait for its turn (deepleaps.control.pacing).
        future = await asyncio.to_thread(self.controller.request, verb, payload, "dashboard")
        return (await asyncio.wrap_future(future)).to_json()


class ClientLink:
    """In a process of its own (``deepleaps dashboard``): requests go over the control channel.

    The page's feed reads STATUS and DOT, answered at once, on one connection it keeps; each
    change gets a connection of its own, since a connection's requests are served in order
    and a change waits for its safe point.
    """

    def __init__(self, connect: Callable[[], Client]):
        self._connect = connect
        self._kept: Client | None = None
        self._lock = threading.Lock()

    async def request(self, verb: str, payload: str = "") -> dict[str, Any]:
        if verb.upper() in ("STATUS", "DOT"):
            return await asyncio.to_thread(self._send_kept, verb, payload)
        return await asyncio.to_thread(self._send_once, verb, payload)

    def _send_once(self, verb: str, payload: str) -> dict[str, Any]:
        with self._connect() as client:
            return client.send(verb, payload)

    def _send_kept(self, verb: str, payload: str) -> dict[str, Any]:
        with self._lock:
            try:
                if self._kept is None:
                    self._kept = self._connect().connect()
                return self._kept.send(verb, payload)
            except ControlError:
                self.close()
                raise

    def close(self) -> None:
        if self._kept is not None:
            self._kept.close()
            self._kept = None
