"""The Plan as a Graphviz DOT picture (``deepleaps compile --dot``, the ``DOT`` verb).

Graph and loader nodes are clusters (``subgraph "cluster_<name>"``) labelled
with the node's name, class, options, prologue and schedule; leaves are
boxes; ``->`` edges join siblings. An edge cannot end on a cluster, so each
cluster holds an invisible *entry* anchor, the node called by the graph's
instance name, and — when an edge leaves the graph — an invisible *exit*
anchor, ``"<name>.exit"`` (a ``.`` never occurs in an instance name, so the
two can never clash). Edges to and from a cluster end on these anchors and
are clipped at its border (``compound=true`` with ``lhead``/``ltail``).
Invisible edges from the entry anchor to the first children and from the
last children to the exit anchor keep each picture flowing left to right.

Every identifier and label is quoted and escaped; the output depends on the
plan only (no set or hash order), so the same plan always gives the same text::

    >>> from deepleaps.compiler import compile_source
    >>> print(to_dot(compile_source("$root( *Print -> *Print )").plan))  # doctest: +SKIP
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable

from deepleaps.compiler.plan import Kind, Plan, PlanNode
from deepleaps.compiler.views import format_value, inlined_into, node_options, ordered_children

#: At most this many arguments are listed in a label; the rest are counted.
MAX_ARGS = 6
#: Lists of names (prologue, schedule) wrap at about this many characters.
WRAP = 60
_INDENT = "  "
_FONT = "Helvetica"
_FILL = {Kind.GRAPH: "#f6f6f6", Kind.LOADER: "#eaf2fb"}
_EXIT = ".exit"


def to_dot(plan: Plan, *, title: str | None = None) -> str:
    """The plan as a DOT ``digraph``; ``title`` labels the whole picture. Ends with a newline."""
    lines = ["digraph plan {"]
    graph_attributes = {
        "compound": "true",
        "rankdir": "LR",
        "newrank": "true",
        "fontname": _FONT,
        "fontsize": "11",
        "nodesep": "0.3",
        "ranksep": "0.4",
        "charset": "UTF-8",
    }
    if title is not None:
        graph_attributes.update(label=label([title]), labelloc="t", labeljust="l", fontsize="13")
    lines.append(_INDENT + "graph " + attributes(graph_attributes) + ";")
    lines.append(_INDENT + "node " + attributes({"shape": "box", "style": "rounded", "fontname": _FONT}) + ";")
    lines.append(_INDENT + "edge " + attributes({"fontname": _FONT, "arrowsize": "0.7"}) + ";")
    if plan.root in plan:
        _emit(plan, plan[plan.root], lines, 1)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _emit(plan: Plan, root: PlanNode, lines: list[str], depth: int) -> None:
    """Clusters and boxes from ``root`` down; an explicit stack, however deep the plan."""
    stack: list[tuple[str, int, bool]] = [(root.name, depth, False)]
    while stack:
        name, depth, closing = stack.pop()
        node = plan[name]
        pad = _INDENT * depth
        if closing:
            lines.extend(pad + _INDENT + line for line in _edges(plan, node))
            lines.append(pad + "}")
            continue
        if not node.kind.has_children:
            lines.append(pad + quote(name) + " " + attributes(_leaf_attributes(plan, node)) + ";")
            continue
        lines.append(pad + "subgraph " + quote("cluster_" + name) + " {")
        inner = pad + _INDENT
        lines.append(inner + "graph " + attributes(_cluster_attributes(plan, node)) + ";")
        lines.append(inner + quote(name) + " " + attributes(_ANCHOR) + ";")
        if _has_exit(plan, node):
            lines.append(inner + quote(name + _EXIT) + " " + attributes(_ANCHOR) + ";")
        stack.append((name, depth, True))
        stack.extend((child, depth + 1, False) for child in reversed(ordered_children(plan, node)))


_ANCHOR = {"shape": "point", "style": "invis", "width": "0.01", "height": "0.01", "label": '""'}


def _has_exit(plan: Plan, node: PlanNode) -> bool:
    parent = plan.nodes.get(node.parent) if node.parent else None
    return parent is not None and any(source == node.name for source, _ in parent.edges)


def _edges(plan: Plan, graph: PlanNode) -> list[str]:
    """The ``->`` edges between the children of ``graph``, and the invisible edges that
    put its entry anchor first and its exit anchor last."""
    lines = []
    children = [child for child in ordered_children(plan, graph) if child in plan]
    has_predecessor = {target for _, target in graph.edges}
    has_successor = {source for source, _ in graph.edges}
    for child in children:
        if child not in has_predecessor:
            lines.append(_edge(graph.name, _entry(plan, child), {"style": "invis"}))
    if _has_exit(plan, graph):
        for child in children:
            if child not in has_successor:
                lines.append(_edge(_exit(plan, child), graph.name + _EXIT, {"style": "invis"}))
        if not children:
            lines.append(_edge(graph.name, graph.name + _EXIT, {"style": "invis"}))
    for source, target in graph.edges:
        if source not in plan or target not in plan:
            continue
        extra = {}
        if plan[source].kind.has_children:
            extra["ltail"] = "cluster_" + source
        if plan[target].kind.has_children:
            extra["lhead"] = "cluster_" + target
        lines.append(_edge(_exit(plan, source), _entry(plan, target), extra))
    return lines


def _entry(plan: Plan, name: str) -> str:
    return name


def _exit(plan: Plan, name: str) -> str:
    return name + _EXIT if plan[name].kind.has_children else name


def _edge(source: str, target: str, extra: dict[str, str]) -> str:
    text = f"{quote(source)} -> {quote(target)}"
    if extra:
        text += " " + attributes(extra)
    return text + ";"


def _leaf_attributes(plan: Plan, node: PlanNode) -> dict[str, str]:
    styles = ["rounded"]
    if node.finish:
        styles.append("dashed")
    result = {"label": label(_node_lines(plan, node))}
    if node.finish:
        result["style"] = ",".join(styles)
    if node.run_cycle is not None:
        result["color"] = "#b35900"
    return result


def _cluster_attributes(plan: Plan, node: PlanNode) -> dict[str, str]:
    lines = _node_lines(plan, node)
    if node.prologue:
        lines.extend(_wrapped("prologue: ", node.prologue))
    if node.schedule is not None:
        lines.extend(_wrapped("schedule: ", node.schedule or ("(empty)",)))
    styles = ["rounded", "filled"]
    if node.finish:
        styles.append("dashed")
    return {
        "label": label(lines, justify="l"),
        "labeljust": "l",
        "style": ",".join(styles),
        "fillcolor": _FILL[node.kind],
        "color": "#b35900" if node.run_cycle is not None else "#7a7a7a",
    }


def _node_lines(plan: Plan, node: PlanNode) -> list[str]:
    """Name and class, options, arguments (and, for a leaf of the prologue, that)."""
    lines = [f"{node.name} ({node.command})"]
    options = node_options(node)
    parent = plan.nodes.get(node.parent) if node.parent else None
    if parent is not None and node.name in parent.prologue:
        options.append("prologue")
    target = inlined_into(plan, node)
    if target is not None:
        options.append(f"inlined into {target}")
    if options:
        lines.append(", ".join(options))
    items = list(node.args.items())
    for key, value in items[:MAX_ARGS]:
        lines.append(f"{key}={format_value(value)}")
    if len(items) > MAX_ARGS:
        lines.append(f"… {len(items) - MAX_ARGS} more")
    return lines


def _wrapped(prefix: str, names: Iterable[str]) -> list[str]:
    lines, current = [], prefix
    for index, name in enumerate(names):
        piece = name if index == 0 else ", " + name
        if len(current) + len(piece) > WRAP and current.strip() != prefix.strip():
            lines.append(current + ",")
            current = "  " + name
        else:
            current += piece
    lines.append(current)
    return lines


# ---- quoting ---------------------------------------------------------------------


def quote(text: str) -> str:
    """A DOT identifier: a double-quoted string. Only ``"`` needs escaping inside one;
    instance names never hold a backslash or a control character."""
    return '"' + text.replace('"', '\\"') + '"'


def label(lines: Iterable[str], justify: str = "n") -> str:
    """A quoted DOT label of several lines, each ended by ``\\n`` (centred) or ``\\l``
    (left-justified). Backslashes and quotes are escaped, and control characters are
    shown as ``\\xNN``, so any text — argument values included — is one safe label.
    Ending every line with an escape also keeps a label from ending in a backslash,
    which DOT would read as an escaped closing quote."""
    end = "\\" + justify
    body = "".join(_escape_label(_printable(line)) + end for line in lines)
    return '"' + body + '"'


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}" for c in text)


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def attributes(values: dict[str, str]) -> str:
    """``[key="value", …]`` with every value quoted (labels come quoted from :func:`label`)."""
    parts = []
    for key, value in values.items():
        text = value if key == "label" else quote(value)
        parts.append(f"{key}={text}")
    return "[" + ", ".join(parts) + "]"


# ---- drawing ---------------------------------------------------------------------


class DrawError(Exception):
    """Graphviz failed to draw a picture."""


class NoGraphviz(DrawError):
    """Graphviz's ``dot`` cannot be run (it is not installed, most often)."""


def draw(dot_text: str, fmt: str = "svg") -> bytes:
    """Run Graphviz ``dot -T<fmt>`` on the DOT text; the picture.

    Raises:
        NoGraphviz: ``dot`` cannot be run.
        DrawError: it failed.
    """
    try:
        result = subprocess.run(["dot", f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True, check=False)
    except OSError as exc:
        raise NoGraphviz(f"cannot run Graphviz 'dot': {exc.strerror or exc}") from None
    if result.returncode != 0:
        raise DrawError(f"Graphviz 'dot' failed: {result.stderr.decode('utf-8', errors='replace').strip()}")
    return result.stdout
