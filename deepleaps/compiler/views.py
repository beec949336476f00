"""Views of a Plan: JSON-ready data and an indented text tree.

``deepleaps compile --json`` prints :func:`plan_to_data`, ``--tree`` (the
default) prints :func:`plan_tree`; the live status view passes the running
nodes' counters to :func:`plan_tree`::

    >>> from deepleaps.compiler import compile_source
    >>> print(plan_tree(compile_source("$root( *Print -> *Print[repeat=2] )").plan))  # doctest: +SKIP
    root (Graph)
      Print (PrintCommand)
      Print_1 (PrintCommand) [repeat=2]

The helpers that turn node options and argument values into short text are
shared with the DOT view (:mod:`deepleaps.compiler.dot`).
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Protocol

from deepleaps.compiler.plan import Cycle, Kind, OnError, Plan, PlanNode
from deepleaps.lang.ast import Span, Variable

#: The version of the document :func:`plan_to_data` returns.
SCHEMA = "deepleaps.plan/1"

#: The longest argument value shown in full in a label; longer ones end in "…".
VALUE_WIDTH = 40
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Counters(Protocol):
    """What the tree needs of a node's runtime state (the interpreter's ``NodeState``)."""

    step: int
    total_step: int
    epoch: int


# ---- node options and values as text ---------------------------------------------


def default_repeat(kind: Kind) -> int:
    """The ``repeat`` a node of this kind has unless told otherwise: loaders run until
    their data runs out (-1), graphs and leaves once per activation."""
    return -1 if kind is Kind.LOADER else 1


def node_options(node: PlanNode) -> list[str]:
    """The options of a node that differ from their defaults, as ``key=value`` words."""
    options = []
    if node.repeat != default_repeat(node.kind):
        options.append(f"repeat={node.repeat}")
    if node.run_cycle is not None:
        options.append(f"run_cycle={node.run_cycle}")
    if node.finish:
        options.append("finish")
    if node.on_error is not OnError.STOP:
        options.append(f"on_error={node.on_error.value}")
    return options


def format_value(value: Any, width: int | None = VALUE_WIDTH) -> str:
    """An argument value written the way the language writes it (``"text"``, ``1e-3``,
    ``true``, ``null``, ``$var``, ``[…]``, ``{key=value}``),
    cut to ``width`` characters."""
    text = _literal(value)
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def _literal(value: Any) -> str:
    if isinstance(value, Variable):
        return f"${value.name}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_literal(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(str(key))}={_literal(item)}" for key, item in value.items()) + "}"
    return str(value)


def _key(name: str) -> str:
    """A mapping key as the language writes it: bare when it is a name, else a string."""
    if _NAME.fullmatch(name) and name not in ("true", "false", "null"):
        return name
    return json.dumps(name, ensure_ascii=False)


def ordered_children(plan: Plan, node: PlanNode) -> tuple[str, ...]:
    """The children of a graph in the order a step runs them: prologue first, then the
    schedule. A child whose own children were inlined into this graph's schedule
    (the flatten pass) takes the place of the first of them."""
    if not node.children:
        return ()
    children = set(node.children)
    order: dict[str, None] = {}
    for name in (*node.prologue, *plan.run_order(node.name)):
        while name in plan and (parent := plan[name].parent) is not None and parent != node.name:
            name = parent
        if name in children:
            order[name] = None
    return (*order, *(child for child in node.children if child not in order))


class Placement:
    """Where the optimiser put each node of a plan: in its parent's prologue, or inlined
    into an ancestor's schedule. The sets it looks in are made once per graph, so a view
    of the whole plan takes time in proportion to it."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self._prologues: dict[str, frozenset[str]] = {}
        self._sources: dict[str, frozenset[str]] = {}

    def in_prologue(self, node: PlanNode) -> bool:
        if node.parent is None or node.parent not in self.plan:
            return False
        if node.parent not in self._prologues:
            self._prologues[node.parent] = frozenset(self.plan[node.parent].prologue)
        return node.name in self._prologues[node.parent]

    def inlined_into(self, node: PlanNode) -> str | None:
        """The graph whose schedule the flatten pass spliced ``node``'s schedule into."""
        parent = self.plan.nodes.get(node.parent) if node.parent else None
        while parent is not None:
            if parent.name not in self._sources:
                self._sources[parent.name] = frozenset(parent.inlined_from.values())
            if node.name in self._sources[parent.name]:
                return parent.name
            parent = self.plan.nodes.get(parent.parent) if parent.parent else None
        return None


