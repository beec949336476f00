"""Program text → AST.

The grammar (``grammar/deepleaps.lark``) is loaded once, at import. Every
Lark tree, token and exception stays inside this module: callers get a
:class:`~deepleaps.lang.ast.Program` or a :class:`ProgramError`.
"""

from __future__ import annotations

import contextvars
import gc
import json
import math
import re
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import NoReturn

import attrs
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput

from deepleaps.lang import ast
from deepleaps.lang.diagnostics import Diagnostic, ProgramError, SourceText, decode_utf8
from deepleaps.lang.syntax_errors import CLOSERS, OPENERS, Positions, clip, describe

#: Parentheses and brackets nest at most this deep. Deeper input is an error,
#: which keeps every recursive walk of the AST (printing, equality, JSON)
#: far below Python's recursion limit.
MAX_NESTING = 64

Locate = Callable[[int, int], tuple[int, int]]

_NODE_KINDS = {"INSTANCE": ast.NodeKind.INSTANCE, "DEFINE": ast.NodeKind.DEFINE, "CLASS": ast.NodeKind.CLASS}


@attrs.define
class ParseState:
    """What the post-lexer learns during one parse."""

    comments: list[ast.Comment] = attrs.Factory(list)
    open_brackets: list[Token] = attrs.Factory(list)
    last: Token | None = None
    #: The last node reference ($NAME, NAME, *Class): the node a label would name.
    head: Token | None = None


_state: contextvars.ContextVar[ParseState] = contextvars.ContextVar("deepleaps_parse_state")


class _NestingTooDeep(Exception):
    def __init__(self, token: Token):
        self.token = token


class _PostLexer:
    """Drops comments (keeping them for the formatter), tracks bracket depth and
    keeps only the newlines that can end a statement: one per run, at depth 0,
    after a token other than '->' or ','."""

    always_accept = ("_NL", "COMMENT")

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        state = _state.get()
        for token in stream:
            kind = token.type
            if kind == "COMMENT":
                assert token.line is not None  # tokens from the lexer have their position
                state.comments.append(ast.Comment(str(token), token.line))
                continue
            if kind == "_NL" and (
                state.open_brackets or state.last is None or state.last.type in ("_ARROW", "COMMA", "_NL")
            ):
                continue
            if kind in OPENERS:
                state.open_brackets.append(token)
                if len(state.open_brackets) > MAX_NESTING:
                    raise _NestingTooDeep(token)
            elif kind in CLOSERS and state.open_brackets and state.open_brackets[-1].type == CLOSERS[kind]:
                state.open_brackets.pop()
            elif kind in _NODE_KINDS:
                state.head = token
            state.last = token
            yield token


def grammar_text() -> str:
    """The grammar file: package data ``deepleaps.grammar`` in a wheel; in a
    source checkout (editable install) the top-level ``grammar/`` folder."""
    try:
        folder = resources.files("deepleaps.grammar")
    except ModuleNotFoundError:
        folder = Path(__file__).resolve().parents[2] / "grammar"
    return folder.joinpath("deepleaps.lark").read_text(encoding="utf-8")


def _load_grammar() -> Lark:
    return Lark(
        grammar_text(),
        parser="lalr",
        start=["start", "literal"],
        propagate_positions=True,
        postlex=_PostLexer(),
        maybe_placeholders=False,
    )


_LARK = _load_grammar()

_ESCAPE = re.compile(r'\\(u[0-9a-fA-F]{4}|["\\/bfnrt])')


