"""Whole-plan checks that need every node resolved: ``->`` cycles and ``run_cycle`` targets."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from deepleaps.compiler.plan import COUNTERS, Kind, Plan, PlanNode
from deepleaps.lang.ast import Span
from deepleaps.lang.diagnostics import Diagnostic, ProgramError, SourceText, did_you_mean, error

Fail = Callable[..., None]


def find_cycle(node: PlanNode) -> list[str] | None:
    """A cycle among a graph's ``->`` edges as a path ``[A, B, A]``, or None."""
    successors: dict[str, list[str]] = {child: [] for child in node.children}
    for source, target in node.edges:
        successors[source].append(target)
    colour = dict.fromkeys(successors, 0)  # 0 unseen, 1 on the path, 2 done
    for start in node.children:
        if colour[start]:
            continue
        path, stack = [start], [iter(successors[start])]
        colour[start] = 1
        while stack:
            following = next(stack[-1], None)
            if following is None:
                colour[path.pop()] = 2
                stack.pop()
            elif colour[following] == 1:
                return [*path[path.index(following) :], following]
            elif colour[following] == 0:
                colour[following] = 1
                path.append(following)
                stack.append(iter(successors[following]))
    return None


def check_plan(
    plan: Plan,
    fail: Fail,
    edge_spans: dict[tuple[str, str, str], Span | None],
    names: Iterable[str] | None = None,
) -> None:
    """``->`` cycles and ``run_cycle`` targets of the nodes ``names`` (default: all)."""
    nodes = plan.nodes.values() if names is None else [plan.nodes[name] for name in names if name in plan.nodes]
    for node in nodes:
        if node.kind.has_children:
            cycle = find_cycle(node)
            if cycle is not None:
                span = edge_spans.get((node.name, cycle[-2], cycle[-1]), node.span)
                fail(f"the '->' edges of '{node.name}' form a cycle: {' -> '.join(cycle)}", span)
        if node.run_cycle is not None:
            _check_cycle(plan, node, fail)


def _check_cycle(plan: Plan, node: PlanNode, fail: Fail) -> None:
    cycle = node.run_cycle
    assert cycle is not None  # only nodes with a run_cycle are checked
    target = plan.nodes.get(cycle.node)
    if target is None:
        fail(
            f"run_cycle of '{node.name}' names node '{cycle.node}', which the program does not have",
            node.span,
            hint=did_you_mean(cycle.node, plan.nodes),
        )
    elif cycle.counter not in COUNTERS:
        fail(
            f"run_cycle of '{node.name}' names counter '{cycle.counter}'; counters are {', '.join(COUNTERS)}",
            node.span,
            hint=did_you_mean(cycle.counter, COUNTERS),
        )
    elif cycle.counter == "epoch" and target.kind is not Kind.LOADER:
        fail(f"run_cycle of '{node.name}': '{cycle.node}' is not a loader and has no 'epoch' counter", node.span)


class Problems:
    """The problems a check finds, each rendered with its source: ``fail`` collects them,
    ``raise_any`` raises them together."""

    def __init__(self, sources: Mapping[str, SourceText]):
        self.sources = sources
        self.found: list[Diagnostic] = []

    def fail(self, message: str, span: Span | None = None, hint: str | None = None) -> None:
        self.found.append(error(message, span, self.sources.get(span.file) if span else None, hint=hint))

    def raise_any(self) -> None:
        """Raises:
        ProgramError: every problem found, if any."""
        if self.found:
            raise ProgramError(self.found)


def diagnostics_of(problems: list[Diagnostic]) -> list[Diagnostic]:
    """Problems in source order (file, line, column), those without a position last."""
    return sorted(
        problems,
        key=lambda d: (
            d.span is None,
            d.span.file if d.span else "",
            d.span.line if d.span else 0,
            d.span.column if d.span else 0,
        ),
    )
