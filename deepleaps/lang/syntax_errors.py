"""Lark's parse errors → diagnostics a user can act on: what was found, what was
expected in words, and hints for the usual slips (an unclosed bracket, a bare
word where a value goes, a malformed number, a raw tab in a string).

Private to :mod:`deepleaps.lang.parser`, the only module that sees Lark.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import attrs
from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from deepleaps.lang import ast
from deepleaps.lang.diagnostics import Diagnostic, SourceText, words

if TYPE_CHECKING:
    from deepleaps.lang.parser import Locate, ParseState

OPENERS = {"LPAR": "(", "LSQB": "[", "LBRACE": "{"}
CLOSERS = {"RPAR": "LPAR", "RSQB": "LSQB", "RBRACE": "LBRACE"}
_NODE_TERMINALS = {"INSTANCE", "DEFINE", "CLASS"}
_VALUE_TERMINALS = {"INT", "FLOAT", "STRING", "TRUE", "FALSE", "NULL", "VARIABLE", "LBRACE"}
#: How expected terminals are named in messages, in the order they are listed.
_TERMINAL_WORDS = {
    "RPAR": "')'",
    "RSQB": "']'",
    "RBRACE": "'}'",
    "_ARROW": "'->'",
    "COMMA": "','",
    "EQUAL": "'='",
    "LPAR": "'('",
    "LSQB": "'['",
    "LBRACE": "'{'",
    "AS": "'as'",
    "NAME": "an argument name",
    "_NL": "a new line",
    "$END": "the end of the program",
}

_LABEL_MISSING = "'as' must be followed by a label, a name as in *Class as NAME"


def clip(text: str, limit: int = 20) -> str:
    """A literal as messages quote it: long ones are cut short with '…'."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@attrs.frozen
class Positions:
    filename: str
    locate: Locate | None
    source: SourceText

    def diagnostic(self, message: str, line: int, column: int, width: int = 1, hint=None) -> Diagnostic:
        end_column = column + width
        if self.locate is not None:
            line, column = self.locate(line, column)
            end_column = column + width
        span = ast.Span(self.filename, line, column, line, end_column)
        return Diagnostic(message, span, self.source.line(line), hint=hint)


def describe(error: UnexpectedInput, text: str, position: Positions, state: ParseState) -> Diagnostic:
    """Turn a Lark error into a message a user can act on."""
    last = state.last
    if isinstance(error, UnexpectedCharacters):
        line, column = error.line, error.column
        char = text[error.pos_in_stream]  # type: ignore[index]  # lark types it None; the lexer sets it
        expected = set(error.allowed or ())
        unexpected = None
    else:
        token = error.token if isinstance(error, UnexpectedToken) else None
        expected = set(getattr(error, "expected", None) or ())
        if token is None or token.type == "$END" or isinstance(error, UnexpectedEOF):
            return _unexpected_end(text, expected, last, state, position)
        line, column, char, unexpected = token.line, token.column, None, token

    if state.open_brackets or last is None or last.type == "_NL":
        expected.discard("_NL")  # the lexer always accepts one; here it could not end a statement
    if state.head is not None and state.head.type == "INSTANCE":
        expected.discard("AS")  # the grammar takes a label on $NAME only to refuse it by name
    _drop_impossible_closers(expected, state)
    malformed = _malformed_number(text, last, line, column)
    if malformed is not None:
        assert last is not None and last.line is not None and last.column is not None  # the number token
        return position.diagnostic(f"malformed number '{malformed}'", last.line, last.column, len(malformed))
    if unexpected is None and char == '"':
        control = _control_character(text, error.pos_in_stream)  # type: ignore[arg-type]  # lark types it None
        if control is not None:
            offset, escape = control
            return position.diagnostic(
                "a string cannot hold a raw control character",
                line,
                column + offset,
                hint=f"write it as {escape}",
            )
        return position.diagnostic("unterminated string", line, column, hint="close it with '\"' on the same line")
    if last is not None and last.type == "_ARROW" and _NODE_TERMINALS & expected:
        return position.diagnostic("'->' must be followed by a node ($NAME, NAME or *Class)", line, column)
    if last is not None and last.type == "AS":
        return position.diagnostic(_LABEL_MISSING, line, column)
    if unexpected is not None and unexpected.type in CLOSERS and not _is_open(state, unexpected.type):
        return position.diagnostic(
            f"unexpected '{unexpected}': there is no '{OPENERS[CLOSERS[unexpected.type]]}' to close",
            line,
            column,
        )
    what = _token_words(unexpected) if unexpected is not None else f"character {char!r}"
    hint = None
    if unexpected is not None and unexpected.type in ("DEFINE", "NAME") and _VALUE_TERMINALS & expected:
        hint = f'strings are written in double quotes: "{unexpected}"'
    if unexpected is None and char == "$" and (_NODE_TERMINALS | _VALUE_TERMINALS) & expected:
        hint = "'$' must be followed directly by a name, as in $NAME"
    if unexpected is None and char == "*" and _NODE_TERMINALS & expected:
        hint = "'*' must be followed directly by a class name, as in *Class"
    opener = state.open_brackets[-1] if state.open_brackets else None
    if unexpected is not None and unexpected.type in CLOSERS and opener and opener.type != CLOSERS[unexpected.type]:
        hint = f"the '{opener}' at line {opener.line}, column {opener.column} is still open"
    if unexpected is not None and unexpected.type == "COMMA" and not state.open_brackets:
        hint = "',' separates chains inside a group, as in $G( $A, $B ); a statement is one chain"
    if last is not None and last.type == "_NL":
        hint = "a statement ends at the end of its line; wrap it in ( ) or end the line with '->'"
    width = len(str(unexpected)) if unexpected is not None and unexpected.type != "_NL" else 1
    return position.diagnostic(f"unexpected {what}; expected {_expected_words(expected)}", line, column, width, hint)


