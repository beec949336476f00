"""A typed visitor over the AST: one ``visit_*`` method per node class.

Subclass :class:`Visitor` and implement every method; a forgotten case is an
abstract-method error at instantiation, not a silent fall-through at run time.
"""

from __future__ import annotations

import abc
from typing import Generic, TypeVar

from deepleaps.lang import ast

T = TypeVar("T")


class Visitor(abc.ABC, Generic[T]):
    def visit(self, node: ast.AstNode) -> T:
        return node.accept(self)

    @abc.abstractmethod
    def visit_program(self, program: ast.Program) -> T: ...

    @abc.abstractmethod
    def visit_chain(self, chain: ast.Chain) -> T: ...

    @abc.abstractmethod
    def visit_node(self, node: ast.Node) -> T: ...

    @abc.abstractmethod
    def visit_argument(self, argument: ast.Argument) -> T: ...

    @abc.abstractmethod
    def visit_integer(self, value: ast.Integer) -> T: ...

    @abc.abstractmethod
    def visit_float(self, value: ast.Float) -> T: ...

    @abc.abstractmethod
    def visit_string(self, value: ast.String) -> T: ...

    @abc.abstractmethod
    def visit_boolean(self, value: ast.Boolean) -> T: ...

    @abc.abstractmethod
    def visit_null(self, value: ast.Null) -> T: ...

    @abc.abstractmethod
    def visit_variable(self, value: ast.Variable) -> T: ...

    @abc.abstractmethod
    def visit_list(self, value: ast.List) -> T: ...

    @abc.abstractmethod
    def visit_mapping(self, value: ast.Mapping) -> T: ...


def walk(node: ast.AstNode):
    """Yield ``node`` and every node below it, depth first, in source order."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        children: tuple[ast.AstNode, ...]
        if isinstance(current, ast.Program):
            children = current.statements
        elif isinstance(current, ast.Chain):
            children = current.nodes
        elif isinstance(current, ast.Node):
            children = current.arguments + current.children
        elif isinstance(current, ast.Argument):
            children = (current.value,)
        elif isinstance(current, ast.List):
            children = current.items
        elif isinstance(current, ast.Mapping):
            children = current.entries
        else:
            children = ()
        stack.extend(reversed(children))
