"""AST → canonical program text.

One text per AST: ``parse(format_program(p)) == p`` and formatting is
idempotent. A statement that fits in :data:`WIDTH` columns is printed on one
line; a longer one breaks its groups, one child chain per line, indented by
four spaces. Comments are kept, each above the statement it was in.
"""

from __future__ import annotations

import json
import re

from deepleaps.lang import ast
from deepleaps.lang.visitor import Visitor

WIDTH = 88
INDENT = "    "


class _Inline(Visitor[str]):
    """Everything on one line."""

    def visit_program(self, program: ast.Program) -> str:
        return "\n".join(self.visit(chain) for chain in program.statements)

    def visit_chain(self, chain: ast.Chain) -> str:
        return " -> ".join(self.visit(node) for node in chain.nodes)

    def visit_node(self, node: ast.Node) -> str:
        text = head(node)
        if node.children:
            text += "(" + ", ".join(self.visit(chain) for chain in node.children) + ")"
        return text

    def visit_argument(self, argument: ast.Argument) -> str:
        return f"{argument.name}={self.visit(argument.value)}"

    def visit_integer(self, value: ast.Integer) -> str:
        return str(value.value)

    def visit_float(self, value: ast.Float) -> str:
        return repr(float(value.value))

    def visit_string(self, value: ast.String) -> str:
        return json.dumps(value.value, ensure_ascii=False)

    def visit_boolean(self, value: ast.Boolean) -> str:
        return "true" if value.value else "false"

    def visit_null(self, value: ast.Null) -> str:
        return "null"

    def visit_variable(self, value: ast.Variable) -> str:
        return "$" + value.name

    def visit_list(self, value: ast.List) -> str:
        return "[" + ", ".join(self.visit(item) for item in value.items) + "]"

    def visit_mapping(self, value: ast.Mapping) -> str:
        entries = (f"{_key(entry.name)}={self.visit(entry.value)}" for entry in value.entries)
        return "{" + ", ".join(entries) + "}"


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _key(name: str) -> str:
    """A mapping key: bare when it is a name (but not a keyword), else a string."""
    if _NAME.fullmatch(name) and name not in ("true", "false", "null"):
        return name
    return json.dumps(name, ensure_ascii=False)


_INLINE = _Inline()


def head(node: ast.Node) -> str:
    """The node reference, its arguments and its label, without children: ``*G[repeat=2] as G``."""
    text = node.kind.value + node.name
    if node.arguments:
        text += "[" + ", ".join(_INLINE.visit(argument) for argument in node.arguments) + "]"
    if node.label is not None:
        text += " as " + node.label
    return text


def inline(node: ast.AstNode) -> str:
    """Any AST node as one line of text."""
    return _INLINE.visit(node)


def _chain(chain: ast.Chain, depth: int) -> str:
    text = inline(chain)
    if len(INDENT) * depth + len(text) <= WIDTH:
        return text
    return " -> ".join(_node(node, depth) for node in chain.nodes)


def _node(node: ast.Node, depth: int) -> str:
    if not node.children:
        return head(node)
    inner = INDENT * (depth + 1)
    chains = (",\n").join(inner + _chain(chain, depth + 1) for chain in node.children)
    return f"{head(node)}(\n{chains}\n{INDENT * depth})"


def format_program(program: ast.Program) -> str:
    """The canonical text of a program, ending with a newline.

    Example:
        >>> from deepleaps.lang import parse
        >>> format_program(parse("$root( $A->$B )"))
        '$root($A -> $B)\\n'
    """
    comments = sorted(program.comments, key=lambda comment: comment.line)
    lines: list[str] = []
    for chain in program.statements:
        end = chain.span.end_line if chain.span else None
        while comments and end is not None and comments[0].line <= end:
            lines.append(comments.pop(0).text.rstrip())
        lines.append(_chain(chain, 0))
    lines.extend(comment.text.rstrip() for comment in comments)
    return "\n".join(lines) + "\n"
