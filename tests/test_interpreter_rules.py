"""The run rules of docs/design.md §4 and of the interpreter's docstring, as exact event traces.

Each test compiles a small program whose leaves are recording commands and
asserts the exact sequence of events they record, the way Ignite's engine
tests record ``(epoch, iteration, event)``. Every program runs twice, from
the unoptimised plan (``Compiled.source``) and from the optimised one
(``Compiled.plan``), and both runs must record the same trace.

A ``Rec`` leaf records ``(node, step, total_step, (parent step, parent
total_step, parent epoch), sample)``; the other commands record tagged
tuples (``("echo", …)``, ``("boom", …)``, ``("safe", …)`` …).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import pytest

import deepleaps.runtime.commands  # noqa: F401  (registers the built-in commands)
from deepleaps.compiler import REGISTRY, Compiled, Kind, OnError, compile_plan, compile_source, resolve
from deepleaps.lang import Diagnostic, ProgramError, parse
from deepleaps.lang.programfile import load_program_file
from deepleaps.runtime import Command, Context, Interpreter, NodeFailed, RunStopped

RULES = REGISTRY.child()
KINDS = ("plan", "source")


def _counters(ctx: Context, name: str) -> tuple[int, int, int]:
    state = ctx.counters(name)
    return (state.step, state.total_step, state.epoch)


@RULES.register
class Rec(Command):
    """Records its node, its own step and total_step, its parent's counters and the sample."""

    name = "Rec"
    kind = Kind.LEAF

    def run(self, ctx: Context) -> None:
        step, total_step, _ = _counters(ctx, self.node.name)
        ctx.variables["trace"].append((self.node.name, step, total_step, _counters(ctx, self.node.parent), ctx.sample))


@RULES.register
class Echo(Command):
    """Records the (resolved) value of its argument."""

    name = "Echo"
    kind = Kind.LEAF

    @attrs.frozen
    class Args:
        value: Any = None

    def run(self, ctx: Context) -> None:
        ctx.variables["trace"].append(("echo", self.node.name, self.args.value))


@RULES.register
class Boom(Command):
    """Raises ValueError on the runs numbered in ``at`` (every run when empty)."""

    name = "Boom"
    kind = Kind.LEAF

    @attrs.frozen
    class Args:
        at: list = attrs.Factory(list)

    def run(self, ctx: Context) -> None:
        total_step = ctx.counters(self.node.name).total_step
        ctx.variables["trace"].append(("boom", self.node.name, total_step))
        if not self.args.at or total_step in self.args.at:
            raise ValueError(f"boom at run {total_step}")


@RULES.register
class Mistake(Command):
    """Reports a user's mistake, as a command that builds something from a configuration does."""

    name = "Mistake"
    kind = Kind.LEAF

    def run(self, ctx: Context) -> None:
        raise ProgramError([Diagnostic("'Adamm' is not an optimizer")])


@RULES.register
class Stopper(Command):
    """Asks the interpreter to stop on its run number ``at``."""

    name = "Stopper"
    kind = Kind.LEAF

    @attrs.frozen
    class Args:
        at: int = 1

    def run(self, ctx: Context) -> None:
        total_step = ctx.counters(self.node.name).total_step
        if total_step == self.args.at:
            ctx.variables["trace"].append(("stop requested", self.node.name, total_step))
            ctx.interpreter.request_stop()


@RULES.register
class Snapshot(Command):
    """Records that it ran; on run ``at`` keeps the interpreter's snapshot and position (a checkpoint)."""

    name = "Snapshot"
    kind = Kind.LEAF

    @attrs.frozen
    class Args:
        at: int = 1

    def run(self, ctx: Context) -> None:
        state = ctx.counters(self.node.name)
        ctx.variables["trace"].append(("save", self.node.name, state.step, state.total_step))
        if state.total_step == self.args.at:
            ctx.variables["saved"].append((ctx.interpreter.snapshot(), ctx.interpreter.position()))


