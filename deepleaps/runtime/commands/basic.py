"""Small leaf commands: print, set a variable."""

from __future__ import annotations

from typing import Any

import attrs

from deepleaps.compiler.plan import Kind
from deepleaps.runtime.command import Command, command
from deepleaps.runtime.context import Context


@command
class PrintCommand(Command):
    """Print ``content`` with the counters of the node it runs under."""

    name = "PrintCommand"
    kind = Kind.LEAF
    aliases = ("Print",)

    @attrs.frozen
    class Args:
        content: Any = ""

    def run(self, ctx: Context) -> None:
        parent = self.node.parent
        where = ""
        if parent is not None:
            counters = ctx.counters(parent)
            where = f"[{parent} step {counters.step}] "
        print(f"{where}{self.args.content}", flush=True)


@command
class SetCommand(Command):
    """Set variable ``key`` to ``value`` (what EXPORT does from the socket)."""

    name = "SetCommand"
    kind = Kind.LEAF
    aliases = ("Set",)

    @attrs.frozen
    class Args:
        key: str
        value: Any = None

    def run(self, ctx: Context) -> None:
        ctx.variables[self.args.key] = self.args.value
