"""AST ⇄ JSON, the form programs and edit scripts take on the socket.

The document is versioned: ``{"schema": "deepleaps.ast/1", "program": …}``.
Values are a tagged union (``{"type": "float", "value": 0.001}``); spans are
included only when asked for, and fields at their default are left out.
"""

from __future__ import annotations

import typing

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, override
from cattrs.strategies import configure_tagged_union

from deepleaps.lang import ast
from deepleaps.lang.diagnostics import Diagnostic, ProgramError

SCHEMA = "deepleaps.ast/1"

_CLASSES = (
    ast.Integer,
    ast.Float,
    ast.String,
    ast.Boolean,
    ast.Null,
    ast.Variable,
    ast.List,
    ast.Mapping,
    ast.Argument,
    ast.Node,
    ast.Chain,
    ast.Program,
)
for _cls in _CLASSES:
    attrs.resolve_types(_cls, vars(ast))

_VALUE_CLASSES = typing.get_args(ast.Value)
_KINDS = {ast.NodeKind.INSTANCE: "instance", ast.NodeKind.DEFINE: "define", ast.NodeKind.CLASS: "class"}
_KINDS_BACK = {name: kind for kind, name in _KINDS.items()}


def _converter(spans: bool) -> cattrs.Converter:
    converter = cattrs.Converter(omit_if_default=True)
    converter.register_unstructure_hook(ast.NodeKind, _KINDS.__getitem__)
    converter.register_structure_hook(ast.NodeKind, lambda name, _: _KINDS_BACK[name])
    # Floats stay floats on the way back even when JSON wrote them as integers.
    converter.register_structure_hook(float, lambda value, _: float(value))

    def unstructure_factory(cls):
        # Any: mypy would match the overrides against the function's own keyword parameters.
        omitted: dict[str, typing.Any] = {"comments": override(omit=True)} if cls is ast.Program else {}
        if not spans:
            omitted["span"] = override(omit=True)
            if cls is ast.Node:
                omitted["label_span"] = override(omit=True)
        return make_dict_unstructure_fn(cls, converter, _cattrs_omit_if_default=True, **omitted)

    # A factory runs on first use, so every class hook sees the union hook below.
    converter.register_unstructure_hook_factory(lambda cls: cls in _CLASSES, unstructure_factory)
    configure_tagged_union(ast.Value, converter, tag_name="type", tag_generator=lambda cls: cls.__name__.lower())
    return converter


_WITH_SPANS = _converter(spans=True)
_WITHOUT_SPANS = _converter(spans=False)


def to_data(node: ast.AstNode, *, spans: bool = False):
    """The plain-data (JSON-ready) form of any AST node; values carry their ``type`` tag."""
    converter = _WITH_SPANS if spans else _WITHOUT_SPANS
    if isinstance(node, _VALUE_CLASSES):
        return converter.unstructure(node, unstructure_as=ast.Value)
    return converter.unstructure(node)


def from_data(data, cls: typing.Any = ast.Program):
    """Rebuild an AST node of class ``cls`` from :func:`to_data` output."""
    try:
        return _WITH_SPANS.structure(data, cls)
    except (cattrs.BaseValidationError, KeyError, TypeError, ValueError) as error:
        name = getattr(cls, "__name__", "value")
        raise ProgramError([Diagnostic(f"not a valid {name} document: {_summary(error)}")]) from None


def dump_program(program: ast.Program, *, spans: bool = False) -> dict:
    """The versioned JSON document of a program."""
    return {"schema": SCHEMA, "program": to_data(program, spans=spans)}


def load_program(document: typing.Any) -> ast.Program:
    """Inverse of :func:`dump_program`; refuses other schemas with a clear error."""
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else type(document).__name__
        raise ProgramError([Diagnostic(f"expected a '{SCHEMA}' document, got {found!r}")])
    program = from_data(document.get("program"), ast.Program)
    if not program.statements:  # no text parses to an empty program
        raise ProgramError([Diagnostic("not a valid Program document: a program has at least one statement")])
    return program


def _summary(error: Exception) -> str:
    if isinstance(error, cattrs.BaseValidationError):
        leaves = [str(leaf) for leaf in error.exceptions]
        return "; ".join(leaves) or str(error)
    return str(error)