class _ToAst:
    """Lark tree → AST, bottom up: one method per rule, called with the rule's
    position (``meta``) and its already converted children.

    A plain recursive walk rather than a ``lark.Transformer``: the latter builds
    a ``v_args`` wrapper for every tree and looks up a method for every token,
    which cost about a sixth of the parse time.
    """

    _RULES = (
        "start",
        "chain",
        "node",
        "label",
        "children",
        "arguments",
        "argument",
        "integer",
        "float",
        "string",
        "true",
        "false",
        "null",
        "variable",
        "list",
        "mapping",
        "entry",
        "literal",
    )

    def __init__(self, filename: str, locate: Locate | None, source: SourceText):
        self.filename = filename
        self.locate = locate
        self.source = source
        self._rules = {name: getattr(self, name) for name in self._RULES}

    def transform(self, tree: Tree):
        rules = self._rules

        def build(tree: Tree):
            children = [build(child) if isinstance(child, Tree) else child for child in tree.children]
            return rules[tree.data](tree.meta, children)

        return build(tree)

    def _span(self, meta_or_token) -> ast.Span:
        m = meta_or_token
        line, column, end_line, end_column = m.line, m.column, m.end_line, m.end_column
        if self.locate is not None:
            line, column = self.locate(line, column)
            end_line, end_column = self.locate(end_line, end_column)
        return ast.Span(self.filename, line, column, end_line, end_column)

    def _fail(self, message: str, token: Token, offset: int = 0, width: int | None = None, hint=None) -> NoReturn:
        span = self._span(token)
        column = span.column + offset
        end = column + (width if width is not None else span.end_column - span.column - offset)
        span = attrs.evolve(span, column=column, end_line=span.line, end_column=end)
        raise ProgramError([Diagnostic(message, span, self.source.line(span.line), hint=hint)])

    def start(self, meta, chains):
        return ast.Program(chains, comments=_state.get().comments, span=self._span(meta))

    def chain(self, meta, nodes):
        return ast.Chain(nodes, span=self._span(meta))

    def node(self, meta, parts):
        head, *rest = parts
        kind = _NODE_KINDS[head.type]
        name = str(head)[len(kind.value) :]
        arguments: tuple = ()
        children: tuple = ()
        label: _Label | None = None
        for part in rest:
            if isinstance(part, _Arguments):
                arguments = part.items
            elif isinstance(part, _Label):
                label = part
            else:
                children = part
        if label is not None and kind is ast.NodeKind.INSTANCE:
            raise ProgramError(
                [
                    Diagnostic(
                        f"'{head}' names an instance already and cannot take a label",
                        label.clause,
                        self.source.line(label.clause.line),
                        hint=f"a label names a fresh instance: '{name} as {label.name}' or '*Class as {label.name}'",
                    )
                ]
            )
        seen: dict[str, ast.Argument] = {}
        for argument in arguments:
            if argument.name in seen:
                raise ProgramError(
                    [
                        Diagnostic(
                            f"argument '{argument.name}' is given twice",
                            argument.span,
                            self.source.line(argument.span.line),
                        )
                    ]
                )
            seen[argument.name] = argument
        if label is None:
            return ast.Node(kind, name, arguments, children, span=self._span(meta))
        return ast.Node(kind, name, arguments, children, label=label.name, span=self._span(meta), label_span=label.span)

    def label(self, meta, parts):
        return _Label(str(parts[0]), self._span(parts[0]), self._span(meta))

    def children(self, meta, chains):
        return tuple(chains)

    def arguments(self, meta, items):
        return _Arguments(tuple(items))

    def argument(self, meta, parts):
        name, value = parts
        return ast.Argument(str(name), value, span=self._span(meta))

    def integer(self, meta, parts):
        try:
            value = int(parts[0])
        except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
            value = None
        if value is None:  # outside the except block: the ValueError is no context of the error
            self._fail(f"integer literal too long: {clip(parts[0])} has {len(parts[0].lstrip('-'))} digits", parts[0])
        return ast.Integer(value, span=self._span(meta))

    def float(self, meta, parts):
        value = float(parts[0])
        if math.isinf(value):
            self._fail(f"number out of range: {clip(parts[0])}", parts[0])
        return ast.Float(value, span=self._span(meta))

    def string(self, meta, parts):
        return ast.String(self._decode(parts[0]), span=self._span(meta))

    def true(self, meta, parts):
        return ast.Boolean(True, span=self._span(meta))

    def false(self, meta, parts):
        return ast.Boolean(False, span=self._span(meta))

    def null(self, meta, parts):
        return ast.Null(span=self._span(meta))

    def variable(self, meta, parts):
        return ast.Variable(str(parts[0])[1:], span=self._span(meta))

    def list(self, meta, items):
        return ast.List(items, span=self._span(meta))

    def mapping(self, meta, entries):
        seen = set()
        for entry in entries:
            if entry.name in seen:
                raise ProgramError(
                    [Diagnostic(f"key '{entry.name}' is given twice", entry.span, self.source.line(entry.span.line))]
                )
            seen.add(entry.name)
        return ast.Mapping(entries, span=self._span(meta))

    def entry(self, meta, parts):
        key, value = parts
        name = self._decode(key) if key.type == "STRING" else str(key)
        return ast.Argument(name, value, span=self._span(meta))

    def literal(self, meta, parts):
        return parts[0]

    def _decode(self, token: Token) -> str:
        text = str(token)
        if "\\" not in text:
            return text[1:-1]
        position = 1
        while (position := text.find("\\", position)) >= 0:
            match = _ESCAPE.match(text, position)
            if match is None:
                escape = text[position : position + 2]
                self._fail(
                    f"invalid escape '{escape}' in string",
                    token,
                    offset=position,
                    width=len(escape),
                    hint='valid escapes: \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX',
                )
            position = match.end()
        value = json.loads(text)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self._fail("string holds an unpaired surrogate escape (\\uD800-\\uDFFF)", token)
        return value


