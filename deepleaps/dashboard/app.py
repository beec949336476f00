"""The dashboard's web application: the page, its event stream and its one API call, behind a token.

Every path needs the token: in the URL (``?token=…``, as the printed URL has it), in a
cookie the first visit sets, or as ``Authorization: token …``; anything else is refused
with 403. The API takes JSON only, which a form on another site cannot send.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from deepleaps.control.client import ControlError, reply_lines
from deepleaps.control.framing import DEFAULT_MAX_FRAME
from deepleaps.dashboard.feed import Feed
from deepleaps.dashboard.link import Link

STATIC = Path(__file__).parent / "static"
#: ``VERB`` or ``VERB@N``, as ``deepleaps send`` takes it.
_VERB = re.compile(r"^[A-Za-z_]+(@\d+)?$")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGI = Callable[[Scope, Receive, Send], Awaitable[None]]


class TokenGate:
    """ASGI middleware: a request without the right token gets 403; one with it in the URL
    also gets it as a cookie (HttpOnly, SameSite=Strict), for the page's further requests."""

    def __init__(self, app: ASGI, token: str):
        self.app = app
        self.token = token
        # Cookies are kept per host, not per port: a name of its own for each dashboard.
        self.cookie = "deepleaps-" + hashlib.sha256(token.encode()).hexdigest()[:12]

    def _given(self, scope: Scope) -> tuple[str | None, bool]:
        """The token the request carries, and whether it came in the URL."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("token"):
            return query["token"][0], True
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "token":
            return value.strip(), False
        cookie = SimpleCookie()
        cookie.load(headers.get("cookie", ""))
        return (cookie[self.cookie].value if self.cookie in cookie else None), False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given, in_url = self._given(scope)
        if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            refusal = PlainTextResponse(
                "403: this dashboard needs its token: open the URL it printed (…/?token=…)", status_code=403
            )
            await refusal(scope, receive, send)
            return
        if not in_url:
            await self.app(scope, receive, send)
            return
        cookie = f"{self.cookie}={self.token}; Path=/; HttpOnly; SameSite=Strict"

        async def send_with_cookie(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"set-cookie", cookie.encode("latin-1")))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def make_app(feed: Feed, link: Link, token: str) -> ASGI:
    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def events(request: Request) -> Response:
        queue = feed.subscribe()

        async def stream():
            try:
                while (event := await queue.get()) is not None:
                    yield f"data: {json.dumps(event)}\n\n"
            finally:
                feed.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def api(request: Request) -> Response:
        """``{"verb": …, "payload": …}``: the reply, with the lines ``deepleaps send`` prints of it."""
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"ok": False, "message": "the API takes application/json"}, status_code=415)
        body = await request.body()
        if len(body) > DEFAULT_MAX_FRAME:
            message = f"a request of {len(body)} bytes is over the limit of {DEFAULT_MAX_FRAME} bytes"
            return JSONResponse({"ok": False, "message": message}, status_code=413)
        try:
            data = json.loads(body)
            verb, payload = data["verb"], data.get("payload", "")
        except (ValueError, TypeError, KeyError):
            return JSONResponse({"ok": False, "message": 'the API takes {"verb": …, "payload": …}'}, status_code=400)
        if not isinstance(verb, str) or not _VERB.match(verb) or not isinstance(payload, str):
            return JSONResponse({"ok": False, "message": "verb: VERB or VERB@N; payload: text"}, status_code=400)
        try:
            reply = await link.request(verb, payload)
        except ControlError as problem:
            reply = {"ok": False, "verb": verb.upper(), "message": str(problem)}
        reply["lines"] = reply_lines(reply)
        return JSONResponse(reply)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(feed.run())
        try:
            yield
        finally:
            feed.close()
            task.cancel()

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/", page),
            Route("/events", events),
            Route("/api/request", api, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC)),
        ],
    )
    return TokenGate(app, token)
