"""The program AST: frozen attrs classes with tuple children.

Every node carries a :class:`Span` that equality and hashing ignore, so two
programs that differ only in layout or comments compare equal::

    >>> from deepleaps.lang import parse
    >>> parse("$root( $A->$B )") == parse("$root($A -> $B)  # same")
    True
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from deepleaps.lang.visitor import Visitor


@attrs.frozen
class Span:
    """Where a piece of source text lies: 1-based line and column, end exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


def _span() -> Span | None:
    return attrs.field(default=None, eq=False, repr=False, kw_only=True)


def as_tuple(items: Iterable[Any]) -> tuple[Any, ...]:
    """The converter of tuple fields: ``tuple`` itself, typed so that mypy's attrs plugin
    can check the ``__init__`` (it leaves the type variable of ``tuple`` unsolved)."""
    return tuple(items)


@attrs.frozen
class Comment:
    """A `#` comment, kept for the formatter; never part of program equality."""

    text: str
    line: int


# ---- literal values ---------------------------------------------------------


@attrs.frozen
class Integer:
    value: int
    span: Span | None = _span()

    def accept(self, visitor: Visitor):
        return visitor.visit_integer(self)


@attrs.frozen
class Float:
    value: float
    span: Span | None = _span()

    def accept(self, visitor: Visitor):
        return visitor.visit_float(self)


@attrs.frozen
class String:
    value: str
    span: Span | None = _span()

    def accept(self, visitor: Visitor):
        return visitor.visit_string(self)


@attrs.frozen
class Boolean:
    value: bool
    span: Span | None = _span()

    def accept(self, visitor: Visitor):
        return visitor.visit_boolean(self)


@attrs.frozen
class Null:
    span: Span | None = _span()

    @property
    def value(self) -> None:
        return None

    def accept(self, visitor: Visitor):
        return visitor.visit_null(self)


@attrs.frozen
class Variable:
    """`$name` or `$name.attr`: resolved when the command runs, not when parsed."""

    name: str
    span: Span | None = _span()

    def accept(self, visitor: Visitor):
        return visitor.visit_variable(self)


@attrs.frozen
class List:
    items: tuple[Value, ...] = attrs.field(converter=as_tuple)
    span: Span | None = _span()

    def accept(self, visitor: Visitor):
        return visitor.visit_list(self)


@attrs.frozen
class Mapping:
    """``{key=value, "any key"=value}``; entries are :class:`Argument` (key, value)."""

    entries: tuple[Argument, ...] = attrs.field(converter=as_tuple)
    span: Span | None = _span()

    def accept(self, visitor: Visitor):
        return visitor.visit_mapping(self)


Value = Integer | Float | String | Boolean | Null | Variable | List | Mapping


# ---- program structure --------------------------------------------------------


class NodeKind(enum.Enum):
    """How a node names what it runs (docs/design.md §3)."""

    INSTANCE = "$"  # $NAME: reuse the instance NAME, or create it from DEFINE[NAME]
    DEFINE = ""  # NAME: a fresh instance of DEFINE[NAME]
    CLASS = "*"  # *Class: a fresh instance of a command class


@attrs.frozen
class Argument:
    name: str
    value: Value
    span: Span | None = _span()

    def accept(self, visitor: Visitor):
        return visitor.visit_argument(self)


@attrs.frozen
class Node:
    """One node reference with its inline arguments, its label and its children chains."""

    kind: NodeKind
    name: str
    arguments: tuple[Argument, ...] = attrs.field(default=(), converter=as_tuple)
    children: tuple[Chain, ...] = attrs.field(default=(), converter=as_tuple)
    #: ``*Class as LABEL``: the instance name of a fresh instance, instead of a generated one.
    label: str | None = attrs.field(default=None, kw_only=True)
    span: Span | None = _span()
    #: Where the label is written (the name after ``as``).
    label_span: Span | None = _span()

    @label.validator
    def _fresh_instances_only(self, attribute, value):
        if value is not None and self.kind is NodeKind.INSTANCE:
            raise ValueError(f"'${self.name}' names an instance and cannot have a label")

    def accept(self, visitor: Visitor):
        return visitor.visit_node(self)


@attrs.frozen
class Chain:
    """`A -> B -> C`: each node runs after the one before it."""

    nodes: tuple[Node, ...] = attrs.field(converter=as_tuple)
    span: Span | None = _span()

    @nodes.validator
    def _not_empty(self, attribute, value):
        if not value:
            raise ValueError("a chain has at least one node")

    def accept(self, visitor: Visitor):
        return visitor.visit_chain(self)


@attrs.frozen
class Program:
    """One or more statements; each statement is a chain."""

    statements: tuple[Chain, ...] = attrs.field(converter=as_tuple)
    comments: tuple[Comment, ...] = attrs.field(default=(), converter=as_tuple, eq=False, repr=False)
    span: Span | None = _span()

    def accept(self, visitor: Visitor):
        return visitor.visit_program(self)


AstNode = Program | Chain | Node | Argument | Value


def python_value(value: Value):
    """The plain Python value of a literal; variables stay :class:`Variable`."""
    if isinstance(value, List):
        return [python_value(item) for item in value.items]
    if isinstance(value, Mapping):
        return {entry.name: python_value(entry.value) for entry in value.entries}
    if isinstance(value, Variable):
        return value
    return value.value
