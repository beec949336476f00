"""The incremental path of a live change against the whole-program path, as an oracle.

For random programs (graphs that the flatten pass inlines or not, one-shot
setup the prologue pass hoists, ``repeat: 0`` and ``run_cycle`` guards that
make nodes unreachable, ``run_cycle`` references across the program) and
random sequences of changes (ADD of fragments, REMOVE, SET of options and
arguments as a PATCH makes them), each stage of a change that looks only at
what it touches gives what the whole-program stage gives: the edit script
applies to the same source plan, the checks refuse the same changes with the
same diagnostics, and the compiled plan spliced into the running one equals
the plan compiled whole.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import deepleaps.runtime  # noqa: F401 - registers Graph, IterateCommand, PrintCommand
from deepleaps.compiler import REGISTRY, Compiled, Plan, compile_plan, compile_source, resolve_change
from deepleaps.compiler.incremental import check_change, compile_change
from deepleaps.control import editscript
from deepleaps.control.preparation import check_program
from deepleaps.lang import ProgramError, parse
from deepleaps.workspace.confine import Confinement

#: The checks confine classes and files to a workspace: here, the current directory.
CONFINEMENT = Confinement(Path.cwd())

CLASSES = {"graph": "Graph", "loader": "IterateCommand", "leaf": "PrintCommand"}
#: Names that ``run_cycle`` watches: most exist in a program of a few nodes, one never does.
TARGETS = ("root", "Graph", "Graph_1", "IterateCommand", "PrintCommand", "PrintCommand_2", "Nowhere")


@st.composite
def cycles(draw) -> str:
    counter = draw(st.sampled_from(["step", "step", "total_step", "epoch"]))
    return f"{draw(st.sampled_from(TARGETS))}.{counter}:{draw(st.integers(1, 3))}"


@st.composite
def trees(draw, depth: int) -> str:
    """A node of a program as text, with its children."""
    kind = draw(st.sampled_from(["leaf", "leaf", "graph", "graph", "loader"] if depth < 3 else ["leaf"]))
    arguments = []
    if draw(st.integers(0, 3)) == 0:
        arguments.append(f"repeat={draw(st.sampled_from([0, 1, 2, -1]))}")
    if draw(st.integers(0, 4)) == 0:
        arguments.append("finish=true")
    if draw(st.integers(0, 3)) == 0:
        arguments.append(f'run_cycle="{draw(cycles())}"')
    if kind == "loader":
        arguments.append("data=[1, 2]")
    text = f"*{CLASSES[kind]}" + (f"[{', '.join(arguments)}]" if arguments else "")
    if kind != "leaf":
        children = draw(st.lists(trees(depth + 1), min_size=1, max_size=3))
        joints = [draw(st.sampled_from([" -> ", ", "])) for _ in children[1:]]
        inner = children[0] + "".join(joint + child for joint, child in zip(joints, children[1:], strict=True))
        text += f"( {inner} )"
    return text


@st.composite
def programs(draw) -> Compiled:
    text = "$root( " + ", ".join(draw(st.lists(trees(1), min_size=1, max_size=3))) + " )"
    try:
        return compile_source(text)
    except ProgramError:
        assume(False)
        raise


def resolved(plan: Plan, text: str) -> tuple[Plan, frozenset[str]]:
    return resolve_change([parse(text, "<ADD>")], registry=REGISTRY, base=plan, added_while_running=True)


@st.composite
def changes(draw, plan: Plan) -> tuple[Plan, set[str]] | None:
    """A changed source plan and the names a diff may look among, as the verbs make them
    (None: the resolver refused the change, which the whole check refuses too)."""
    names = sorted(plan.nodes)
    what = draw(st.sampled_from(["add", "add", "remove", "set", "set"]))
    if what == "add":
        graphs = [name for name in names if plan[name].kind.has_children]
        fragment = draw(trees(2))
        text = fragment if draw(st.booleans()) else f"${draw(st.sampled_from(graphs))}( {fragment} )"
        try:
            return resolved(plan, text)
        except ProgramError:
            return None
    if what == "remove":
        others = [name for name in names if name != plan.root]
        assume(others)
        name = draw(st.sampled_from(others))
        among = {below.name for below in plan.walk(name)} | {plan[name].parent}
        return plan.without(name), among  # type: ignore[arg-type]
    name = draw(st.sampled_from(names))
    key = draw(st.sampled_from(["repeat", "finish", "run_cycle", "on_error", "content"]))
    value = {
        "repeat": st.sampled_from([0, 1, 2, -1]),
        "finish": st.booleans(),
        "run_cycle": cycles(),
        "on_error": st.sampled_from(["stop", "skip", "remove"]),
        "content": st.just("x"),
    }[key]
    operation = editscript.SetArgument(name, key, draw(value))
    return editscript.apply(plan, [operation]), {name}


def refusal(check, *arguments) -> list[str] | None:
    """The messages of the diagnostics ``check(*arguments)`` raises, or None if it passes."""
    try:
        check(*arguments)
    except ProgramError as problem:
        return sorted(diagnostic.message for diagnostic in problem.diagnostics)
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.data())
def test_each_stage_of_a_change_gives_what_the_whole_program_path_gives(data):
    running = data.draw(programs())
    for _ in range(data.draw(st.integers(1, 4))):
        change = data.draw(changes(running.source))
        if change is None:
            continue
        new, among = change
        script = editscript.diff(running.source, new, 7, among)
        after = editscript.apply(running.source, script)
        assert after == new
        assert after == editscript.apply(running.source, editscript.diff(running.source, new))
        changed = editscript.changed(running.source, script)
        if not editscript.diff(running.source, after, among=changed):
            assert not editscript.diff(running.source, after)
            continue
        full = refusal(check_program, after, REGISTRY, {}, CONFINEMENT)
        assert refusal(check_change, running.source, after, changed, REGISTRY, {}, CONFINEMENT) == full
        if full is not None:
            continue
        whole = compile_plan(after)
        compiled = compile_change(running, after, changed)
        assert compiled.source == after
        assert compiled.plan == whole.plan
        if compiled.changed is not None:
            differ = {
                name
                for name in running.plan.nodes.keys() | whole.plan.nodes.keys()
                if running.plan.nodes.get(name) != whole.plan.nodes.get(name)
            }
            assert differ <= compiled.changed
        running = compiled


def test_a_change_below_a_loader_is_compiled_in_its_region_only():
    """The region of a change is the subtree of the nearest graph that cannot be inlined:
    the rest of the compiled plan is the running plan's, node for node."""
    running = compile_source(
        "$root( *IterateCommand[data=[1, 2]]( *PrintCommand -> *Graph( *PrintCommand ) ) -> *Graph( *PrintCommand ) )"
    )
    new, among = resolved(running.source, '$IterateCommand( *PrintCommand[content="hi"] )')
    script = editscript.diff(running.source, new, 1, among)
    compiled = compile_change(running, new, editscript.changed(running.source, script))
    assert compiled.plan == compile_plan(new).plan
    assert compiled.changed == {"IterateCommand", "PrintCommand", "Graph", "PrintCommand_1", "PrintCommand_3"}
    assert all(compiled.plan[name] is running.plan[name] for name in ("root", "Graph_1", "PrintCommand_2"))


def test_a_change_at_the_root_is_compiled_whole():
    running = compile_source("$root( *PrintCommand -> *PrintCommand )")
    new, _ = resolved(running.source, "*PrintCommand")
    compiled = compile_change(running, new, editscript.changed(running.source, editscript.diff(running.source, new)))
    assert compiled.changed is None
    assert compiled.plan == compile_plan(new).plan


def test_a_graph_whose_guard_the_compiler_drops_is_inlined_so_its_parent_is_recompiled():
    """``run_cycle="Graph.step:1"`` on a child of ``Graph`` is always true: the guards pass
    drops it and the flatten pass inlines the child, so a change below the child changes
    its parent's schedule too."""
    running = compile_source('$root( *Graph[finish=true]( *Graph[run_cycle="Graph.step:1"]( *PrintCommand ) ) )')
    new, among = resolved(running.source, "$Graph_1( *PrintCommand )")
    script = editscript.diff(running.source, new, 1, among)
    compiled = compile_change(running, new, editscript.changed(running.source, script))
    assert compiled.plan == compile_plan(new).plan
    assert compiled.plan["Graph"].schedule == ("PrintCommand", "PrintCommand_1")


def test_removing_the_node_that_watched_a_graph_elsewhere_lets_that_graph_be_inlined():
    """A ``run_cycle`` that reads a graph's counters keeps the graph from being inlined; when
    its node goes, the graph outside the region of the change is inlined after all."""
    running = compile_source(
        '$root( *Graph( *PrintCommand ) -> *Graph[finish=true]( *PrintCommand[run_cycle="Graph.total_step:2"] ) )'
    )
    assert "Graph" in running.plan["root"].schedule  # watched: not inlined
    new = running.source.without("PrintCommand_1")
    compiled = compile_change(running, new, editscript.changed(running.source, editscript.diff(running.source, new)))
    assert compiled.plan == compile_plan(new).plan
    assert "Graph" not in (compiled.plan["root"].schedule or ())


def test_a_new_watcher_of_the_changed_graph_keeps_its_parent_from_being_inlined():
    """A plain graph whose child is watched is not inlined: a node added below that child
    that watches it changes the parent's place, outside the region of the change."""
    running = compile_source("$root( *Graph( *Graph[repeat=2, finish=true]( *PrintCommand ) ) )")
    assert "Graph" not in running.plan["root"].schedule  # inlined
    new, among = resolved(running.source, '$Graph_1( *PrintCommand[run_cycle="Graph_1.step:2"] )')
    script = editscript.diff(running.source, new, 1, among)
    compiled = compile_change(running, new, editscript.changed(running.source, script))
    assert compiled.plan == compile_plan(new).plan
    assert "Graph" in compiled.plan["root"].schedule