DEFINITIONS = load_program_file(
    "rules.yaml",
    """
DEFINE:
  A: {command: Rec}
  B: {command: Rec}
  C: {command: Rec}
  D: {command: Rec}
  E: {command: Rec}
  G: {command: Graph, repeat: 2}
  H: {command: Graph}
  L: {command: IterateCommand, args: {data: $xs}}
  M: {command: IterateCommand, args: {data: $ys}}
  Bad: {command: Boom}
  Stop: {command: Stopper}
  Save: {command: Snapshot}
""",
)


def compile_program(text: str) -> Compiled:
    return compile_source(text, registry=RULES, definitions=DEFINITIONS)


def interpreter(plan, variables: Mapping[str, Any] | None = None) -> tuple[Interpreter, list]:
    """An interpreter for ``plan`` whose commands record into the returned list."""
    trace: list = []
    values = {"xs": [1, 2, 3], "ys": [10, 20], "saved": [], **(variables or {}), "trace": trace}
    return Interpreter(plan, registry=RULES, variables=values), trace


def run_plan(plan, variables: Mapping[str, Any] | None = None, setup: Callable | None = None) -> list:
    """Run ``plan`` (after ``setup(interpreter, trace)``); the trace, ending with any exception raised."""
    interp, trace = interpreter(plan, variables)
    if setup is not None:
        setup(interp, trace)
    try:
        interp.run()
    except Exception as error:
        trace.append(("raised", type(error).__name__, str(error)))
    return trace


def run_both(text: str, variables: Mapping[str, Any] | None = None, setup: Callable | None = None) -> list:
    """Run ``text`` from the optimised and the unoptimised plan; both traces must be equal."""
    compiled = compile_program(text)
    traces = {kind: run_plan(getattr(compiled, kind), variables, setup) for kind in KINDS}
    assert traces["plan"] == traces["source"], "the optimised plan runs differently from the source plan"
    return traces["plan"]


def for_both(scenario: Callable[[str], Any]) -> Any:
    """Run ``scenario(kind)`` for both plan kinds; the results must be equal."""
    results = {kind: scenario(kind) for kind in KINDS}
    assert results["plan"] == results["source"], "the optimised plan runs differently from the source plan"
    return results["plan"]


# ---- graphs: order and repeat ------------------------------------------------------


def test_graph_runs_its_children_once_per_step_in_topological_order():
    trace = run_both("$root( $G( $A -> $B, $A -> $C ) )")
    assert trace == [
        ("A", 1, 1, (1, 1, 0), None),
        ("B", 1, 1, (1, 1, 0), None),
        ("C", 1, 1, (1, 1, 0), None),
        ("A", 2, 2, (2, 2, 0), None),
        ("B", 2, 2, (2, 2, 0), None),
        ("C", 2, 2, (2, 2, 0), None),
    ]


def test_ties_in_the_topological_order_go_to_order_of_appearance():
    # Appearance: D, C, A, B. A waits for C and B; of the ready ones, earlier first.
    trace = run_both("$root( $G[repeat=1]( $D, $C -> $A, $B -> $A ) )")
    assert [event[0] for event in trace] == ["D", "C", "B", "A"]
    # An edge against the order of appearance wins over it.
    trace = run_both("$root( $G[repeat=1]( $A, $C, $B -> $A ) )")
    assert [event[0] for event in trace] == ["C", "B", "A"]


def test_repeat_n_is_n_steps_per_activation():
    trace = run_both("$root( $G[repeat=2]( $H[repeat=3]( $A ) -> $B ) )")
    assert trace == [
        ("A", 1, 1, (1, 1, 0), None),
        ("A", 2, 2, (2, 2, 0), None),
        ("A", 3, 3, (3, 3, 0), None),
        ("B", 1, 1, (1, 1, 0), None),
        # H is activated again: its step and A's restart, total_step goes on.
        ("A", 1, 4, (1, 4, 0), None),
        ("A", 2, 5, (2, 5, 0), None),
        ("A", 3, 6, (3, 6, 0), None),
        ("B", 2, 2, (2, 2, 0), None),
    ]


