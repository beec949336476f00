"""The JSON form of edit scripts (``deepleaps.edit/1``, docs/control.md) and of saved
programs, as a checkpoint keeps them: argument values in the AST's value schema
(``deepleaps.ast/1``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from deepleaps.compiler.plan import Kind, Plan, PlanNode
from deepleaps.control.editscript import (
    AddEdge,
    AddNode,
    EditScript,
    Operation,
    RebindClass,
    RemoveEdge,
    RemoveNode,
    ReorderChildren,
    ScriptError,
    SetArgument,
    UnsetArgument,
    apply,
    diff,
    value_from_ast,
    value_to_ast,
)
from deepleaps.lang import ast
from deepleaps.lang.diagnostics import Diagnostic, ProgramError
from deepleaps.lang.serialize import from_data, to_data

SCHEMA = "deepleaps.edit/1"

_OPERATIONS = (AddNode, RemoveNode, AddEdge, RemoveEdge, SetArgument, UnsetArgument, RebindClass, ReorderChildren)


def _tag(cls: type) -> str:
    """``AddNode`` → ``add_node``."""
    return "".join("_" + c.lower() if c.isupper() else c for c in cls.__name__).lstrip("_")


_BY_TAG = {_tag(cls): cls for cls in _OPERATIONS}


def _operation_to_data(operation: Operation) -> dict:
    data: dict[str, Any] = {"op": _tag(type(operation))}
    for field in attrs.fields(type(operation)):
        value = getattr(operation, field.name)
        if field.name == "arguments":
            value = {key: to_data(value_to_ast(item)) for key, item in value.items()}
        elif field.name == "value":
            value = to_data(value_to_ast(value))
        elif isinstance(value, tuple):
            value = list(value)
        data[field.name] = value
    return data


#: The JSON type of each field of an operation that is not a name (a string) or a value.
_FIELD_TYPES: dict[str, tuple[type, str]] = {
    "arguments": (dict, "a mapping"),
    "position": (int, "an integer"),
    "children": (list, "a list of names"),
}


def _check_field(op: str, name: str, value: Any) -> None:
    """Raises ValueError unless ``value`` has the JSON type of field ``name``."""
    kind, described = _FIELD_TYPES.get(name, (str, "a name"))
    fits = isinstance(value, kind) and not isinstance(value, bool)
    if fits and name == "children":
        fits = all(isinstance(child, str) for child in value)
    if not fits:
        raise ValueError(f"'{op}': '{name}' must be {described}, got {value!r}")


def _operation_from_data(data: Any) -> Operation:
    if not isinstance(data, dict):
        raise ValueError(f"an operation is a mapping with its 'op', got {data!r}")
    op = data.get("op")
    if not isinstance(op, str) or op not in _BY_TAG:
        raise ValueError(f"unknown operation {op!r}")
    cls = _BY_TAG[op]
    values = {}
    for field in attrs.fields(cls):
        if field.name not in data:
            if field.default is attrs.NOTHING:
                raise ValueError(f"'{op}' needs '{field.name}'")
            continue
        value = data[field.name]
        if field.name != "value":
            _check_field(op, field.name, value)
        if field.name == "arguments":
            value = {key: value_from_ast(from_data(item, ast.Value)) for key, item in value.items()}
        elif field.name == "value":
            value = value_from_ast(from_data(value, ast.Value))
        values[field.name] = value
    return cls(**values)


def _root_only(root: str) -> Plan:
    return Plan({root: PlanNode(root, "Graph", Kind.GRAPH)}, root)


def program_to_data(plan: Plan) -> dict:
    """A whole source plan as data (for checkpoints): its root and the edit script that
    builds it from the bare root."""
    return {"root": plan.root, "script": script_to_data(diff(_root_only(plan.root), plan))}


def program_from_data(data: Any) -> Plan:
    """The source plan :func:`program_to_data` wrote.

    Raises:
        ScriptError: the data is not such a program.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("root"), str):
        raise ScriptError("a saved program needs its 'root' and 'script'")
    return apply(_root_only(data["root"]), script_from_data(data.get("script")))


def script_to_data(script: EditScript) -> dict:
    return {
        "schema": SCHEMA,
        "base_version": script.base_version,
        "operations": [_operation_to_data(operation) for operation in script.operations],
    }


def script_from_data(data: Any) -> EditScript:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ProgramError([Diagnostic(f"expected a '{SCHEMA}' edit script, got {found!r}")])
    items = data.get("operations", [])
    if not isinstance(items, list):
        raise ProgramError([Diagnostic(f"not a valid edit script: 'operations' must be a list, got {items!r}")])
    try:
        operations = [_operation_from_data(item) for item in items]
    except (KeyError, TypeError, ValueError) as error:
        raise ProgramError([Diagnostic(f"not a valid edit script: {error}")]) from None
    return EditScript(operations, data.get("base_version"))
