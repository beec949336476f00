"""Graph commands: the plain graph (``$root`` is one) and the generic loader."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from deepleaps.compiler.plan import Kind
from deepleaps.runtime.command import Command, command
from deepleaps.runtime.context import Context


@command
class Graph(Command):
    """Runs its children once per step, ``repeat`` steps per activation."""

    name = "Graph"
    kind = Kind.GRAPH
    aliases = ("GraphCommand",)


@command
class IterateCommand(Command):
    """A loader over any iterable held in a variable: one batch per step.

    ``*IterateCommand[data=$numbers]`` — the batch is ``ctx.sample``.
    """

    name = "IterateCommand"
    kind = Kind.LOADER

    @attrs.frozen
    class Args:
        data: Any = None

    _iterator: Iterator | None = None

    def start(self, ctx: Context) -> None:
        self._iterator = iter(self.args.data)

    def next_step(self, ctx: Context) -> bool:
        assert self._iterator is not None  # start() began the activation
        try:
            ctx.sample = next(self._iterator)
        except StopIteration:
            return False
        return True
