"""Benchmark the compiler: parse, resolve and check, optimise, and all of it end to end.

Generates deterministic programs of about N nodes each (by default 1,000,
10,000 and 100,000) that compile against the built-in commands and a few
DEFINE entries, then times, best of ``--repeat`` runs:

- ``parse``: :func:`deepleaps.lang.parse`, text to AST;
- ``resolve``: :func:`deepleaps.compiler.resolve`, AST to checked source plan;
- ``optimise``: :func:`deepleaps.compiler.compile_plan`, every pass to a fixed point;
- ``end to end``: :func:`deepleaps.compiler.compile_source`, text to optimised plan.

It prints a markdown table with nodes per second and the growth ratio (time per
node at the largest size over time per node at the smallest): close to 1 means
the cost grows linearly with the size of the program.

Usage::

    python bench/compile.py
    python bench/compile.py --sizes 1000 10000 100000 --repeat 5
    python bench/compile.py --clock cpu         # CPU time, on a machine that is not idle
    python bench/compile.py --profile 100000    # cProfile of one end-to-end compile

The programs look like training procedures: statements under ``$root`` with
groups nested up to four deep, chains of one to four nodes and extra ``->``
edges between siblings (DAGs), plain graphs (which the flatten pass inlines),
repeated graphs, loaders over ``$data``, one-shot setup (``finish``), nodes
with ``repeat=0`` or a ``run_cycle`` that never comes (removed, with a
warning), ``run_cycle`` guards on the parent (some always true), fresh
``DEFINE`` instances and statements that extend an existing graph.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import sys
import time
from functools import partial

from common import growth, profiled

import deepleaps.runtime  # noqa: F401  (registers the built-in commands)
from deepleaps.compiler import compile_plan, compile_source, resolve
from deepleaps.lang import SourceText, parse
from deepleaps.lang.programfile import load_program_file

INDENT = "    "
SEED = 20240501
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}

DEFINES = """\
DEFINE:
  TRAINING_STEP: {command: PrintCommand, args: {content: step}}
  LOG_METRICS: {command: PrintCommand, args: {content: loss}, run_cycle: root.total_step:100}
  SAVE_CHECKPOINT: {command: SetCommand, args: {key: checkpoint, value: $latest.id}}
  EPOCHS: {command: Graph, repeat: 3}
"""
_DEFINED = ["TRAINING_STEP", "LOG_METRICS", "SAVE_CHECKPOINT"]
_CONTENTS = ["loss", "ckpt/model_{epoch}.pt", "température", "accuracy", 'say \\"hi\\"']


class _Generator:
    """Writes one statement at a time, naming nodes as the resolver will (``Graph``,
    ``Graph_1`` …) so that ``run_cycle`` and ``->`` can refer to them."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.nodes = 0
        self.made: dict[str, int] = {}
        self.graphs: list[str] = []  # graphs a later statement may extend

    def name(self, base: str) -> str:
        index = self.made.get(base, 0)
        self.made[base] = index + 1
        return base if index == 0 else f"{base}_{index}"

    def options(self, parent: str) -> list[str]:
        rng = self.rng
        kind = rng.randrange(20)
        if kind == 0:
            return ["finish=true"]
        if kind == 1:
            return ["repeat=0"]  # never runs: removed with a warning
        if kind == 2:
            return [f'run_cycle="{parent}.total_step:1"']  # always true: the guard goes
        if kind == 3:
            return [f'run_cycle="{parent}.step:{rng.choice([2, 5, 10])}"']  # may never come
        if kind == 4:
            return [f'run_cycle="{parent}.total_step:{rng.choice([2, 10, 100])}"']
        if kind == 5:
            return ['on_error="skip"']
        return []

    def leaf(self, parent: str) -> tuple[str, str]:
        rng = self.rng
        options = self.options(parent)
        kind = rng.randrange(5)
        if kind == 0:
            defined = rng.choice(_DEFINED)
            return defined + (f"[{', '.join(options)}]" if options else ""), self.name(defined)
        if kind == 1:
            value = rng.choice(["1e-3", "[1, 2]", "$base", "null"])
            arguments = [f'key="k{rng.randrange(100)}"', f"value={value}", *options]
            return f"*SetCommand[{', '.join(arguments)}]", self.name("SetCommand")
        arguments = [f'content="{rng.choice(_CONTENTS)}"', *options]
        return f"*PrintCommand[{', '.join(arguments)}]", self.name("PrintCommand")

    def graph(self, depth: int, level: int) -> tuple[str, str]:
        kind = self.rng.randrange(4)
        if kind == 0:
            base, arguments = "Graph", []  # plain: inlined into its parent
        elif kind == 1:
            base, arguments = "Graph", [f"repeat={self.rng.choice([2, 3, 10])}"]
        elif kind == 2:
            base, arguments = "IterateCommand", ["data=$data"]
        else:
            base, arguments = "Graph", ["finish=true"]  # one-shot setup: hoisted
        name = self.name(base)
        self.graphs.append(name)
        head = f"*{base}" + (f"[{', '.join(arguments)}]" if arguments else "")
        return head + "(\n" + self.group(name, depth + 1, level + 1) + "\n" + INDENT * level + ")", name

    def group(self, parent: str, depth: int, level: int) -> str:
        """One to three chains of one to four nodes, one chain a line, sometimes
        an extra edge between two of the children (always forwards: a DAG)."""
        rng = self.rng
        chains: list[str] = []
        names: list[str] = []
        edges: set[tuple[str, str]] = set()
        for _ in range(rng.randrange(1, 4)):
            parts: list[str] = []
            for _ in range(rng.randrange(1, 5)):
                self.nodes += 1
                if depth < 4 and rng.random() < (0.35 if depth < 2 else 0.2):
                    text, name = self.graph(depth, level)
                else:
                    text, name = self.leaf(parent)
                if parts:
                    edges.add((names[-1], name))
                parts.append(text)
                names.append(name)
            chains.append(INDENT * level + " -> ".join(parts))
        if len(names) > 2 and rng.random() < 0.3:
            first, second = sorted(rng.sample(range(len(names)), 2))
            if (names[first], names[second]) not in edges:
                chains.append(INDENT * level + f"${names[first]} -> ${names[second]}")
        return ",\n".join(chains)