def test_repeat_of_a_leaf_runs_it_n_times_per_step_of_its_parent():
    trace = run_both("$root( $G[repeat=2]( $A[repeat=2] -> $B ) )")
    assert trace == [
        ("A", 1, 1, (1, 1, 0), None),
        ("A", 2, 2, (1, 1, 0), None),
        ("B", 1, 1, (1, 1, 0), None),
        ("A", 3, 3, (2, 2, 0), None),
        ("A", 4, 4, (2, 2, 0), None),
        ("B", 2, 2, (2, 2, 0), None),
    ]


def test_repeat_zero_never_runs():
    trace = run_both("$root( $G( $A[repeat=0] -> $B ) )")
    assert [event[0] for event in trace] == ["B", "B"]


# ---- loaders --------------------------------------------------------------------------


def test_loader_step_is_a_batch_and_the_batch_is_the_sample():
    trace = run_both("$root( $L( $A ) )", {"xs": ["a", "b", "c"]})
    assert trace == [
        ("A", 1, 1, (1, 1, 1), "a"),
        ("A", 2, 2, (2, 2, 1), "b"),
        ("A", 3, 3, (3, 3, 1), "c"),
    ]


def test_loader_activation_is_an_epoch_and_repeat_minus_one_runs_until_the_data_runs_out():
    trace = run_both("$root( $G[repeat=3]( $M( $A ) -> $B ) )")
    assert trace == [
        ("A", 1, 1, (1, 1, 1), 10),
        ("A", 2, 2, (2, 2, 1), 20),
        ("B", 1, 1, (1, 1, 0), None),
        ("A", 1, 3, (1, 3, 2), 10),
        ("A", 2, 4, (2, 4, 2), 20),
        ("B", 2, 2, (2, 2, 0), None),
        ("A", 1, 5, (1, 5, 3), 10),
        ("A", 2, 6, (2, 6, 3), 20),
        ("B", 3, 3, (3, 3, 0), None),
    ]


def test_a_loader_sibling_sees_the_outer_sample_not_the_inner_loaders_last_batch():
    trace = run_both("$root( $L( $M( $A ) -> $B ) )", {"xs": ["outer"]})
    assert [(event[0], event[-1]) for event in trace] == [("A", 10), ("A", 20), ("B", "outer")]


def test_loader_repeat_caps_the_batches_of_an_epoch():
    trace = run_both("$root( $G( $L[repeat=2]( $A ) ) )", {"xs": [1, 2, 3]})
    assert trace == [
        ("A", 1, 1, (1, 1, 1), 1),
        ("A", 2, 2, (2, 2, 1), 2),
        ("A", 1, 3, (1, 3, 2), 1),
        ("A", 2, 4, (2, 4, 2), 2),
    ]
    # A repeat beyond the data: the epoch ends with the data.
    trace = run_both("$root( $L[repeat=5]( $A ) )", {"xs": [1, 2]})
    assert [event[4] for event in trace] == [1, 2]


def test_an_empty_loader_counts_its_epochs_and_runs_no_step():
    def scenario(kind):
        interp, trace = interpreter(getattr(compile_program("$root( $G( $L( $A ) -> $B ) )"), kind), {"xs": []})
        interp.run()
        return trace, interp.states["L"].counters(), interp.states["A"].counters()

    trace, loader, leaf = for_both(scenario)
    assert trace == [("B", 1, 1, (1, 1, 0), None), ("B", 2, 2, (2, 2, 0), None)]
    assert loader == {"step": 0, "total_step": 0, "epoch": 2}
    assert leaf == {"step": 0, "total_step": 0, "epoch": 0}


def test_counters_after_a_run():
    # step: runs in the current activation of the parent; total_step: every run; epoch: loaders.
    def scenario(kind):
        interp, _ = interpreter(getattr(compile_program("$root( $G[repeat=3]( $M( $A ) -> $B ) )"), kind))
        interp.run()
        return {name: state.counters() for name, state in interp.states.items()}

    counters = for_both(scenario)
    assert counters == {
        "root": {"step": 1, "total_step": 1, "epoch": 0},
        "G": {"step": 3, "total_step": 3, "epoch": 0},
        "M": {"step": 2, "total_step": 6, "epoch": 3},
        "A": {"step": 2, "total_step": 6, "epoch": 0},
        "B": {"step": 3, "total_step": 3, "epoch": 0},
    }


