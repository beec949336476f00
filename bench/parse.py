"""Benchmark the command-language front end: parse and format_program.

Generates deterministic programs of about N nodes each (the default sizes are
1,000, 10,000 and 100,000), then times :func:`deepleaps.lang.parse` and
:func:`deepleaps.lang.format_program` separately, best of ``--repeat`` runs,
and prints a markdown table with nodes per second and the growth ratio (time
per node at the largest size divided by time per node at the smallest): a
ratio close to 1 means the cost grows linearly with the size of the program.

Usage::

    python bench/parse.py
    python bench/parse.py --sizes 1000 10000 100000 --repeat 5
    python bench/parse.py --clock cpu        # CPU time, on a machine that is not idle
    python bench/parse.py --profile 100000   # cProfile of one parse, top 25 entries

The generated programs look like real ones: several statements, groups nested
up to four deep (``$G( $A -> $B, $A -> $C )``), chains of one to four nodes,
inline arguments of every literal kind (int, negative numbers, floats such as
``1e-3``, strings with escapes and non-ASCII text, booleans, null, lists,
mappings, ``$variables`` with dots) and ``#`` comments, one chain per line so no line
runs much past 88 columns.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import sys
import time

import lark
from common import cores, cpu, growth, load, profiled

from deepleaps.lang import ast, format_program, parse
from deepleaps.lang.visitor import walk

INDENT = "    "
SEED = 20240501
#: Wall-clock time by default; ``--clock cpu`` switches to this process's CPU time,
#: which other processes competing for the cores disturb far less.
CLOCK = time.perf_counter

#: The program of the original deep-leaps README, a realistic size.
SEED_PROGRAM = (
    "$root( $TRAINER_CONTAINER_LOAD->$TRAINING_LOADER( $MAIN_MODEL_LOAD->$TRAINING_BATCH( $TRAINING_STEP )"
    "->MAIN_MODEL_SAVE) )"
)

_NAMES = [
    "TRAINING_STEP",
    "VALIDATION_STEP",
    "MAIN_MODEL_LOAD",
    "MAIN_MODEL_SAVE",
    "LOG_METRICS",
    "SAVE_IMAGES",
    "LR_WARMUP",
    "EMA_UPDATE",
    "GRAD_CLIP",
    "EVAL_ACCURACY",
]
_GROUPS = ["TRAINING_LOADER", "TRAINING_BATCH", "VALIDATION_LOADER", "VALIDATION_BATCH", "EPOCHS"]
_CLASSES = ["PrintCommand", "RunCommand", "SetCommand", "LogMetricCommand", "commands.custom.SaveGridCommand"]
_STRINGS = ["loss", "ckpt/model_{epoch}.pt", 'say \\"hi\\"\\n', "température", "ü\\u00e9\\t"]
_VARIABLES = ["base", "latest.id", "main.model.lr", "self"]


class _Generator:
    """Writes one statement at a time and counts the nodes it wrote."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.nodes = 0
        self.serial = 0

    def value(self, depth: int = 0) -> str:
        rng = self.rng
        kind = rng.randrange(10 if depth == 0 else 8)
        if kind == 0:
            return str(rng.randrange(1, 100_000))
        if kind == 1:
            return str(-rng.randrange(1, 1000))
        if kind == 2:
            return rng.choice(["1e-3", "0.9", "-2.5e-4", "3.14159", "0.5", "1E+2"])
        if kind in (3, 4):
            return '"' + rng.choice(_STRINGS) + '"'
        if kind == 5:
            return rng.choice(["true", "false", "null"])
        if kind in (6, 7):
            return "$" + rng.choice(_VARIABLES)
        if kind == 8:
            return "[" + ", ".join(self.value(depth + 1) for _ in range(rng.randrange(0, 4))) + "]"
        keys = rng.sample(["lr", "momentum", '"weight decay"', "_reload", "use_hook"], rng.randrange(0, 3))
        return "{" + ", ".join(f"{key}={self.value(depth + 1)}" for key in keys) + "}"

    def arguments(self) -> str:
        """``[k=v, ...]`` with zero to three arguments, kept under about 60 columns."""
        rng = self.rng
        count = rng.choice([0, 0, 0, 1, 1, 2, 3])
        keys = rng.sample(["lr", "repeat", "content", "run_cycle", "finish", "path", "betas", "on_error"], count)
        items: list[str] = []
        for key in keys:
            item = f"{key}={self.value()}"
            if items and sum(len(text) + 2 for text in items) + len(item) > 56:
                break
            items.append(item)
        return "[" + ", ".join(items) + "]" if items else ""

    def head(self, group: bool) -> str:
        self.nodes += 1
        self.serial += 1
        rng = self.rng
        if group:
            return "$" + rng.choice(_GROUPS) + f"_{self.serial % 50}" + self.arguments()
        kind = rng.randrange(4)
        if kind == 0:
            return "*" + rng.choice(_CLASSES) + self.arguments()
        if kind == 1:
            return rng.choice(_NAMES) + self.arguments()
        return "$" + rng.choice(_NAMES) + f"_{self.serial % 97}" + self.arguments()

    def chain(self, depth: int, level: int) -> list[str]:
        """The lines of one chain nested ``depth`` groups deep, indented ``level`` steps.

        A group opens at the end of a line, one child chain per line; a long chain
        continues on the next line after its '->'.
        """
        rng = self.rng
        lines: list[str] = []
        line_level = level
        current = INDENT * level
        for position in range(rng.randrange(1, 5)):
            grouped = depth < 4 and rng.random() < (0.55 if depth < 2 else 0.3)
            text = self.head(grouped)
            if position and len(current) + 4 + len(text) > 84:
                lines.append(current + " ->")
                line_level = level + 1
                current = INDENT * line_level + text
            elif position:
                current += " -> " + text
            else:
                current += text
            if grouped:
                lines.append(current + "(")
                children = [self.chain(depth + 1, line_level + 1) for _ in range(rng.randrange(1, 4))]
                for index, child in enumerate(children):
                    if index < len(children) - 1:
                        child[-1] += ","
                    lines.extend(child)
                current = INDENT * line_level + ")"
        lines.append(current)
        return lines


