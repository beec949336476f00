"""A user command: add it to a running training with `ADD $TRAINING_BATCH( PRINT_LOSS )`."""

import attrs

from deepleaps.compiler import Kind
from deepleaps.runtime import Command, command


@command
class LossPrintCommand(Command):
    name = "LossPrintCommand"
    kind = Kind.LEAF

    @attrs.frozen
    class Args:
        prefix: str = "loss"

    def run(self, ctx):
        step = ctx.counters(self.node.parent).total_step
        print(f"{self.args.prefix} at step {step}: {ctx.container.last_loss:.4f}", flush=True)