# ---- run_cycle --------------------------------------------------------------------------


def test_run_cycle_on_step_runs_at_multiples_of_the_step_in_every_epoch():
    trace = run_both(
        '$root( $G( $L( $A -> $B[run_cycle="L.step:2"] ) ) )',
        {"xs": [1, 2, 3, 4, 5]},
    )
    assert [(event[0], event[3]) for event in trace if event[0] == "B"] == [
        ("B", (2, 2, 1)),
        ("B", (4, 4, 1)),
        ("B", (2, 7, 2)),
        ("B", (4, 9, 2)),
    ]
    # B's own step counts its runs in the current activation of its parent.
    assert [event[1:3] for event in trace if event[0] == "B"] == [(1, 1), (2, 2), (1, 3), (2, 4)]


def test_run_cycle_on_total_step_spans_epochs():
    trace = run_both('$root( $G( $L( $A[run_cycle="L.total_step:2"] ) ) )', {"xs": [1, 2, 3]})
    assert trace == [
        ("A", 1, 1, (2, 2, 1), 2),
        ("A", 1, 2, (1, 4, 2), 1),
        ("A", 2, 3, (3, 6, 2), 3),
    ]


def test_run_cycle_on_epoch_runs_once_per_matching_epoch():
    # Inside the batch loop the epoch does not move between two batches: A runs
    # at the first batch of epochs 2 and 4 only.
    trace = run_both('$root( $G[repeat=4]( $M( $A[run_cycle="M.epoch:2"] ) ) )')
    assert trace == [
        ("A", 1, 1, (1, 3, 2), 10),
        ("A", 1, 2, (1, 7, 4), 10),
    ]


def test_run_cycle_waits_for_the_counter_to_move():
    # B watches A.total_step; A runs every second step of G, so between two of
    # its runs A's counter stays where it was and B does not run again.
    trace = run_both('$root( $G[repeat=5]( $A[run_cycle="G.step:2"] -> $B[run_cycle="A.total_step:1"] -> $C ) )')
    assert [(event[0], event[3][0]) for event in trace] == [
        ("C", 1),
        ("A", 2),
        ("B", 2),
        ("C", 2),
        ("C", 3),
        ("A", 4),
        ("B", 4),
        ("C", 4),
        ("C", 5),
    ]


def test_run_cycle_never_runs_before_the_counter_is_positive():
    trace = run_both('$root( $G[repeat=2]( $A[run_cycle="B.total_step:1"] -> $B ) )')
    # A runs before B in each step: B's total_step is 0, then 1.
    assert [(event[0], event[3][0]) for event in trace] == [("B", 1), ("A", 2), ("B", 2)]


def test_run_cycle_on_step_runs_again_after_the_step_counter_reset():
    trace = run_both('$root( $G( $L( $A[run_cycle="L.step:2"] ) ) )', {"xs": [1, 2, 3]})
    assert trace == [
        ("A", 1, 1, (2, 2, 1), 2),
        ("A", 1, 2, (2, 5, 2), 2),
    ]


# ---- finish ---------------------------------------------------------------------------------


def test_finish_runs_once_then_joins_predecessors_to_successors():
    trace = run_both("$root( $G[repeat=3]( $A -> $B[finish=true] -> $C, $D ) )")
    assert [event[0] for event in trace] == ["A", "B", "C", "D", "A", "C", "D", "A", "C", "D"]


def test_finish_first_child_is_one_shot_setup():
    trace = run_both("$root( $G[repeat=3]( $A[finish=true] -> $B ) )")
    assert trace == [
        ("A", 1, 1, (1, 1, 0), None),
        ("B", 1, 1, (1, 1, 0), None),
        ("B", 2, 2, (2, 2, 0), None),
        ("B", 3, 3, (3, 3, 0), None),
    ]


