"""The command language: parse, print, diagnose, serialise (docs/design.md §2–§3)."""

from deepleaps.lang.ast import (
    Argument,
    Boolean,
    Chain,
    Comment,
    Float,
    Integer,
    List,
    Mapping,
    Node,
    NodeKind,
    Null,
    Program,
    Span,
    String,
    Value,
    Variable,
)
from deepleaps.lang.diagnostics import Diagnostic, InternalError, ProgramError, SourceText
from deepleaps.lang.parser import MAX_NESTING, parse, parse_value
from deepleaps.lang.printer import format_program, inline
from deepleaps.lang.serialize import SCHEMA, dump_program, load_program

__all__ = [
    "MAX_NESTING",
    "SCHEMA",
    "Argument",
    "Boolean",
    "Chain",
    "Comment",
    "Diagnostic",
    "Float",
    "Integer",
    "InternalError",
    "List",
    "Mapping",
    "Node",
    "NodeKind",
    "Null",
    "Program",
    "ProgramError",
    "SourceText",
    "Span",
    "String",
    "Value",
    "Variable",
    "dump_program",
    "format_program",
    "inline",
    "load_program",
    "parse",
    "parse_value",
]
