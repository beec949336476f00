"""Expected output of the optimisation passes.

For every sample program in ``compiler_samples/`` the plan is printed before
the passes and after every pass round that changed it, and compared with the
committed ``golden/<sample>.txt``. Any difference fails; run with
``DEEPLEAPS_UPDATE_GOLDEN=1`` to rewrite the files, then read the diff.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recording import RECORDING
from test_compiler_semantics import program_text, programs

from deepleaps.compiler import Compiled, OnError, Plan, compile_source
from deepleaps.lang import Variable
from deepleaps.lang.programfile import load_program_file

HERE = Path(__file__).parent
SAMPLES = HERE / "compiler_samples"
GOLDEN = HERE / "golden"
SAMPLE_FILES = sorted(SAMPLES.glob("*.dl"))
UPDATE = os.environ.get("DEEPLEAPS_UPDATE_GOLDEN") == "1"


def _value(value: Any) -> str:
    if isinstance(value, Variable):
        return "$" + value.name
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_value(item)}" for key, item in value.items()) + "}"
    return repr(value)


def dump(plan: Plan) -> str:
    """The plan as an indented tree, one node a line, then each graph's edges,
    prologue, schedule and inlined children; only what differs from the defaults."""
    lines: list[str] = []
    depth = {plan.root: 0}
    for node in plan.walk():
        level = depth[node.name]
        depth.update(dict.fromkeys(node.children, level + 1))
        pad = "    " * level
        options = [f"repeat={node.repeat}"]
        if node.finish:
            options.append("finish")
        if node.run_cycle is not None:
            options.append(f"run_cycle={node.run_cycle}")
        if node.on_error is not OnError.STOP:
            options.append(f"on_error={node.on_error.value}")
        args = ", ".join(f"{key}={_value(value)}" for key, value in node.args.items())
        lines.append(f"{pad}{node.name}: {node.command} {' '.join(options)}" + (f" [{args}]" if args else ""))
        if not node.kind.has_children:
            continue
        if node.edges:
            lines.append(f"{pad}  | edges: " + ", ".join(f"{source} -> {target}" for source, target in node.edges))
        if node.prologue:
            lines.append(f"{pad}  | prologue: " + ", ".join(node.prologue))
        if node.schedule is not None:
            lines.append(f"{pad}  | schedule: " + (", ".join(node.schedule) or "(empty)"))
        if node.inlined_from:
            lines.append(
                f"{pad}  | inlined: " + ", ".join(f"{child} from {graph}" for child, graph in node.inlined_from.items())
            )
    stray = sorted(set(plan.nodes) - set(depth))
    if stray:
        lines.append("not below the root: " + ", ".join(stray))
    return "\n".join(lines)


def report(path: Path, compiled: Compiled) -> str:
    """The program, the source plan, the plan after each pass round that changed it, the warnings."""
    parts = [f"== program {path.name}", path.read_text().rstrip(), "", "== source plan", dump(compiled.source)]
    for entry in compiled.log:
        parts += ["", f"== round {entry.round}: {entry.pass_id}", *(f"* {change}" for change in entry.changes)]
        parts.append(dump(entry.plan))
    parts += ["", "== warnings", *(compiled.warnings or ["(none)"])]
    return "\n".join(parts) + "\n"


def compile_sample(path: Path, disabled_passes=()) -> Compiled:
    definitions = load_program_file(SAMPLES / "defines.yaml")
    return compile_source(
        path.read_text(), path.name, definitions=definitions, registry=RECORDING, disabled_passes=disabled_passes
    )


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda path: path.stem)
def test_passes_give_the_expected_plans(path):
    text = report(path, compile_sample(path))
    golden = GOLDEN / f"{path.stem}.txt"
    if UPDATE:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"{golden} is missing: run with DEEPLEAPS_UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"{golden.name} differs: run with DEEPLEAPS_UPDATE_GOLDEN=1 and read the diff"


def test_every_pass_changes_some_sample():
    changed = {entry.pass_id for path in SAMPLE_FILES for entry in compile_sample(path).log}
    from deepleaps.compiler.passes import PASSES

    assert changed == set(PASSES)


def test_the_final_plan_is_a_fixed_point():
    from deepleaps.compiler.passes import optimise

    for path in SAMPLE_FILES:
        compiled = compile_sample(path)
        again, log, warnings = optimise(compiled.plan)
        assert (again, log, warnings) == (compiled.plan, [], [])


# ---- Plan.without, which the unreachable pass and on_error: remove use ----------------


def test_without_removes_a_scheduled_graph_and_everything_below_it():
    plan = compile_sample(SAMPLES / "loaders.dl").plan
    loader = plan["IterateCommand_1"]
    assert loader.schedule and plan["IterateCommand"].schedule
    smaller = plan.without("IterateCommand_1")
    assert {"IterateCommand_1", "Rec_2", "Rec_3"}.isdisjoint(smaller.nodes)
    assert "IterateCommand_1" not in smaller["IterateCommand"].children
    assert "IterateCommand_1" not in smaller["IterateCommand"].schedule


def test_without_a_child_of_an_inlined_graph_updates_both_schedules():
    compiled = compile_source('$root( *Graph( *Rec[tag="a"] -> *Rec[tag="b"] -> *Rec[tag="c"] ) )', registry=RECORDING)
    plan = compiled.plan
    assert plan["root"].schedule == ("Rec", "Rec_1", "Rec_2")
    smaller = plan.without("Rec_1")
    assert smaller["Graph"].children == ("Rec", "Rec_2")
    assert smaller["Graph"].edges == (("Rec", "Rec_2"),)
    assert smaller["Graph"].schedule == ("Rec", "Rec_2")
    assert smaller["root"].schedule == ("Rec", "Rec_2")
    assert dict(smaller["root"].inlined_from) == {"Rec": "Graph", "Rec_2": "Graph"}


def _without_one(plan: Plan, name: str) -> Plan:
    """Plan.without for one node, written the simple way: the reference for the fast one."""
    gone = {descendant.name for descendant in plan.walk(name)}
    parent = plan[plan[name].parent]
    before = [source for source, target in parent.edges if target == name]
    after = [target for source, target in parent.edges if source == name]
    edges = [edge for edge in parent.edges if name not in edge]
    edges += [(source, target) for source in before for target in after if (source, target) not in edges]
    nodes = {}
    for graph in plan.nodes.values():
        if graph.name in gone:
            continue
        if graph is parent:
            graph = attrs.evolve(graph, children=tuple(c for c in graph.children if c != name), edges=tuple(edges))
        if graph.kind.has_children:
            graph = attrs.evolve(
                graph,
                prologue=tuple(c for c in graph.prologue if c not in gone),
                schedule=None if graph.schedule is None else tuple(c for c in graph.schedule if c not in gone),
                inlined_from={c: g for c, g in graph.inlined_from.items() if c not in gone},
            )
        nodes[graph.name] = graph
    return attrs.evolve(plan, nodes=nodes)


def _same(left: Plan, right: Plan) -> bool:
    """Equal, with the same order of nodes, edges and inlined children."""
    order = [(name, node.edges, tuple(node.inlined_from)) for name, node in left.nodes.items()]
    return left == right and order == [
        (name, node.edges, tuple(node.inlined_from)) for name, node in right.nodes.items()
    ]


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs, st.booleans(), st.randoms(use_true_random=False))
def test_without_several_nodes_is_removing_them_one_after_the_other(program, optimised, random):
    compiled = compile_source(program_text(program), registry=RECORDING)
    plan = compiled.plan if optimised else compiled.source
    candidates = [name for name in plan.nodes if name != plan.root]
    names = random.sample(candidates, random.randint(0, len(candidates)))
    expected = plan
    removed = []
    for name in names:
        if name in expected:
            expected = _without_one(expected, name)
            removed.append(name)
    assert _same(plan.without(*removed), expected)