def test_finish_waits_until_the_repeats_are_spent():
    trace = run_both("$root( $G[repeat=2]( $A[finish=true, repeat=2] -> $B ) )")
    assert trace == [
        ("A", 1, 1, (1, 1, 0), None),
        ("A", 2, 2, (1, 1, 0), None),
        ("B", 1, 1, (1, 1, 0), None),
        ("B", 2, 2, (2, 2, 0), None),
    ]


def test_finish_on_a_loader_runs_one_epoch():
    trace = run_both("$root( $G[repeat=3]( $M[finish=true]( $A ) -> $B ) )")
    assert trace == [
        ("A", 1, 1, (1, 1, 1), 10),
        ("A", 2, 2, (2, 2, 1), 20),
        ("B", 1, 1, (1, 1, 0), None),
        ("B", 2, 2, (2, 2, 0), None),
        ("B", 3, 3, (3, 3, 0), None),
    ]


# ---- variables -------------------------------------------------------------------------------


def test_variables_resolve_when_the_command_runs():
    trace = run_both(
        "$root( $G( *Echo[value=$v] -> *Echo[value=$self.name] -> *Echo[value=$cfg.lr] "
        '-> *SetCommand[key="v", value="set"] -> *Echo[value=[$v, $xs]] ) )',
        {"v": "initial", "cfg": {"lr": 0.1}, "xs": [1]},
    )
    assert trace == [
        ("echo", "Echo", "initial"),
        ("echo", "Echo_1", "Echo_1"),
        ("echo", "Echo_2", 0.1),
        ("echo", "Echo_3", ["set", [1]]),
        ("echo", "Echo", "set"),
        ("echo", "Echo_1", "Echo_1"),
        ("echo", "Echo_2", 0.1),
        ("echo", "Echo_3", ["set", [1]]),
    ]


def test_a_variable_set_by_a_command_is_read_by_a_later_node_in_the_same_step():
    trace = run_both(
        '$root( $L( *SetCommand[key="seen", value=$xs] -> *Echo[value=$seen] ) )',
        {"xs": ["p", "q"]},
    )
    assert trace == [("echo", "Echo", ["p", "q"]), ("echo", "Echo", ["p", "q"])]


def test_an_unknown_variable_fails_the_node_with_its_path():
    trace = run_both("$root( $G( *Echo[value=$nope] ) )")
    assert len(trace) == 1
    assert trace[0][:2] == ("raised", "NodeFailed")
    assert trace[0][2].startswith("node root/G/Echo failed: UnknownVariable: unknown variable '$nope'")


# ---- errors ----------------------------------------------------------------------------------


def test_on_error_stop_raises_node_failed_with_the_node_path():
    def scenario(kind):
        interp, trace = interpreter(getattr(compile_program("$root( $G[repeat=3]( $A -> $Bad[at=[2]] -> $B ) )"), kind))
        assert interp.plan["Bad"].on_error is OnError.STOP  # the default for nodes of the program file
        with pytest.raises(NodeFailed) as failure:
            interp.run()
        return trace, failure.value.path, str(failure.value), type(failure.value.error)

    trace, path, message, cause = for_both(scenario)
    assert trace == [
        ("A", 1, 1, (1, 1, 0), None),
        ("boom", "Bad", 1),
        ("B", 1, 1, (1, 1, 0), None),
        ("A", 2, 2, (2, 2, 0), None),
        ("boom", "Bad", 2),
    ]
    assert path == "root/G/Bad"
    assert message == "node root/G/Bad failed: ValueError: boom at run 2"
    assert cause is ValueError


def test_a_users_mistake_stops_the_run_with_its_message_once():
    trace = run_both("$root( $G( *Mistake ) )")
    assert trace[-1] == ("raised", "NodeFailed", "node root/G/Mistake failed: 'Adamm' is not an optimizer")


def test_on_error_stop_reports_the_path_through_an_inlined_graph():
    trace = run_both("$root( $G( $H( $A -> $Bad ) -> $B ) )")
    assert trace[-1] == ("raised", "NodeFailed", "node root/G/H/Bad failed: ValueError: boom at run 1")


