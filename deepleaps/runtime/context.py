"""What a running command sees: variables, the trainer container, the current node."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from deepleaps.lang.ast import Variable
from deepleaps.workspace.confine import Confinement

if TYPE_CHECKING:
    from deepleaps.compiler.plan import PlanNode
    from deepleaps.runtime.interpreter import Interpreter


class UnknownVariable(LookupError):
    pass


class Context:
    """Shared by every command of one run.

    ``variables`` holds ``$base``, ``$main`` and anything set with EXPORT;
    ``$self`` is the running node. ``sample`` is the current batch of the
    innermost loader.
    """

    def __init__(self, interpreter: Interpreter, variables: Mapping[str, Any] | None = None):
        self.interpreter = interpreter
        self.variables: dict[str, Any] = dict(variables or {})
        self.node: PlanNode | None = None
        self.sample: Any = None
        self.container: Any = None
        #: What commands may read, write and import (the run's settings replace it).
        self.confinement = Confinement(self.variables.get("workspace", "."), run_dir=self.variables.get("base"))

    def counters(self, name: str):
        """The counters (``step``, ``total_step``, ``epoch``) of node ``name``."""
        return self.interpreter.states[name]

    def lookup(self, dotted: str) -> Any:
        """``$name.attr.key``: a variable, then attributes or keys below it (None stays None)."""
        head, *rest = dotted.split(".")
        if head == "self":
            value: Any = self.node
        elif head in self.variables:
            value = self.variables[head]
        else:
            known = ", ".join(sorted(["self", *self.variables])) or "none"
            raise UnknownVariable(f"unknown variable '${head}' (defined: {known})")
        for part in rest:
            if value is None:
                return None  # `$latest.id` before any checkpoint
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif hasattr(value, part):
                value = getattr(value, part)
            else:
                raise UnknownVariable(f"'${dotted}': '{part}' not found")
        return value

    def resolve(self, value: Any) -> Any:
        """``value`` with every variable reference replaced by its current value."""
        if isinstance(value, Variable):
            return self.lookup(value.name)
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if isinstance(value, Mapping):
            return {key: self.resolve(item) for key, item in value.items()}
        return value


def has_variables(value: Any) -> bool:
    if isinstance(value, Variable):
        return True
    if isinstance(value, list):
        return any(has_variables(item) for item in value)
    if isinstance(value, Mapping):
        return any(has_variables(item) for item in value.values())
    return False
