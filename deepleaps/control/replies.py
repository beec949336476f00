"""Replies to control requests: what a client is told, bounded whatever it sent (docs/control.md).

A refusal holds at most :data:`MAX_DIAGNOSTICS` diagnostics and :data:`MAX_REPLY`
bytes; refusals reach run.log at most :data:`LOGGED_PER_SECOND` a second; an
unexpected exception is answered with an id, never with its text.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from typing import Any

import attrs

from deepleaps.lang import ProgramError
from deepleaps.lang.diagnostics import Diagnostic

log = logging.getLogger("deepleaps.control")

#: The most diagnostics a reply holds; one more says how many were left out. A request
#: may hold as many mistakes as it has characters.
MAX_DIAGNOSTICS = 20
#: The most characters of one message in a refusal (a diagnostic may quote a name of any
#: length), and of a refusal in run.log.
MAX_TEXT = 4096
#: The most bytes of a refusal's JSON: its texts are cut to fit, each saying so.
MAX_REPLY = 64 * 1024
#: The most refusals run.log takes a second; the rest are counted (see :class:`RefusalLog`).
LOGGED_PER_SECOND = 10


def cut(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and a note of how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters cut]"


def _cut_texts(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return cut(value, limit)
    if isinstance(value, dict):
        return {key: _cut_texts(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut_texts(item, limit) for item in value]
    return value


def _fit(body: dict[str, Any]) -> dict[str, Any]:
    """A refusal's JSON body within :data:`MAX_REPLY` bytes: every text cut to a length that
    fits (halved until it does; at length 0 only the notes are left, which always fit)."""
    fitted, limit = body, MAX_TEXT
    while len(json.dumps(fitted)) > MAX_REPLY and limit > 0:
        limit //= 2
        fitted = _cut_texts(body, limit)
    return fitted


@attrs.frozen
class Reply:
    """The answer to one request; ``to_json`` is what a HELLO client receives."""

    ok: bool
    verb: str
    message: str = ""
    version: int | None = None
    patch_id: int | None = None
    diff: tuple[str, ...] = ()
    script: dict | None = None
    point: dict | None = None
    errors: tuple[Diagnostic, ...] = ()
    data: Any = None

    def to_json(self) -> dict:
        body: dict[str, Any] = {"ok": self.ok, "verb": self.verb}
        for key in ("message", "version", "patch_id", "script", "point", "data"):
            value = getattr(self, key)
            if value not in (None, ""):
                body[key] = value
        if self.diff:
            body["diff"] = list(self.diff)
        if self.errors:
            body["errors"] = [diagnostic.to_json() for diagnostic in self.errors]
            first = self.errors[0]
            body.setdefault("message", first.message)
            if first.span is not None:
                body["line"], body["column"] = first.span.line, first.span.column
        # A refusal's texts come from the request and may be as long as it; what a change
        # that was carried out returns (a script, a tree, a document) is whole.
        return body if self.ok else _fit(body)


def failure(verb: str, problem: ProgramError | str) -> Reply:
    """A refusal, bounded whatever the request held: the first :data:`MAX_DIAGNOSTICS`
    diagnostics and a note of how many more, each message at most :data:`MAX_TEXT` long."""
    if not isinstance(problem, ProgramError):
        return Reply(False, verb, cut(problem, MAX_TEXT))
    shown = [attrs.evolve(d, message=cut(d.message, MAX_TEXT)) for d in problem.diagnostics[:MAX_DIAGNOSTICS]]
    left = len(problem.diagnostics) - len(shown)
    if left:
        shown.append(Diagnostic(f"and {left} more not shown (a reply holds {MAX_DIAGNOSTICS})", severity="note"))
    return Reply(False, verb, ProgramError(shown).render(), errors=tuple(shown))


class RefusalLog:
    """Refusals in run.log, at most :data:`LOGGED_PER_SECOND` a second, so that a client
    that floods the channel cannot flood the log. Those left out are counted; the count
    is logged before the next refusal that is, and by :meth:`flush`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._second = 0.0
        self._logged = 0
        self._left_out = 0

    def warning(self, message: str, *args: Any) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._second >= 1.0:
                self._second, self._logged = now, 0
            if self._logged >= LOGGED_PER_SECOND:
                self._left_out += 1
                return
            self._logged += 1
        self.flush()
        log.warning(message, *args)

    def flush(self) -> None:
        """Log how many refusals were left out since the last line that said so."""
        with self._lock:
            left_out, self._left_out = self._left_out, 0
        if left_out:
            log.warning("%d more rejections not logged", left_out)


def internal_error(what: str) -> str:
    """Log the exception being handled, with its traceback, under a fresh id; the message
    a client gets instead of it (which would tell it about the code, not its request)."""
    incident = secrets.token_hex(4)
    log.error("internal error %s while serving %s", incident, what, exc_info=True)
    return f"internal error {incident}"


def stale(base: int | None, version: int) -> str:
    """Why a request made against version ``base`` is refused at ``version``."""
    return (
        f"stale: made against version {base}, the program is at version {version}; "
        "look at it again (STATUS, DIFF) and resend"
    )