def inlined_into(plan: Plan, node: PlanNode) -> str | None:
    """The graph whose schedule the flatten pass spliced ``node``'s schedule into."""
    return Placement(plan).inlined_into(node)


# ---- the tree --------------------------------------------------------------------


def plan_tree(plan: Plan, states: Mapping[str, Counters] | None = None) -> str:
    """The plan as an indented tree, root first, children in run order.

    Each line reads ``name (Class) [options]``: ``repeat`` when not the kind's
    default, ``run_cycle``, ``finish``, ``on_error`` when not ``stop``, and where
    the optimiser put the node (``prologue``, ``inlined into G``). Given the
    running nodes' ``states``, each line ends with their counters
    (``step=.. total_step=..``, and ``epoch=..`` for loaders) and ``finished``
    once a one-shot node is done. Ends with a newline.
    """
    placement = Placement(plan)
    lines: list[str] = []
    for node, depth in _tree_walk(plan):
        lines.append("  " * depth + tree_line(plan, node, states, placement))
    return "\n".join(lines) + "\n"


def tree_line(
    plan: Plan,
    node: PlanNode,
    states: Mapping[str, Counters] | None = None,
    placement: Placement | None = None,
) -> str:
    """One line of :func:`plan_tree` (without indentation)."""
    placement = placement or Placement(plan)
    tags = node_options(node)
    if placement.in_prologue(node):
        tags.append("prologue")
    target = placement.inlined_into(node)
    if target is not None:
        tags.append(f"inlined into {target}")
    line = f"{node.name} ({node.command})"
    if tags:
        line += f" [{', '.join(tags)}]"
    state = states.get(node.name) if states is not None else None
    if state is not None:
        line += f" step={state.step} total_step={state.total_step}"
        if node.kind is Kind.LOADER:
            line += f" epoch={state.epoch}"
        if getattr(state, "finished", False):
            line += " finished"
    return line


def _tree_walk(plan: Plan):
    """(node, depth) from the root, children in run order; then any node the root
    does not reach (a plan under construction), by name."""
    seen: set[str] = set()
    stack = [(plan.root, 0)] if plan.root in plan else []
    while stack:
        name, depth = stack.pop()
        if name in seen or name not in plan:
            continue
        seen.add(name)
        node = plan[name]
        yield node, depth
        stack.extend((child, depth + 1) for child in reversed(ordered_children(plan, node)))
    for name in sorted(set(plan.nodes) - seen):
        yield plan[name], 0


# ---- JSON ------------------------------------------------------------------------


def plan_to_data(plan: Plan) -> dict:
    """The plan as JSON-ready data: ``{"schema": "deepleaps.plan/1", "root": …, "nodes": […]}``.

    Nodes come in tree order (root first, children in run order), each with every
    :class:`~deepleaps.compiler.plan.PlanNode` field. Argument values that are
    variables become ``"$name"``; kinds and ``on_error`` their values; a
    ``run_cycle`` its text ``NODE.counter:N``; a span
    ``{"file", "line", "column", "end_line", "end_column"}``; a float that JSON
    cannot hold (``.inf``, ``.nan`` in YAML) its text.
    """
    return {
        "schema": SCHEMA,
        "root": plan.root,
        "nodes": [node_to_data(node) for node, _ in _tree_walk(plan)],
        "warnings": list(plan.warnings),
    }


def node_to_data(node: PlanNode) -> dict:
    return {
        "name": node.name,
        "command": node.command,
        "kind": node.kind.value,
        "args": json_value(node.args),
        "parent": node.parent,
        "repeat": node.repeat,
        "finish": node.finish,
        "run_cycle": None if node.run_cycle is None else str(node.run_cycle),
        "on_error": node.on_error.value,
        "children": list(node.children),
        "edges": [list(edge) for edge in node.edges],
        "prologue": list(node.prologue),
        "schedule": None if node.schedule is None else list(node.schedule),
        "inlined_from": dict(node.inlined_from),
        "span": _span(node.span),
    }


def json_value(value: Any) -> Any:
    """``value`` made of JSON types only (see :func:`plan_to_data`)."""
    if isinstance(value, Variable):
        return f"${value.name}"
    if isinstance(value, Cycle):
        return str(value)
    if isinstance(value, enum.Enum):
        return json_value(value.value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    return str(value)


def _span(span: Span | None) -> dict | None:
    if span is None:
        return None
    return {
        "file": span.file,
        "line": span.line,
        "column": span.column,
        "end_line": span.end_line,
        "end_column": span.end_column,
    }
