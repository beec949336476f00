"""Errors a user can cause, rendered as ``file:line:col``, the line and a caret.

:class:`ProgramError` is the one exception type for user mistakes, in any
stage; it carries one or more :class:`Diagnostic`. :class:`InternalError`
is for bugs in deepleaps itself and is never raised for bad input.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

import attrs

from deepleaps.lang.ast import Span

#: A source line longer than this is shown as a window around the column.
DISPLAY_WIDTH = 100


@attrs.frozen
class SourceText:
    """The text a span points into, used to show the offending line."""

    name: str
    text: str = attrs.field(repr=False)
    #: Where each line starts, found the first time a line is looked up: a text may have a
    #: diagnostic on each of its lines, and each must not search the text from its start.
    _starts: list[int] | None = attrs.field(default=None, init=False, repr=False, eq=False)

    def line(self, number: int) -> str:
        starts = self._starts
        if starts is None:
            starts = [0, *(match.end() for match in re.finditer("\n", self.text))]
            object.__setattr__(self, "_starts", starts)
        if number > len(starts):
            return ""
        number = max(number, 1)
        end = starts[number] - 1 if number < len(starts) else len(self.text)
        return self.text[starts[number - 1] : end].rstrip("\r")


@attrs.frozen
class Diagnostic:
    message: str
    span: Span | None = None
    source_line: str | None = None
    severity: str = "error"
    hint: str | None = None

    def render(self, *, severity: bool = True) -> str:
        """``file:line:col: error: message``, the line with a caret, the hint; without ``error:`` when
        ``severity`` is false (for a message whose own prefix says it already)."""
        location = f"{self.span}: " if self.span else ""
        lines = [f"{location}{self.severity}: {self.message}" if severity else f"{location}{self.message}"]
        if self.span and self.source_line is not None:
            lines.extend(_excerpt(self.source_line, self.span))
        if self.hint:
            lines.append(f"  = {self.hint}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        """The fields a socket client needs: message, line, column, rendered text."""
        return {
            "message": self.message,
            "severity": self.severity,
            "file": self.span.file if self.span else None,
            "line": self.span.line if self.span else None,
            "column": self.span.column if self.span else None,
            "text": self.render(),
        }


def _excerpt(line: str, span: Span) -> list[str]:
    """The source line (clipped around the column when long) with a caret under it."""
    column = span.column - 1
    width = 1
    if span.end_line == span.line and span.end_column > span.column:
        width = span.end_column - span.column
    prefix = ""
    if len(line) > DISPLAY_WIDTH:
        start = max(0, min(column - DISPLAY_WIDTH // 2, len(line) - DISPLAY_WIDTH))
        clipped = line[start : start + DISPLAY_WIDTH]
        prefix = "…" if start else ""
        suffix = "…" if start + DISPLAY_WIDTH < len(line) else ""
        line, column = prefix + clipped + suffix, column - start + len(prefix)
    width = max(1, min(width, len(line) - column))
    shown = line.replace("\t", " ")
    return [f"    {shown}", "    " + " " * column + "^" + "~" * (width - 1)]


class ProgramError(Exception):
    """A user mistake: bad syntax, unknown name, bad argument, YAML error …"""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = tuple(diagnostics)
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(d.render() for d in self.diagnostics)

    @property
    def first(self) -> Diagnostic:
        return self.diagnostics[0]


def describe(problem: BaseException) -> str:
    """What went wrong, to follow the prefix of another message (``node X failed: …``).

    A :class:`ProgramError` is a user's mistake and says so in its own words: its
    diagnostics without their severity, which the message around them gives once.
    Any other exception is named by its type, which tells a bug or a failing
    environment apart from a mistake in the input.
    """
    if isinstance(problem, ProgramError):
        return "\n".join(diagnostic.render(severity=False) for diagnostic in problem.diagnostics)
    return f"{type(problem).__name__}: {problem}"


class InternalError(Exception):
    """A bug in deepleaps, never the user's input."""


def error(message: str, span: Span | None = None, source: SourceText | None = None, **kw) -> Diagnostic:
    """A diagnostic whose source line is looked up in ``source``."""
    line = source.line(span.line) if source and span else None
    return Diagnostic(message, span, line, **kw)


def closest(name: str, candidates: Iterable[str], limit: int = 3) -> list[str]:
    """The valid names nearest to a misspelt one, best first."""
    return difflib.get_close_matches(name, sorted(set(candidates)), n=limit, cutoff=0.6)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    matches = closest(name, candidates)
    if not matches:
        return None
    return "did you mean " + " or ".join(f"'{m}'" for m in matches) + "?"


def words(items: Iterable[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def decode_utf8(data: bytes, filename: str) -> str:
    """Decode source bytes (a leading byte-order mark is dropped); a bad byte is a
    ProgramError at its line and column."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line_start = data.rfind(b"\n", 0, error.start) + 1
        line = data.count(b"\n", 0, error.start) + 1
        prefix = data[line_start : error.start].decode("utf-8", errors="replace")
        column = len(prefix) + 1
        shown = data[line_start:].split(b"\n", 1)[0].decode("utf-8", errors="replace")
        span = Span(filename, line, column, line, column + 1)
        bad = data[error.start]
        raise ProgramError([Diagnostic(f"the file is not valid UTF-8 (byte 0x{bad:02x})", span, shown)]) from None
