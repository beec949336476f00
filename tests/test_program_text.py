"""The running program written back as program text (deepleaps/control/program_text.py):
read back, it is the same program, node for node, in the same order."""

from __future__ import annotations

import pytest
from control_fixtures import InProcess
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recording import RECORDING

from deepleaps.compiler import OnError, resolve
from deepleaps.control import editscript
from deepleaps.control.identity import match_identities, written_names
from deepleaps.control.program_text import ProgramWriter, exported_version, header
from deepleaps.lang import parse
from deepleaps.lang.programfile import load_program_file

DEFINES = """\
DEFINE:
  STEP: {command: Rec, args: {tag: step}}
  LOADER: {command: IterateCommand, args: {data: $xs}}
  EPOCHS: {command: Graph, repeat: 3}
  ONCE: {command: Rec, finish: true, on_error: remove}
"""
DEFINITIONS = load_program_file("defs.yaml", DEFINES).definitions
WRITER = ProgramWriter(RECORDING, DEFINITIONS)


def plan_of(text: str, *, running: bool = False):
    return resolve([parse(text, "<test>")], DEFINITIONS, registry=RECORDING, added_while_running=running)


def read_back(plan, version: int = 4):
    """The plan that the written text of ``plan`` resolves to, as APPLY resolves it."""
    text = WRITER.text(plan, version)
    program = parse(text, "<written>")
    edited = resolve([program], DEFINITIONS, registry=RECORDING, known=plan.nodes)
    return text, match_identities(plan, edited, written_names(program))


PROGRAMS = [
    "$root( $STEP )",
    '$root( $EPOCHS( $STEP -> *Rec[tag="x"], $STEP -> *Rec ) )',
    "$root( STEP -> STEP, STEP )\nSTEP",
    '$root[repeat=2]( $LOADER[repeat=2]( *Rec -> *Rec[tag="a", run_cycle="LOADER.step:2"] ) -> *Graph( *Rec ) )',
    "$root( *Rec as A, *Rec as B, $B -> $A, *Rec as C -> $A, $C -> $B )",
    '$root( $EPOCHS[repeat=1, finish=true] -> $ONCE[on_error="stop", finish=false] )',
    "$root( *Graph as G( *Rec as X ), *Graph as H( $STEP ) )\n$G( *Rec -> $X )",
]


@pytest.mark.parametrize("text", PROGRAMS)
def test_written_text_reads_back_to_the_same_program(text):
    plan = plan_of(text)
    written, back = read_back(plan)
    assert editscript.diff(plan, back).summary() == [], written
    assert back == plan, written


def test_nodes_are_written_as_their_definition_with_what_differs():
    plan = plan_of('$root( $EPOCHS[repeat=5]( $STEP[tag="changed"] -> STEP -> *Rec ) )')
    assert WRITER.text(plan, 7) == (
        header(7) + '\n$root($EPOCHS[repeat=5]($STEP[tag="changed"] -> STEP as STEP_1 -> *Rec as Rec))\n'
    )


def test_nodes_added_while_running_keep_their_on_error():
    plan = plan_of('$root( *Rec[tag="new"] )', running=True)
    assert plan["Rec"].on_error is OnError.REMOVE
    assert '*Rec[tag="new", on_error="remove"] as Rec' in WRITER.text(plan, 2)


def test_an_argument_unset_from_a_definition_falls_back_to_the_class():
    plan = editscript.apply(plan_of("$root( $STEP )"), [editscript.UnsetArgument("STEP", "tag")])
    written, back = read_back(plan)
    assert "*Rec as STEP" in written
    assert back == plan


def test_the_version_is_read_back_from_the_header():
    text = WRITER.text(plan_of("$root( $STEP )"), 12)
    assert exported_version(text) == 12
    assert exported_version("# a note\n\n" + text) == 12
    assert exported_version("$root( $STEP )\n" + text) is None  # only before the program
    assert exported_version("$root( $STEP )\n") is None


def test_the_cli_knows_a_stale_refusal_by_the_engine_s_words():
    from deepleaps.cli.control import STALE
    from deepleaps.control.engine import stale

    assert stale(3, 4).startswith(STALE)


@st.composite
def group_texts(draw, prefix: str = "N", depth: int = 2) -> str:
    """The children of a graph: nodes of every kind in a random order, labelled or not, then
    ``->`` edges between labelled ones in a random order that keeps the graph acyclic."""
    count = draw(st.integers(1, 5))
    names = [f"{prefix}_{index}" for index in range(count)]
    rank = draw(st.permutations(range(count)))
    pairs = draw(st.lists(st.tuples(st.integers(0, count - 1), st.integers(0, count - 1)), max_size=6, unique=True))
    pairs = [(a, b) for a, b in pairs if rank[a] < rank[b]]
    labelled = {index for pair in pairs for index in pair} | set(draw(st.sets(st.integers(0, count - 1))))
    nodes = []
    for index, name in enumerate(names):
        label = f" as {name}" if index in labelled else ""
        kind = draw(st.sampled_from(["rec", "step", "graph"] if depth else ["rec", "step"]))
        if kind == "rec":
            nodes.append("*Rec" + draw(st.sampled_from(["", '[tag="x"]', '[tag="y", repeat=2]'])) + label)
        elif kind == "step":
            nodes.append("STEP" + draw(st.sampled_from(["", '[tag="z"]'])) + label)
        else:
            nodes.append(f"*Graph{label}( {draw(group_texts(name, depth - 1))} )")
    edges = [f"${names[a]} -> ${names[b]}" for a, b in pairs]
    return ", ".join(draw(st.permutations(nodes)) + edges)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(group_texts())
def test_any_program_reads_back_to_itself(group):
    plan = plan_of(f"$root( {group} )")
    written, back = read_back(plan)
    assert back == plan, written


def test_the_program_verb_answers_with_the_program_at_its_version_and_journals_nothing(tmp_path):
    run = InProcess(tmp_path, {"name": "SGD", "lr": 0.1})
    assert run.send("ADD", '$root( *PrintCommand[content="y"] as P )')["version"] == 2
    reply = run.send("PROGRAM")
    assert reply["ok"] and reply["version"] == 2
    assert (
        reply["message"]
        == reply["data"]
        == (
            header(2) + "\n"
            "$root(\n"
            '    *PrintCommand[content="x"] as PrintCommand,\n'
            '    *PrintCommand[content="y", on_error="remove"] as P\n'
            ")\n"
        )
    )
    assert [entry["verb"] for entry in run.journaled()] == ["ADD"]
    assert run.send("PROGRAM@2")["ok"]
    stale = run.send("PROGRAM@1")
    assert not stale["ok"] and "stale: made against version 1, the program is at version 2" in stale["message"]
    applied = run.send("APPLY@2", reply["data"])  # the program as it is: nothing to change
    assert (applied["ok"], applied["message"], applied["version"]) == (True, "no change", 2), applied
