"""Hypothesis strategies for the command language.

``programs()`` generates :class:`deepleaps.lang.ast.Program` values of every
form the grammar allows: the three node kinds, dotted class names, labels, inline
arguments with every literal kind (lists and mappings nested), chains, children groups, several
statements and deep nesting. ``program_texts()`` renders such a program as
source text with random layout (spaces, tabs, newlines where they are free,
``#`` comments, trailing commas, alternative spellings of literals and of
mapping keys) using a
token-level renderer that is independent of the canonical printer.
"""

from __future__ import annotations

import functools
import json
import re
import string

import attrs
from hypothesis import strategies as st

from deepleaps.lang import MAX_NESTING, ast

# ---- names --------------------------------------------------------------------

_IDENT_START = string.ascii_letters + "_"
_IDENT_REST = _IDENT_START + string.digits

#: Names that are easy to get wrong: keywords of the value syntax used as node
#: or argument names, names that look like numbers' exponents, the seed's names.
SPECIAL_NAMES = (
    "root",
    "true",
    "false",
    "null",
    "e",
    "E1",
    "_",
    "__",
    "_1",
    "x" * 40,
    "TRAINING_STEP",
    "MAIN_MODEL_SAVE",
    "as",
)

identifiers = st.one_of(
    st.sampled_from(SPECIAL_NAMES),
    st.builds(lambda first, rest: first + rest, st.sampled_from(_IDENT_START), st.text(_IDENT_REST, max_size=6)),
)
"""A name matching ``[A-Za-z_][A-Za-z0-9_]*``."""

dotted_names = st.lists(identifiers, min_size=1, max_size=4).map(".".join)
"""``a`` or ``a.b.c``: class names and variable names."""

# ---- literal values -----------------------------------------------------------

integers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**63 - 1, -(2**63), 2**64, -(10**40), 10**100, -(10**300)]),
)

floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            0.0,
            -0.0,
            1.0,
            -1.5,
            0.1,
            1e-3,
            1e-300,
            -1e-300,
            5e-324,
            -5e-324,
            2.5e-08,
            1e16,
            1e22,
            -1e100,
            123456789.125,
            1.7976931348623157e308,
            -1.7976931348623157e308,
        ]
    ),
)

#: Characters that stress string escaping and the lexer.
TRICKY_CHARACTERS = '"\\/\n\r\t\b\f\x00\x01\x1f\x7f\x85\u2028\u2029\ufeff#$*->()[],=. é€😀\U0010ffff'

strings = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=8),
    st.text(st.sampled_from(TRICKY_CHARACTERS), max_size=8),
)
"""Any text without surrogates: control characters, quotes, backslashes, astral characters."""

scalars = st.one_of(
    st.builds(ast.Integer, integers),
    st.builds(ast.Float, floats),
    st.builds(ast.String, strings),
    st.builds(ast.Boolean, st.booleans()),
    st.builds(ast.Null),
    st.builds(ast.Variable, dotted_names),
)


#: A mapping key: a name, or any string (written in quotes).
mapping_keys = st.one_of(identifiers, strings)


def _mapping(entries) -> ast.Mapping:
    return ast.Mapping([ast.Argument(key, value) for key, value in entries])


@functools.cache
def values(depth: int = 2) -> st.SearchStrategy[ast.Value]:
    """A literal; lists and mappings nest at most ``depth`` levels of ``[`` and ``{``."""
    if depth <= 0:
        return scalars
    inner = values(depth - 1)
    return st.one_of(
        scalars,
        st.lists(inner, max_size=3).map(ast.List),
        st.lists(st.tuples(mapping_keys, inner), max_size=3, unique_by=lambda pair: pair[0]).map(_mapping),
    )


@functools.cache
def arguments(depth: int = 2) -> st.SearchStrategy[tuple[ast.Argument, ...]]:
    """Inline arguments with unique names; lists and mappings in their values
    nest at most ``depth`` deep."""
    pairs = st.lists(st.tuples(identifiers, values(depth)), max_size=3, unique_by=lambda pair: pair[0])
    return pairs.map(lambda items: tuple(ast.Argument(name, value) for name, value in items))


# ---- nodes, chains, programs ----------------------------------------------------

_labels = st.one_of(st.none(), st.none(), identifiers)

heads = st.one_of(
    st.tuples(st.just(ast.NodeKind.INSTANCE), identifiers, st.none()),
    st.tuples(st.just(ast.NodeKind.DEFINE), identifiers, _labels),
    st.tuples(st.just(ast.NodeKind.CLASS), dotted_names, _labels),
)
"""``(kind, name, label)``: ``$NAME``, ``NAME`` or ``*pkg.Class``, the last two sometimes
with a label (``NAME as LABEL``)."""