def _unexpected_end(text: str, expected: set, last: Token | None, state: ParseState, position: Positions):
    if last is not None:  # just after the last token, not on trailing blank lines or comments
        assert last.end_line is not None and last.end_column is not None  # tokens from the lexer have them
        line, column = last.end_line, last.end_column
    else:
        line = text.count("\n") + 1
        column = len(text) - (text.rfind("\n") + 1) + 1
    _drop_impossible_closers(expected, state)
    hint = None
    if state.open_brackets:
        opener = state.open_brackets[-1]
        hint = f"the '{opener}' at line {opener.line}, column {opener.column} is never closed"
    if last is not None and last.type == "_ARROW":
        assert last.line is not None and last.column is not None
        return position.diagnostic("'->' with nothing after it: expected a node", last.line, last.column, 2, hint)
    if last is not None and last.type == "AS":
        return position.diagnostic(_LABEL_MISSING, line, column, 1, hint)
    return position.diagnostic(f"unexpected end of input; expected {_expected_words(expected)}", line, column, 1, hint)


def _drop_impossible_closers(expected: set, state: ParseState) -> None:
    """LALR merges states, so Lark may list closers nothing open would match:
    only the innermost open bracket's closer (and ',' inside one) can come next."""
    innermost = state.open_brackets[-1].type if state.open_brackets else None
    expected -= {closer for closer, opener in CLOSERS.items() if opener != innermost}
    if innermost is None:
        expected.discard("COMMA")


_STRING_ON_LINE = re.compile(r'"(?:[^"\\\n]|\\[^\n])*"')
_ESCAPES = {"\t": "\\t", "\r": "\\r", "\f": "\\f", "\b": "\\b"}


def _control_character(text: str, start: int) -> tuple[int, str] | None:
    """A string closed on its line but holding a raw tab (or other control character):
    the offset of that character from the opening quote, and how to write it."""
    match = _STRING_ON_LINE.match(text, start)
    if match is None:
        return None
    for offset, char in enumerate(match.group()):
        if ord(char) < 0x20:
            return offset, _ESCAPES.get(char, f"\\u{ord(char):04x}")
    return None


def _is_open(state: ParseState, closer: str) -> bool:
    return any(token.type == CLOSERS[closer] for token in state.open_brackets)


_NUMBER_TAIL = re.compile(r"[0-9A-Za-z_.+\-]*")


def _malformed_number(text: str, last: Token | None, line: int, column: int) -> str | None:
    """``1e``, ``0x1F``, ``1.2.3``: a number token glued to more number-like text."""
    if last is None or last.type not in ("INT", "FLOAT") or last.end_line != line or last.end_column != column:
        return None
    start = last.start_pos
    assert last.end_pos is not None  # tokens from the lexer have their position
    tail = _NUMBER_TAIL.match(text, last.end_pos)
    assert tail is not None  # it matches an empty tail too
    end = tail.end()
    if end == last.end_pos:
        return None
    return text[start:end]


def _token_words(token: Token) -> str:
    if token.type == "_NL":
        return "end of line"
    if token.type in ("DEFINE", "NAME"):
        return f"name '{token}'"
    if token.type in ("INT", "FLOAT"):
        return f"number {token}"
    if token.type == "STRING":
        return "string " + (str(token) if len(token) <= 20 else str(token)[:17] + '..."')
    return f"'{token}'"


def _expected_words(expected: set[str]) -> str:
    phrases = []
    if _NODE_TERMINALS & expected:
        phrases.append("a node ($NAME, NAME or *Class)")
    if _VALUE_TERMINALS & expected:
        phrases.append("a value")
    for terminal, phrase in _TERMINAL_WORDS.items():
        if terminal in expected and not (terminal in ("LSQB", "LBRACE") and _VALUE_TERMINALS & expected):
            phrases.append(phrase)
    return words(phrases) or "something else"