def test_on_error_skip_goes_on_and_runs_the_node_again_next_step():
    def scenario(kind):
        interp, trace = interpreter(
            getattr(compile_program('$root( $G[repeat=3]( $A -> $Bad[on_error="skip", at=[1, 2]] -> $B ) )'), kind)
        )
        interp.run()
        return trace, "Bad" in interp.plan

    trace, still_there = for_both(scenario)
    assert trace == [
        ("A", 1, 1, (1, 1, 0), None),
        ("boom", "Bad", 1),
        ("B", 1, 1, (1, 1, 0), None),
        ("A", 2, 2, (2, 2, 0), None),
        ("boom", "Bad", 2),
        ("B", 2, 2, (2, 2, 0), None),
        ("A", 3, 3, (3, 3, 0), None),
        ("boom", "Bad", 3),
        ("B", 3, 3, (3, 3, 0), None),
    ]
    assert still_there


@pytest.mark.parametrize(
    ("program", "a_steps"),
    [
        ('$root( $G[repeat=3]( $A -> $Bad[on_error="remove"] -> $B ) )', [1, 2, 3]),
        # A's parent H is activated once per step of G, so A's step restarts each time.
        ('$root( $G[repeat=3]( $H( $A -> $Bad[on_error="remove"] ) -> $B ) )', [1, 1, 1]),
    ],
    ids=["direct", "in-inlined-graph"],
)
def test_on_error_remove_stops_running_the_node_after_its_first_failure(program, a_steps):
    def scenario(kind):
        interp, trace = interpreter(getattr(compile_program(program), kind))
        told = []
        interp.on_remove = lambda node, error: told.append((node.name, str(error)))
        interp.run()
        return [event[:3] for event in trace], told, interp.states["Bad"].finished

    trace, told, disabled = for_both(scenario)
    assert trace == [
        ("A", a_steps[0], 1),
        ("boom", "Bad", 1),
        ("B", 1, 1),
        ("A", a_steps[1], 2),
        ("B", 2, 2),
        ("A", a_steps[2], 3),
        ("B", 3, 3),
    ]
    # The interpreter stops running it and tells the program's owner, who removes it (the controller).
    assert told == [("Bad", "boom at run 1")]
    assert disabled


# ---- stopping -----------------------------------------------------------------------------------


def test_request_stop_ends_the_run_at_the_next_safe_point():
    # repeat -1: forever, until stopped. The step under way is finished first.
    trace = run_both("$root( $G[repeat=-1]( $A -> $Stop[at=2] -> $B ) )")
    assert trace == [
        ("A", 1, 1, (1, 1, 0), None),
        ("B", 1, 1, (1, 1, 0), None),
        ("A", 2, 2, (2, 2, 0), None),
        ("stop requested", "Stop", 2),
        ("B", 2, 2, (2, 2, 0), None),
    ]


def test_request_stop_inside_a_loader_stops_before_the_next_batch():
    trace = run_both("$root( $G( $L( $A -> $Stop[at=2] ) -> $B ) )", {"xs": [1, 2, 3]})
    assert trace == [
        ("A", 1, 1, (1, 1, 1), 1),
        ("A", 2, 2, (2, 2, 1), 2),
        ("stop requested", "Stop", 2),
    ]


def test_request_stop_before_running_runs_nothing_and_run_swallows_run_stopped():
    def scenario(kind):
        interp, trace = interpreter(getattr(compile_program("$root( $G( $A ) )"), kind))
        interp.request_stop()
        interp.run()  # RunStopped does not escape
        return trace, interp.states["G"].counters()

    trace, counters = for_both(scenario)
    assert trace == []
    assert counters["step"] == 0


def test_run_stopped_is_raised_by_the_safe_point_itself():
    interp, _ = interpreter(compile_program("$root( $A )").plan)
    interp.request_stop()
    with pytest.raises(RunStopped):
        interp.safe_point(interp.plan["root"])


# ---- safe points -----------------------------------------------------------------------------------