def _node(head, arguments=(), children=()) -> ast.Node:
    kind, name, label = head
    return ast.Node(kind, name, arguments, children, label=label)


@functools.cache
def nodes(depth: int) -> st.SearchStrategy[ast.Node]:
    """A node whose brackets (``[`` of arguments and lists, ``(`` of children)
    nest at most ``depth`` levels."""
    if depth <= 0:
        return st.builds(_node, heads)
    # Mostly leaves, so that a program stays small while some paths nest deep.
    children = st.one_of(st.just(()), st.just(()), st.lists(chains(depth - 1), min_size=1, max_size=2))
    return st.builds(
        _node,
        heads,
        st.one_of(st.just(()), arguments(min(depth - 1, 2))),
        children,
    )


@functools.cache
def chains(depth: int) -> st.SearchStrategy[ast.Chain]:
    return st.lists(nodes(depth), min_size=1, max_size=3).map(ast.Chain)


@st.composite
def deep_nodes(draw, levels: int) -> ast.Node:
    """A node with a path of exactly ``levels`` nested children groups (each
    level with random arguments and sibling chains), and a leaf whose
    argument is a list nested a few levels deep."""
    innermost_lists = draw(st.integers(0, 3))
    value: ast.Value = draw(scalars)
    for _ in range(innermost_lists):
        value = ast.List([value])
    node = _node(draw(heads), [ast.Argument("deep", value)])
    for _ in range(levels):
        head = draw(heads)
        before = draw(st.lists(chains(0), max_size=1))
        after = draw(st.lists(chains(0), max_size=1))
        left = draw(st.lists(nodes(0), max_size=1))
        right = draw(st.lists(nodes(0), max_size=1))
        args = draw(st.one_of(st.just(()), arguments(0)))
        chain = ast.Chain([*left, node, *right])
        node = _node(head, args, [*before, chain, *after])
    return node


def nesting(node) -> int:
    """How deep the brackets ``(``, ``[`` and ``{`` of ``node``'s text nest."""
    if isinstance(node, ast.Program):
        return max(nesting(chain) for chain in node.statements)
    if isinstance(node, ast.Chain):
        return max(nesting(item) for item in node.nodes)
    if isinstance(node, ast.Node):
        inner = [1 + nesting(argument.value) for argument in node.arguments]
        inner += [1 + nesting(chain) for chain in node.children]
        return max(inner, default=0)
    if isinstance(node, ast.List):
        return 1 + max((nesting(item) for item in node.items), default=0)
    if isinstance(node, ast.Mapping):
        return 1 + max((nesting(entry.value) for entry in node.entries), default=0)
    return 0


def programs(depth: int = 5) -> st.SearchStrategy[ast.Program]:
    """Programs of one to three statements; most nest up to ``depth`` levels,
    some carry a statement nested between 5 and 16 levels deep."""
    assert depth < MAX_NESTING
    shallow = st.lists(chains(depth), min_size=1, max_size=3)
    deep = st.tuples(
        st.lists(chains(1), max_size=1),
        st.integers(5, 16).flatmap(deep_nodes),
        st.lists(chains(1), max_size=1),
    ).map(lambda parts: [*parts[0], ast.Chain([parts[1]]), *parts[2]])
    return st.one_of(shallow, deep).map(ast.Program)


# ---- source text with random layout ---------------------------------------------

#: A comment's text: '#' and anything but a newline (the newline that ends it is layout).
comments = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\n"), max_size=12).map(
    lambda text: "#" + text
)

#: Layout between two tokens on one line.
inline_gaps = st.sampled_from(["", "", " ", "  ", "\t", " \t "])

#: Layout where newlines are free: blanks, line breaks (also CRLF) and comments.
free_gaps = st.one_of(
    inline_gaps,
    st.sampled_from(["\n", "\n\n", "\r\n", " \n\t", "  # note\n", "#\n", '\t# $x -> ( [ " , =\n  ', "\n#a\n#b\n"]),
    st.lists(
        st.one_of(inline_gaps, st.sampled_from(["\n", "\r\n"]), comments.map(lambda text: text + "\n")),
        max_size=4,
    ).map("".join),
)

_COMMENT = re.compile(r"#[^\n]*")


