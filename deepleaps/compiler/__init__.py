"""The compiler: resolve names, check, optimise and lower programs to a Plan (docs/design.md §3–§4)."""

from deepleaps.compiler.compile import Compiled, compile_file, compile_plan, compile_source, resolve, resolve_change
from deepleaps.compiler.plan import COUNTERS, Cycle, Kind, OnError, Plan, PlanNode, topological_order
from deepleaps.compiler.registry import REGISTRY, CommandSpec, Registry

__all__ = [
    "COUNTERS",
    "REGISTRY",
    "CommandSpec",
    "Compiled",
    "Cycle",
    "Kind",
    "OnError",
    "Plan",
    "PlanNode",
    "Registry",
    "compile_file",
    "compile_plan",
    "compile_source",
    "resolve",
    "resolve_change",
    "topological_order",
]