def _record_safe_points(interp: Interpreter, trace: list) -> None:
    interp.add_safe_point_hook(lambda it, node: trace.append(("safe", node.name, it.states[node.name].step)))


def test_safe_point_hooks_run_at_the_start_of_every_graph_step():
    # The hook sees the node and its counters before the step starts; a loader
    # has one more safe point than batches (the one that finds no more data).
    trace = run_both("$root( $G( $M( $A ) -> $B ) )", setup=_record_safe_points)
    assert [event[:3] for event in trace] == [
        ("safe", "root", 0),
        ("safe", "G", 0),
        ("safe", "M", 0),
        ("A", 1, 1),
        ("safe", "M", 1),
        ("A", 2, 2),
        ("safe", "M", 2),
        ("B", 1, 1),
        ("safe", "G", 1),
        ("safe", "M", 0),
        ("A", 1, 3),
        ("safe", "M", 1),
        ("A", 2, 4),
        ("safe", "M", 2),
        ("B", 2, 2),
    ]


def test_an_inlined_graph_keeps_its_safe_point():
    trace = run_both("$root( $G( *Graph( $Stop ) -> *Graph( $A ) ) )")
    assert trace == [("stop requested", "Stop", 1)]


# ---- plan changes at safe points ------------------------------------------------------------------


def test_install_at_a_safe_point_keeps_counters_of_untouched_nodes():
    before, after = "$root( $G[repeat=3]( $A -> $B -> $D ) )", "$root( $G[repeat=3]( $A -> $C -> $D ) )"

    def scenario(kind):
        new_plan = getattr(compile_program(after), kind)
        interp, trace = interpreter(getattr(compile_program(before), kind))

        def patch(it: Interpreter, node) -> None:
            if node.name == "G" and it.states["G"].step == 1:
                trace.append(("install",))
                it.install(new_plan)

        interp.add_safe_point_hook(patch)
        interp.run()
        return trace, sorted(interp.states)

    trace, states = for_both(scenario)
    assert trace == [
        ("A", 1, 1, (1, 1, 0), None),
        ("B", 1, 1, (1, 1, 0), None),
        ("D", 1, 1, (1, 1, 0), None),
        ("install",),
        # A, D and G go on counting; C starts from zero; B is gone.
        ("A", 2, 2, (2, 2, 0), None),
        ("C", 1, 1, (2, 2, 0), None),
        ("D", 2, 2, (2, 2, 0), None),
        ("A", 3, 3, (3, 3, 0), None),
        ("C", 2, 2, (3, 3, 0), None),
        ("D", 3, 3, (3, 3, 0), None),
    ]
    assert states == ["A", "C", "D", "G", "root"]


def test_a_node_added_while_running_defaults_to_on_error_remove():
    program = "$root( $G[repeat=3]( $A -> $B ) )"

    def scenario(kind):
        compiled = compile_program(program)
        patched = compile_plan(
            resolve(
                [parse("$G( $A -> $Bad -> $B )", "<patch>")],
                DEFINITIONS.definitions,
                registry=RULES,
                base=compiled.source,
                added_while_running=True,
            )
        )
        assert patched.source["Bad"].on_error is OnError.REMOVE
        assert patched.source["A"].on_error is OnError.STOP
        interp, trace = interpreter(getattr(compiled, kind))

        def patch(it: Interpreter, node) -> None:
            if node.name == "G" and it.states["G"].step == 1 and "Bad" not in it.plan and "installed" not in trace:
                trace.append("installed")
                it.install(getattr(patched, kind))

        interp.add_safe_point_hook(patch)
        interp.run()
        return [event[:3] if isinstance(event, tuple) else event for event in trace], interp.states["Bad"].finished

    trace, disabled = for_both(scenario)
    assert trace == [
        ("A", 1, 1),
        ("B", 1, 1),
        "installed",
        ("A", 2, 2),
        ("boom", "Bad", 1),
        ("B", 2, 2),
        ("A", 3, 3),
        ("B", 3, 3),
    ]
    assert disabled


