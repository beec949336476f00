"""The runtime: the interpreter, the context commands see, the built-in commands."""

from deepleaps.runtime import commands
from deepleaps.runtime.command import Command, command
from deepleaps.runtime.context import Context
from deepleaps.runtime.interpreter import Interpreter, NodeFailed, NodeState, RunStopped

__all__ = ["Command", "Context", "Interpreter", "NodeFailed", "NodeState", "RunStopped", "command", "commands"]
