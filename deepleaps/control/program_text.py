"""The running program written back as program text, with the version it is at.

``PROGRAM`` answers with it and ``deepleaps program FILE`` saves it; ``deepleaps
apply FILE`` reads the version back from the first line and sends ``APPLY@N``,
so an edit of an exported program is refused if the training moved meanwhile.

The text compiles to the running program: each node is written as its DEFINE
entry (``$NAME``, or ``BASE as NAME`` for a further instance of it) with the
arguments and options that differ from the entry's, or else as its class with
every argument (``*Class[…] as NAME``). Every node is named, by ``$NAME`` or
a label, so an edited copy matches its nodes by name (docs/control.md, "Identity").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import attrs

from deepleaps.compiler import Plan, PlanNode, Registry
from deepleaps.compiler.resolve import resolve_alone
from deepleaps.control.editscript import plain_arguments, value_to_ast
from deepleaps.control.identity import generated_base
from deepleaps.lang import ast, format_program
from deepleaps.lang.diagnostics import SourceText
from deepleaps.lang.programfile import Definition
from deepleaps.workspace.confine import Confinement

_VERSION = re.compile(r"#\s*version ([0-9]+) of the running program\b")


def header(version: int) -> str:
    return f"# version {version} of the running program; `deepleaps apply` sends it as APPLY@{version}"


def exported_version(text: str) -> int | None:
    """The version a program text was exported at: the header among its first comment lines."""
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return None
        match = _VERSION.match(line)
        if match is not None:
            return int(match.group(1))
    return None


@attrs.frozen
class ProgramWriter:
    """Writes source plans as program text, against the definitions they were written with."""

    registry: Registry
    definitions: Mapping[str, Definition]
    sources: Mapping[str, SourceText] = attrs.Factory(dict)
    roots: Sequence[Path] = (Path.cwd(),)
    #: The classes and files the program may name (by default, those of the first root's workspace).
    confinement: Confinement | None = None

    def text(self, plan: Plan, version: int) -> str:
        """The program text of ``plan``, its first line the header that records ``version``."""
        return header(version) + "\n" + format_program(ast.Program([ast.Chain([self._node(plan, plan[plan.root])])]))

    def _node(self, plan: Plan, node: PlanNode) -> ast.Node:
        head, inline = self._head(node)
        return ast.Node(head.kind, head.name, inline, self._chains(plan, node), label=head.label)

    def _head(self, node: PlanNode) -> tuple[ast.Node, list[ast.Argument]]:
        """How ``node`` is written: the first of its DEFINE entry, a further instance of that
        entry, its class, that gives no argument the node lacks; and what to write inline."""
        written = plain_arguments(node)
        base = generated_base(node.name)
        candidates = []
        if node.name in self.definitions or node.parent is None:
            candidates.append(ast.Node(ast.NodeKind.INSTANCE, node.name))
        if base != node.name and base in self.definitions:
            candidates.append(ast.Node(ast.NodeKind.DEFINE, base, label=node.name))
        candidates.append(ast.Node(ast.NodeKind.CLASS, node.command, label=node.name))
        for head in candidates:
            start = resolve_alone(
                head,
                self.registry,
                self.definitions,
                sources=self.sources,
                roots=self.roots,
                confinement=self.confinement,
            )
            if start is None or start.command != node.command:
                continue
            given = plain_arguments(start)
            missing = [key for key in given if key not in written]
            if set(missing) - set(_DEFAULTS):
                continue  # an argument (or a run_cycle) that program text cannot take away
            inline = [
                ast.Argument(key, value_to_ast(value))
                for key, value in written.items()
                if key not in given or value_to_ast(given[key]) != value_to_ast(value)
            ]
            inline += [ast.Argument(key, _DEFAULTS[key](node)) for key in missing]
            return head, inline
        raise LookupError(f"node '{node.name}' cannot be written as program text: its class is not registered")

    def _chains(self, plan: Plan, graph: PlanNode) -> list[ast.Chain]:
        """``graph``'s children as chains that the resolver reads back to the same children,
        in the same order, and the same ``->`` edges, in the same order."""
        children, edges = list(graph.children), list(graph.edges)
        defined: set[str] = set()
        chains: list[ast.Chain] = []

        def usable(name: str, after: str | None = None) -> bool:
            """Already written, or the next child to write (once ``after`` is)."""
            pending = [child for child in children if child not in defined and child != after]
            return name in defined or name == after or (bool(pending) and pending[0] == name)

        def write(name: str) -> ast.Node:
            if name in defined:
                return ast.Node(ast.NodeKind.INSTANCE, name)
            defined.add(name)
            return self._node(plan, plan[name])

        while len(defined) < len(children) or edges:
            if edges and usable(edges[0][0]) and usable(edges[0][1], after=edges[0][0]):
                last = edges[0][0]
            else:
                last = next(child for child in children if child not in defined)
            nodes = [write(last)]
            while edges and edges[0][0] == last and usable(edges[0][1]):
                last = edges.pop(0)[1]
                nodes.append(write(last))
            chains.append(ast.Chain(nodes))
        return chains


#: The options a DEFINE entry may set and program text can set back to their default.
_DEFAULTS: dict[str, Callable[[PlanNode], ast.Value]] = {
    "repeat": lambda node: ast.Integer(node.repeat),
    "finish": lambda node: ast.Boolean(False),
    "on_error": lambda node: ast.String(node.on_error.value),
}