# ---- resuming from a checkpoint -------------------------------------------------------------------


def _checkpoint_and_resume(text: str, kind: str, variables: Mapping[str, Any] | None = None):
    """Run ``text`` whole (Save keeps a snapshot), then a fresh interpreter restored from it."""
    plan = getattr(compile_program(text), kind)
    full_interp, full = interpreter(plan, variables)
    full_interp.run()
    states, position = full_interp.context.variables["saved"][0]
    resumed_interp, resumed = interpreter(plan, variables)
    resumed_interp.restore(states, position)
    resumed_interp.add_resume_hook(lambda it: resumed.append(("resumed at", tuple(it.position()))))
    resumed_interp.run()
    final = {name: state.counters() for name, state in resumed_interp.states.items()}
    full_final = {name: state.counters() for name, state in full_interp.states.items()}
    return full, position, resumed, final, full_final


def test_resume_re_enters_the_step_at_the_checkpoint_position():
    text = "$root( $A[finish=true] -> $G[repeat=3]( $B[finish=true] -> $M( $C ) -> $D -> $Save[at=2] -> $E ) )"
    results = {kind: _checkpoint_and_resume(text, kind) for kind in KINDS}
    assert results["plan"] == results["source"]
    full, position, resumed, final, full_final = results["plan"]
    assert position == ["root", "G", "Save"]
    assert resumed == [
        # One-shot setup before the position runs again (root's A, then G's B) …
        ("A", 2, 2, (1, 1, 0), None),
        ("B", 2, 2, (2, 2, 0), None),
        # … M and D, which ran before the checkpoint in that step, do not; nor does Save.
        ("resumed at", ("root", "G")),
        ("E", 2, 2, (2, 2, 0), None),
        # Then the run goes on as the uninterrupted one did.
        ("C", 1, 5, (1, 5, 3), 10),
        ("C", 2, 6, (2, 6, 3), 20),
        ("D", 3, 3, (3, 3, 0), None),
        ("save", "Save", 3, 3),
        ("E", 3, 3, (3, 3, 0), None),
    ]
    # Apart from the re-run setup and the sample left over from before the checkpoint, the
    # resumed run records what the uninterrupted one recorded after the checkpoint.
    tail = full[full.index(("save", "Save", 2, 2)) + 1 :]
    assert [event[:4] for event in resumed[3:]] == [event[:4] for event in tail]
    assert {name: counters for name, counters in final.items() if name not in ("A", "B")} == {
        name: counters for name, counters in full_final.items() if name not in ("A", "B")
    }


def test_resume_through_an_inlined_graph():
    text = "$root( $G[repeat=3]( $M( $C ) -> $H( $D -> $Save[at=2] -> $E ) -> $B ) )"

    def scenario(kind):
        full, position, resumed, final, full_final = _checkpoint_and_resume(text, kind)
        # The position names the nodes under way: the optimised plan has no H to be under.
        assert position == (["root", "G", "Save"] if kind == "plan" else ["root", "G", "H", "Save"])
        tail = full[full.index(("save", "Save", 1, 2)) + 1 :]
        resumed = [event[:4] for event in resumed if event[0] != "resumed at"]
        return resumed, [event[:4] for event in tail], final == full_final

    resumed, tail, same_counters = for_both(scenario)
    assert resumed == tail
    assert same_counters
    assert resumed[:2] == [("E", 1, 2, (1, 2, 0)), ("B", 2, 2, (2, 2, 0))]


def test_resume_inside_a_loader_continues_with_the_next_batch():
    def scenario(kind):
        full, position, resumed, final, full_final = _checkpoint_and_resume(
            "$root( $G( $L( $A -> $Save[at=2] ) ) )", kind, {"xs": [1, 2, 3]}
        )
        return position, [event for event in resumed if event[0] != "resumed at"], full, final, full_final

    position, resumed, full, final, full_final = for_both(scenario)
    assert position == ["root", "G", "L", "Save"]
    assert resumed == full[full.index(("save", "Save", 2, 2)) + 1 :]
    assert final == full_final