@attrs.define
class _Renderer:
    """Writes tokens with random gaps; newlines only where the grammar frees them."""

    draw: object
    parts: list[str] = attrs.Factory(list)
    comments: list[str] = attrs.Factory(list)
    depth: int = 0
    free: bool = True  # may the next gap hold newlines? (program start: yes)

    def gap(self, *, newline: bool = False) -> None:
        """A gap between tokens; ``newline`` forces a line break (statement end)."""
        text = self.draw(free_gaps if newline or self.free else inline_gaps)
        if newline and "\n" not in text:
            text += "\n"
        self.comments.extend(_COMMENT.findall(text))
        self.parts.append(text)

    def token(self, text: str) -> None:
        self.parts.append(text)
        if text in ("(", "[", "{"):
            self.depth += 1
        elif text in (")", "]", "}"):
            self.depth -= 1
        self.free = self.depth > 0 or text == "->"

    def spaced(self, text: str) -> None:
        self.gap()
        self.token(text)

    # ---- the grammar, one rule per method ----

    def program(self, program: ast.Program) -> None:
        for index, chain in enumerate(program.statements):
            self.gap(newline=index > 0)
            self.chain(chain)
        self.gap(newline=self.draw(st.booleans()))  # trailing blanks, newlines, comments

    def chain(self, chain: ast.Chain) -> None:
        for index, node in enumerate(chain.nodes):
            if index:
                self.spaced("->")
                self.gap()
            self.node(node)

    def node(self, node: ast.Node) -> None:
        self.token(node.kind.value + node.name)
        if node.arguments or self.draw(st.integers(0, 9)) == 0:
            self.spaced("[")
            for index, argument in enumerate(node.arguments):
                if index:
                    self.spaced(",")
                self.spaced(argument.name)
                self.spaced("=")
                self.value(argument.value)
            self.trailing_comma(bool(node.arguments))
            self.spaced("]")
        if node.label is not None:
            for word in ("as", node.label):  # a gap, and at least one blank: 'as' is a word
                self.gap()
                self.parts.append(self.draw(inline_gaps.filter(bool)))
                self.token(word)
        if node.children:
            self.spaced("(")
            for index, chain in enumerate(node.children):
                if index:
                    self.spaced(",")
                self.gap()
                self.chain(chain)
            self.trailing_comma(True)
            self.spaced(")")

    def trailing_comma(self, allowed: bool) -> None:
        if allowed and self.draw(st.booleans()):
            self.spaced(",")

    def value(self, value: ast.Value) -> None:
        if isinstance(value, ast.List):
            self.spaced("[")
            for index, item in enumerate(value.items):
                if index:
                    self.spaced(",")
                self.value(item)
            self.trailing_comma(bool(value.items))
            self.spaced("]")
        elif isinstance(value, ast.Mapping):
            self.spaced("{")
            for index, entry in enumerate(value.entries):
                if index:
                    self.spaced(",")
                self.spaced(self.draw(key_texts(entry.name)))
                self.spaced("=")
                self.value(entry.value)
            self.trailing_comma(bool(value.entries))
            self.spaced("}")
        else:
            self.spaced(self.draw(literal_texts(value)))


def literal_texts(value: ast.Value) -> st.SearchStrategy[str]:
    """Every spelling of a scalar literal the grammar accepts for ``value``."""
    if isinstance(value, ast.Integer):
        return st.just(str(value.value))
    if isinstance(value, ast.Float):
        text = repr(value.value)
        spellings = {text, text.upper()}
        if text.endswith(".0"):
            spellings.add(text[:-1])  # "1."
        if text.startswith(("0.", "-0.")) and "e" not in text:
            spellings.add(text.replace("0.", ".", 1))  # ".5", "-.5"
        if "e+" in text:
            spellings.add(text.replace("e+", "e"))  # "1e16"
        return st.sampled_from(sorted(spellings))
    if isinstance(value, ast.String):
        return st.tuples(st.booleans(), st.booleans()).map(
            lambda flags: _string_text(value.value, ascii_only=flags[0], escape_slash=flags[1])
        )
    if isinstance(value, ast.Boolean):
        return st.just("true" if value.value else "false")
    if isinstance(value, ast.Null):
        return st.just("null")
    if isinstance(value, ast.Variable):
        return st.just("$" + value.name)
    raise TypeError(f"not a scalar literal: {value!r}")


def key_texts(key: str) -> st.SearchStrategy[str]:
    """Every spelling of a mapping key: bare when it is a name, else (or also) quoted."""
    quoted = literal_texts(ast.String(key))
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return st.one_of(st.just(key), quoted)
    return quoted


def _string_text(text: str, *, ascii_only: bool, escape_slash: bool) -> str:
    # JSON never escapes '/', so every '/' in its output is a literal character.
    encoded = json.dumps(text, ensure_ascii=ascii_only)
    return encoded.replace("/", "\\/") if escape_slash else encoded


@st.composite
def program_texts(draw, of: st.SearchStrategy[ast.Program] | None = None):
    """``(program, text, comments)``: a program drawn from ``of`` (default
    :func:`programs`), source text for it with random layout, and the ``#``
    comments that text holds, in order."""
    program = draw(of if of is not None else programs())
    renderer = _Renderer(draw)
    renderer.program(program)
    return program, "".join(renderer.parts), renderer.comments
