"""What a node's options and arguments may be: one set of rules for every path.

The resolver checks each value where it is written (with its span); edit
scripts (``PATCH``, replay, checkpoints) and the controller check whole nodes
with the same functions, so a program reached by any path passed the same
checks (docs/design.md §6).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from deepleaps.compiler.plan import Cycle, OnError, PlanNode
from deepleaps.compiler.registry import CommandSpec, Registry, matches, type_name
from deepleaps.lang.diagnostics import did_you_mean
from deepleaps.workspace.confine import Confinement

#: Keys that configure the node rather than its command.
OPTION_KEYS = ("repeat", "finish", "run_cycle", "on_error")

Fail = Callable[..., None]


class OptionError(ValueError):
    """An option value that is not one; the message says what it must be."""


def option_value(key: str, value: Any) -> Any:
    """The node option ``key`` written as ``value``, in the Plan's form.

    Raises:
        OptionError: ``value`` is not a valid value of the option.
    """
    if key == "repeat":
        if isinstance(value, bool) or not isinstance(value, int) or value < -1:
            raise OptionError(f"'repeat' must be an integer ≥ -1 (-1 = forever), got {value!r}")
        return value
    if key == "finish":
        if not isinstance(value, bool):
            raise OptionError(f"'finish' must be true or false, got {value!r}")
        return value
    if key == "on_error":
        choices = [mode.value for mode in OnError]
        if value not in choices:
            raise OptionError(f"'on_error' must be one of {', '.join(choices)}, got {value!r}")
        return OnError(value)
    if key == "run_cycle":
        cycle = Cycle.parse(value) if isinstance(value, str) else None
        if cycle is None or cycle.every < 1:
            raise OptionError(f"'run_cycle' must look like \"NODE.step:N\" with N ≥ 1, got {value!r}")
        return cycle
    raise OptionError(f"'{key}' is not a node option ({', '.join(OPTION_KEYS)})")


def argument_problem(
    spec: CommandSpec, node: str, key: str, value: Any, confinement: Confinement
) -> tuple[str, str | None] | None:
    """Why ``key=value`` is not an argument of ``spec``'s command (message, hint), or None:
    not one of its arguments, of the wrong type, or naming a class or file ``confinement`` refuses."""
    field = spec.fields.get(key)
    if field is None and not spec.extra_args:
        hint = did_you_mean(key, [*spec.fields, *OPTION_KEYS])
        return f"unknown argument '{key}' for {spec.name} (node '{node}')", hint
    if field is not None and field.type is not None and not matches(value, field.type):
        return (
            f"argument '{key}' of {spec.name} expects {type_name(field.type)}, got {type(value).__name__} {value!r}",
            None,
        )
    for kind, written in spec.references(key, value):
        problem = confinement.class_problem(written) if kind == "class" else confinement.path_problem(written, kind)
        if problem is not None:
            return f"{problem} (argument '{key}' of node '{node}')", None
    return None


def missing_arguments(spec: CommandSpec, args: Mapping[str, Any]) -> list[str]:
    """The arguments ``spec``'s command needs that ``args`` lacks."""
    return [name for name, field in spec.fields.items() if field.default is attrs.NOTHING and name not in args]


def check_node(node: PlanNode, registry: Registry, fail: Fail, confinement: Confinement) -> None:
    """A resolved node's class, kind and arguments, as the resolver checks them."""
    spec = registry.get(node.command)
    if spec is None:
        fail(
            f"unknown command class '{node.command}' for node '{node.name}'",
            node.span,
            hint=did_you_mean(node.command, registry.names()),
        )
        return
    if node.kind is not spec.kind:
        fail(f"node '{node.name}' is a {node.kind.value}, but {spec.name} is a {spec.kind.value}", node.span)
    for key, value in node.args.items():
        problem = argument_problem(spec, node.name, key, value, confinement)
        if problem is not None:
            fail(problem[0], node.span, hint=problem[1])
    for name in missing_arguments(spec, node.args):
        fail(f"{spec.name} (node '{node.name}') needs argument '{name}'", node.span)