def make_program(target: int, seed: int = SEED) -> str:
    """A program of about ``target`` nodes, the same text for the same arguments."""
    generator = _Generator(seed)
    statements = ["$root( $EPOCHS )"]
    generator.graphs.append("EPOCHS")
    generator.nodes += 1
    while generator.nodes < target:
        rng = generator.rng
        graph = "root" if rng.random() < 0.7 else rng.choice(generator.graphs)
        statements.append(f"${graph}(\n{generator.group(graph, 1, 1)}\n)")
    return "\n".join(statements) + "\n"


def measure(clock, repeat: int, function) -> tuple[float, object]:
    """The shortest time of ``repeat`` calls of ``function()`` on ``clock``, and the last result."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        gc.collect()
        start = clock()
        result = function()
        best = min(best, clock() - start)
    return best, result


def run(sizes: list[int], repeat: int, clock) -> list[dict]:
    definitions = load_program_file("defines.yaml", DEFINES)
    rows = []
    for size in sizes:
        text = make_program(size)
        filename = f"bench-{size}.dl"
        sources = {filename: SourceText(filename, text)}
        parse_time, program = measure(clock, repeat, partial(parse, text, filename))
        resolve_time, source = measure(
            clock, repeat, partial(resolve, [program], definitions.definitions, sources=sources)
        )
        optimise_time, compiled = measure(clock, repeat, partial(compile_plan, source))
        total_time, end_to_end = measure(
            clock, repeat, partial(compile_source, text, filename, definitions=definitions)
        )
        if end_to_end.plan != compiled.plan:
            raise SystemExit(f"end-to-end compile and the stages disagree at size {size}")
        rows.append(
            {
                "size": size,
                "nodes": len(source.nodes),
                "optimised": len(compiled.plan.nodes),
                "lines": text.count("\n"),
                "parse": parse_time,
                "resolve": resolve_time,
                "optimise": optimise_time,
                "total": total_time,
                "rounds": max((entry.round for entry in compiled.log), default=0),
                "warnings": len(compiled.warnings),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| nodes | lines | parse (ms) | resolve + check (ms) | optimise (ms) | end to end (ms) | end-to-end nodes/s |",
        "|------:|------:|-----------:|---------------------:|--------------:|----------------:|-------------------:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['nodes']:,} | {row['lines']:,} | {row['parse'] * 1e3:,.1f} | {row['resolve'] * 1e3:,.1f} "
            f"| {row['optimise'] * 1e3:,.1f} | {row['total'] * 1e3:,.1f} | {row['nodes'] / row['total']:,.0f} |"
        )
    return "\n".join(lines)


def profile(size: int, limit: int = 25) -> str:
    text = make_program(size)
    definitions = load_program_file("defines.yaml", DEFINES)
    return profiled(lambda: compile_source(text, definitions=definitions), limit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000], help="target node counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="wall-clock or CPU time")
    parser.add_argument("--target", type=float, default=10_000, help="end-to-end nodes/s the largest size must reach")
    parser.add_argument("--profile", type=int, metavar="SIZE", help="profile one compile of SIZE nodes and exit")
    parser.add_argument("--show", type=int, metavar="SIZE", help="print the generated program of SIZE nodes and exit")
    options = parser.parse_args(argv)

    if options.show:
        sys.stdout.write(make_program(options.show))
        return 0
    if options.profile:
        print(profile(options.profile))
        return 0

    rows = run(sorted(options.sizes), options.repeat, CLOCKS[options.clock])
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {options.clock} time, best of {options.repeat}\n"
    )
    print(table(rows))
    print()
    last = rows[-1]
    print(
        f"at {last['nodes']:,} nodes: {last['optimised']:,} left after optimising, "
        f"{last['warnings']:,} warnings; the passes changed the plan in {last['rounds']} round(s)"
    )
    if len(rows) > 1:
        print(
            f"growth ratio (time per node at {rows[-1]['nodes']:,} / at {rows[0]['nodes']:,}): "
            + ", ".join(f"{key} {growth(rows, key):.2f}" for key in ("parse", "resolve", "optimise", "total"))
        )
    rate = last["nodes"] / last["total"]
    verdict = "met" if rate >= options.target else "MISSED"
    print(f"end-to-end target {options.target:,.0f} nodes/s at {last['nodes']:,} nodes: {verdict} ({rate:,.0f})")
    return 0 if rate >= options.target else 1


if __name__ == "__main__":
    sys.exit(main())