def make_program(target: int, seed: int = SEED) -> str:
    """A program of at least ``target`` nodes, the same text for the same arguments."""
    generator = _Generator(seed)
    statements: list[str] = []
    while generator.nodes < target:
        if generator.rng.random() < 0.2:
            statements.append(f"# block {len(statements)}: {generator.rng.choice(_NAMES).lower()} and friends")
        head = "$root" if generator.rng.random() < 0.5 else "$" + generator.rng.choice(_GROUPS)
        generator.nodes += 1
        children = [generator.chain(1, 1) for _ in range(generator.rng.randrange(1, 4))]
        lines = [head + "("]
        for index, child in enumerate(children):
            if index < len(children) - 1:
                child[-1] += ","
            lines.extend(child)
        lines.append(")")
        statements.append("\n".join(lines))
    return "\n".join(statements) + "\n"


def count_nodes(program: ast.Program) -> int:
    """The nodes (``$NAME``, ``NAME``, ``*Class``) of a program, at any depth."""
    return sum(1 for item in walk(program) if isinstance(item, ast.Node))


def best_of(repeat: int, function, *args) -> tuple[float, object]:
    """The shortest time (by :data:`CLOCK`) of ``repeat`` calls, and the last result.

    Short series start each call from a freshly collected heap; long ones (the
    seed's program, 1,000 times) skip that, as it would cost more than the call.
    """
    best = float("inf")
    result = None
    for _ in range(repeat):
        if repeat <= 10:
            gc.collect()
        start = CLOCK()
        result = function(*args)
        best = min(best, CLOCK() - start)
    return best, result


def run(sizes: list[int], repeat: int) -> list[dict]:
    rows = []
    for size in sizes:
        text = make_program(size)
        parse_time, program = best_of(repeat, parse, text, f"bench-{size}.dl")
        format_time, canonical = best_of(repeat, format_program, program)
        if parse(canonical) != program:
            raise SystemExit(f"round trip failed at size {size}")
        nodes = count_nodes(program)
        rows.append(
            {
                "size": size,
                "nodes": nodes,
                "lines": text.count("\n"),
                "bytes": len(text.encode("utf-8")),
                "parse": parse_time,
                "format": format_time,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| nodes | lines | bytes | parse (ms) | parse nodes/s | format (ms) | format nodes/s |",
        "|------:|------:|------:|-----------:|--------------:|------------:|---------------:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['nodes']:,} | {row['lines']:,} | {row['bytes']:,} "
            f"| {row['parse'] * 1e3:,.1f} | {row['nodes'] / row['parse']:,.0f} "
            f"| {row['format'] * 1e3:,.1f} | {row['nodes'] / row['format']:,.0f} |"
        )
    return "\n".join(lines)


def profile(size: int, limit: int = 25) -> str:
    text = make_program(size)
    return profiled(lambda: parse(text), limit)


def machine() -> str:
    """Python and lark versions, CPU model, the cores this process may use and the load when it started."""
    return (
        f"Python {platform.python_version()}, lark {lark.__version__}, {cpu()}, {cores()} cores, load average {load()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000], help="target node counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    parser.add_argument("--target", type=float, default=20_000, help="parse nodes/s the largest size must reach")
    parser.add_argument("--profile", type=int, metavar="SIZE", help="profile one parse of SIZE nodes and exit")
    parser.add_argument("--show", type=int, metavar="SIZE", help="print the generated program of SIZE nodes and exit")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: time.perf_counter (default); cpu: time.process_time, for a machine that is not idle",
    )
    options = parser.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if options.clock == "cpu" else time.perf_counter

    if options.show:
        sys.stdout.write(make_program(options.show))
        return 0
    if options.profile:
        print(profile(options.profile))
        return 0

    sizes = sorted(options.sizes)
    rows = run(sizes, options.repeat)
    print(f"{machine()}, {options.clock} clock, best of {options.repeat}\n")
    print(table(rows))
    print()
    if len(rows) > 1:
        print(
            f"growth ratio (time per node at {rows[-1]['nodes']:,} / at {rows[0]['nodes']:,}): "
            f"parse {growth(rows, 'parse'):.2f}, format {growth(rows, 'format'):.2f}"
        )
    slowest = min(rows, key=lambda row: row["nodes"] / row["parse"])
    rate = slowest["nodes"] / slowest["parse"]
    verdict = "met" if rate >= options.target else "MISSED"
    print(
        f"parse target {options.target:,.0f} nodes/s: {verdict} "
        f"(slowest: {rate:,.0f} nodes/s at {slowest['nodes']:,} nodes)"
    )
    seed_parse, program = best_of(1000, parse, SEED_PROGRAM)
    seed_format, _ = best_of(1000, format_program, program)
    print(
        f"the seed's program ({count_nodes(program)} nodes): "
        f"parse {seed_parse * 1e6:,.0f} µs, format {seed_format * 1e6:,.0f} µs (best of 1000)"
    )
    return 0 if rate >= options.target else 1


if __name__ == "__main__":
    sys.exit(main())