@attrs.frozen
class _Arguments:
    items: tuple


@attrs.frozen
class _Label:
    name: str
    #: The name; ``clause``: ``as NAME``.
    span: ast.Span
    clause: ast.Span


def parse(
    text: str | bytes,
    filename: str = "<program>",
    *,
    locate: Locate | None = None,
    source: SourceText | None = None,
) -> ast.Program:
    """Parse program text into a :class:`~deepleaps.lang.ast.Program`.

    Args:
        text: the program; bytes must be UTF-8.
        filename: the name diagnostics and spans show.
        locate: maps (line, column) in ``text`` to the position in ``source``,
            for programs embedded in another file (a YAML string).
        source: the file whose lines diagnostics show; ``text`` by default.

    Raises:
        ProgramError: with the position, the line, a caret and what was expected.

    Example:
        >>> parse("$root( $A -> $B )").statements[0].nodes[0].name
        'root'
    """
    return _parse(text, filename, "start", locate, source)


def parse_value(text: str | bytes, filename: str = "<value>") -> ast.Value:
    """Parse one literal value, as SET and EXPORT take it: ``0.01``, ``"x"``, ``[1, 2]``, ``{a=1}``.

    Example:
        >>> parse_value("[1, 2.5]").items[1].value
        2.5
    """
    return _parse(text, filename, "literal", None, None)


def _parse(text, filename: str, start: str, locate: Locate | None, source: SourceText | None):
    if isinstance(text, bytes):
        text = decode_utf8(text, filename)
    source = source or SourceText(filename, text)
    position = Positions(filename, locate, source)
    if not text.strip() or _only_comments(text):
        what = "empty program: expected a node such as '$root( … )'" if start == "start" else "expected a value"
        raise ProgramError([position.diagnostic(what, 1, 1)])
    token = _state.set(ParseState())
    # A parse allocates several objects per token and frees almost none until it
    # returns, so each run of the cyclic collector would walk the whole growing
    # tree: time per node would grow with the size of the program (2x slower per
    # node at 100,000 nodes). Nothing here builds reference cycles, so the
    # collector is paused for the parse and restored as it was.
    collecting = gc.isenabled()
    gc.disable()
    try:
        tree = _LARK.parse(text, start=start)
        return _ToAst(filename, locate, source).transform(tree)
    except _NestingTooDeep as error:
        assert error.token.line is not None and error.token.column is not None
        raise ProgramError(
            [
                position.diagnostic(
                    f"nesting deeper than {MAX_NESTING} levels of '(', '[' and '{{'",
                    error.token.line,
                    error.token.column,
                )
            ]
        ) from None
    except UnexpectedInput as error:
        raise ProgramError([describe(error, text, position, _state.get())]) from None
    finally:
        _state.reset(token)
        if collecting:
            gc.enable()


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.split("\n"))
