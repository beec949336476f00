"""The base class of every command, and the decorator that registers one.

A command is instantiated once per node (per plan version in which its
arguments change) and keeps its state between runs::

    @command
    class PrintCommand(Command):
        name = "PrintCommand"
        kind = Kind.LEAF

        @attrs.frozen
        class Args:
            content: str = ""

        def run(self, ctx):
            print(self.args.content)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from deepleaps.compiler.plan import Kind, PlanNode
from deepleaps.compiler.registry import REGISTRY, NoArgs

if TYPE_CHECKING:
    from deepleaps.runtime.context import Context


def command(cls: type) -> type:
    """Register a command class with the built-in registry."""
    return REGISTRY.register(cls)


class Command:
    name: ClassVar[str]
    kind: ClassVar[Kind]
    aliases: ClassVar[tuple[str, ...]] = ()
    Args: ClassVar[type] = NoArgs
    #: Accept keys the Args schema does not name; they land in ``self.extra``.
    extra_args: ClassVar[bool] = False
    #: Defaults of node options (``repeat``, ``finish``) for nodes of this command.
    node_defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, node: PlanNode, args: Any, extra: Mapping[str, Any]):
        self.node = node
        self.args = args
        self.extra = dict(extra)

    # Leaves ---------------------------------------------------------------------

    def run(self, ctx: Context) -> None:
        """One step of a leaf node."""
        raise NotImplementedError(f"{type(self).__name__} is a leaf command without run()")

    # Graphs and loaders -----------------------------------------------------------

    def start(self, ctx: Context) -> None:
        """An activation begins (a loader starts an epoch)."""

    def next_step(self, ctx: Context) -> bool:
        """Before each step; False ends the activation (a loader ran out of batches)."""
        return True

    def end(self, ctx: Context) -> None:
        """An activation ended, normally or not."""

    # Checkpoints ------------------------------------------------------------------

    def state_dict(self) -> dict:
        """What a checkpoint keeps of this command besides the node's counters."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass
