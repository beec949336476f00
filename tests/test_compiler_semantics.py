"""The optimisation passes keep run semantics: the optimised plan records the same trace as the source plan.

Every sample program and many generated ones — trees of ``*Graph[repeat=k]``,
``*IterateCommand[data=$xs]`` loaders and ``*Rec`` leaves with random
``repeat``, ``finish`` and ``run_cycle`` (on an ancestor's counters), and
``->`` edges forming DAGs — are run unoptimised (``Compiled.source``) and
optimised (``Compiled.plan``), with all passes and with each one switched off.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recording import RECORDING, run_trace

from deepleaps.compiler import compile_source
from deepleaps.compiler.passes import PASSES
from deepleaps.lang.programfile import load_program_file

SAMPLES = Path(__file__).parent / "compiler_samples"
SAMPLE_FILES = sorted(SAMPLES.glob("*.dl"))
DEFINES = SAMPLES / "defines.yaml"
PASS_SETS = [(), *[(pass_id,) for pass_id in PASSES]]


def assert_same_runs(text: str, filename: str = "<program>", definitions=None) -> None:
    """Compile ``text`` with every pass set; each optimised plan runs as the source plan does."""
    reference = None
    for disabled in PASS_SETS:
        compiled = compile_source(text, filename, definitions=definitions, registry=RECORDING, disabled_passes=disabled)
        if reference is None:
            reference = [str(record) for record in run_trace(compiled.source)]
        optimised = [str(record) for record in run_trace(compiled.plan)]
        assert optimised == reference, f"passes {list(PASSES)} without {list(disabled)} change the run of:\n{text}"


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda path: path.stem)
def test_samples_run_the_same_optimised(path):
    assert_same_runs(path.read_text(), path.name, load_program_file(DEFINES))


def test_seed_program_runs_setup_once_and_every_batch_of_every_epoch():
    path = SAMPLES / "seed.dl"
    compiled = compile_source(path.read_text(), path.name, definitions=load_program_file(DEFINES), registry=RECORDING)
    trace = [
        (record.tag, record.sample if record.tag in ("step", "log") else None) for record in run_trace(compiled.plan)
    ]
    epoch = [("step", 1), ("step", 2), ("log", 2), ("step", 3), ("save", None)]
    second = [("step", 1), ("log", 1), ("step", 2), ("step", 3), ("log", 3), ("save", None)]
    assert trace == [("container", None), ("model load", None), *epoch, *second]


# ---- regressions found by the generated programs below ---------------------------


def test_removing_a_never_run_node_keeps_the_order_of_its_siblings():
    # Without Rec_3, Rec_1 (s) no longer waits for it and would overtake Rec_2 (z).
    program = '$root( *Rec[tag="q"], *Rec[tag="s"], $Rec -> *Rec[tag="z"], *Rec[tag="b", repeat=0] -> $Rec_1 )'
    assert [record.tag for record in run_trace(compile_source(program, registry=RECORDING).plan)] == ["q", "z", "s"]
    assert_same_runs(program)


def test_step_guard_of_a_one_step_graph_is_always_true():
    # Graph_1 takes one step per activation: its step is 1 again when it is
    # re-activated, but its total_step moved, so Rec runs in both activations
    # and the guard is removed.
    program = '*Graph[repeat=2]( *Graph[repeat=1]( *Rec[tag="a", run_cycle="Graph_1.step:1"] ) )'
    compiled = compile_source(program, registry=RECORDING)
    assert len(run_trace(compiled.plan)) == 2
    assert compiled.plan["Rec"].run_cycle is None
    assert_same_runs(program)


@pytest.mark.parametrize("counter", ["step", "total_step", "epoch"])
def test_watchers_of_a_never_run_node(counter):
    program = (
        f'$root[repeat=2]( *IterateCommand[data=$xs, repeat=0], *Rec[tag="w", run_cycle="IterateCommand.{counter}:1"] )'
    )
    assert_same_runs(program)


def test_watchers_of_a_node_below_a_never_run_graph_are_removed_too():
    program = (
        '*Graph[repeat=0]( *Rec[tag="never"] ), *Rec[tag="w", run_cycle="Rec.total_step:1"], '
        '*Rec[tag="w2", run_cycle="Rec_1.total_step:1"], *Rec[tag="runs"]'
    )
    compiled = compile_source(f"$root( {program} )", registry=RECORDING)
    assert sorted(compiled.plan.nodes) == ["Rec_3", "root"]
    assert_same_runs(f"$root( {program} )")


def test_a_loader_whose_epoch_is_watched_stays_until_its_watcher_goes():
    # Rec_1 goes first (repeat: 0); then nothing watches the loader's epoch and it goes
    # too, with Rec below it. Removing it used to put it back into the plan without Rec.
    program = (
        "$root( *IterateCommand[data=$xs, repeat=0, finish=true]"
        '( *Rec[finish=true], *Rec[repeat=0, run_cycle="IterateCommand.epoch:1"] ) )'
    )
    compiled = compile_source(program, registry=RECORDING)
    assert sorted(compiled.plan.nodes) == ["root"]
    assert_same_runs(program)


def test_a_graph_whose_children_are_watched_is_not_inlined():
    # Rec_3 reads Rec's step before Graph runs: inlined, Graph would reset it to 0 too early.
    program = '$root[repeat=2]( *Rec[tag="w", run_cycle="Rec_1.step:1"] -> *Graph( *Rec[tag="a", finish=true] ) )'
    compiled = compile_source(program, registry=RECORDING)
    assert compiled.plan["root"].inlined_from == {}
    assert [record.tag for record in run_trace(compiled.plan)] == ["a", "w"]
    assert_same_runs(program)


# ---- generated programs ------------------------------------------------------------


@attrs.frozen
class Cycle:
    """A generated ``run_cycle``: on an ancestor (``levels`` up, 0 = the parent) or,
    when ``levels`` is None, on the node written ``earlier`` places before this one
    (modulo how many there are), which may be anywhere in the program."""

    levels: int | None
    earlier: int
    counter: int  # index into the counters the target has (loaders have an epoch)
    every: int


@attrs.frozen
class Spec:
    """One generated node: ``kind`` is graph, loader or rec."""

    kind: str
    repeat: int | None
    finish: bool
    cycle: Cycle | None
    data: str = "xs"
    children: tuple[Spec, ...] = ()
    edges: tuple[tuple[int, int], ...] = ()


MAX_DEPTH = 3


@st.composite
def groups(draw, depth: int) -> tuple[tuple[Spec, ...], tuple[tuple[int, int], ...]]:
    """Children of a graph ``depth`` levels below the root (0: the root), and ``->`` edges
    between them that form a DAG (oriented by a random ranking, so not only forwards)."""
    count = draw(st.integers(0, 4 if depth < MAX_DEPTH - 1 else 2))
    children = tuple(draw(specs(depth + 1)) for _ in range(count))
    rank = draw(st.permutations(range(count)))
    pairs = [(a, b) if rank[a] < rank[b] else (b, a) for a in range(count) for b in range(a + 1, count)]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=4)) if pairs else []
    return children, tuple(edges)


@st.composite
def specs(draw, depth: int) -> Spec:
    kind = draw(st.sampled_from(["rec", "rec", "graph", "loader"])) if depth < MAX_DEPTH else "rec"
    if kind == "loader":
        repeat = draw(st.one_of(st.none(), st.integers(0, 3)))
    else:
        repeat = draw(st.one_of(st.none(), st.integers(0, 3), st.just(1)))
    finish = draw(st.integers(0, 3)) == 0
    cycle = None
    if draw(st.integers(0, 2)) == 0:
        levels = draw(st.one_of(st.integers(0, depth - 1), st.integers(0, depth - 1), st.none()))
        cycle = Cycle(levels, draw(st.integers(1, 50)), draw(st.integers(0, 2)), draw(st.integers(1, 3)))
    data = draw(st.sampled_from(["xs", "ys", "one", "empty"])) if kind == "loader" else "xs"
    children, edges = draw(groups(depth)) if kind != "rec" else ((), ())
    return Spec(kind, repeat, finish, cycle, data, children, edges)


#: ``(root repeat, children written as statements of their own?, (children, edges))``.
programs = st.tuples(st.integers(1, 2), st.booleans(), groups(0))

_CLASS = {"graph": "Graph", "loader": "IterateCommand", "rec": "Rec"}


class _Writer:
    """Program text for generated specs; fresh names follow the resolver's (``Rec``, ``Rec_1`` …)."""

    def __init__(self):
        self.made: dict[str, int] = {}
        #: ``(name, kind)`` of every node written so far, the root first.
        self.written: list[tuple[str, str]] = [("root", "graph")]

    def node(self, spec: Spec, ancestors: list[tuple[str, str]]) -> tuple[str, str]:
        """The text of ``spec`` and the name the resolver gives it."""
        base = _CLASS[spec.kind]
        index = self.made.get(base, 0)
        self.made[base] = index + 1
        name = base if index == 0 else f"{base}_{index}"
        arguments = []
        if spec.kind == "rec":
            arguments.append(f'tag="{name}"')
        if spec.kind == "loader":
            arguments.append(f"data=${spec.data}")
        if spec.repeat is not None:
            arguments.append(f"repeat={spec.repeat}")
        if spec.finish:
            arguments.append("finish=true")
        if spec.cycle is not None:
            arguments.append(f'run_cycle="{self.cycle(spec.cycle, ancestors)}"')
        self.written.append((name, spec.kind))
        text = f"*{base}[{', '.join(arguments)}]" if arguments else f"*{base}"
        if spec.children:
            chains = self.group(spec.children, spec.edges, [*ancestors, (name, spec.kind)])
            text += "(" + ", ".join(chains) + ")"
        return text, name

    def cycle(self, cycle: Cycle, ancestors: list[tuple[str, str]]) -> str:
        if cycle.levels is not None:
            target, kind = ancestors[-1 - cycle.levels]
        else:
            target, kind = self.written[-1 - cycle.earlier % len(self.written)]
        counters = ["step", "total_step"] + (["epoch"] if kind == "loader" else [])
        return f"{target}.{counters[cycle.counter % len(counters)]}:{cycle.every}"

    def group(self, children: tuple[Spec, ...], edges: tuple[tuple[int, int], ...], ancestors: list) -> list[str]:
        """Chains: each child written where it first appears, joined to the chain before
        it when an edge allows; the other edges as chains ``$A -> $B`` after them."""
        chains: list[list[str]] = []
        names: list[str] = []
        pending = set(edges)
        for index, child in enumerate(children):
            text, name = self.node(child, ancestors)
            if (index - 1, index) in pending:  # the last chain ends with the child before
                chains[-1].append(text)
                pending.discard((index - 1, index))
            else:
                chains.append([text])
            names.append(name)
        return [" -> ".join(chain) for chain in chains] + [f"${names[a]} -> ${names[b]}" for a, b in sorted(pending)]


def program_text(program: tuple[int, bool, tuple]) -> str:
    """``$root[repeat=k]( … )``, or its children as statements of their own after ``$root[repeat=k]``."""
    root_repeat, statements, (children, edges) = program
    chains = _Writer().group(children, edges, [("root", "graph")])
    if statements or not chains:
        return "\n".join([f"$root[repeat={root_repeat}]", *chains])
    return f"$root[repeat={root_repeat}]( {', '.join(chains)} )"


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs)
def test_generated_programs_run_the_same_optimised(program):
    assert_same_runs(program_text(program))
