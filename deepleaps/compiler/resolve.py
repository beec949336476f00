"""Name resolution: program ASTs + DEFINE entries + registry → an unoptimised Plan.

docs/design.md §3: ``$NAME`` reuses the instance NAME or creates it from
``DEFINE[NAME]``; ``NAME`` and ``*Class`` create fresh instances with unique
names (``NAME``, ``NAME_1``, …); ``$root`` always exists; a statement whose
only node is an existing graph (``$G( $X )``) extends that graph, any other
statement is added to ``$root``. Problems are collected, not raised one by one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from deepleaps.compiler.arguments import OPTION_KEYS, OptionError, argument_problem, missing_arguments, option_value
from deepleaps.compiler.plan import Kind, OnError, Plan, PlanNode
from deepleaps.compiler.registry import CommandSpec, Registry
from deepleaps.lang import ast
from deepleaps.lang.ast import Span, python_value
from deepleaps.lang.diagnostics import Diagnostic, SourceText, did_you_mean, error
from deepleaps.lang.programfile import ArgsFile, Definition
from deepleaps.workspace.confine import Confinement

ROOT = "root"
ROOT_COMMAND = "Graph"
_DEFINE_ONLY_KEYS = ("command", "args", "inherit")
_VARIABLE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)$")


@attrs.define
class _Draft:
    """A node being built; frozen into a PlanNode at the end."""

    name: str
    spec: CommandSpec
    args: dict[str, Any]
    options: dict[str, Any]
    parent: str | None
    span: Span | None
    #: Children and ``->`` edges in order of appearance (dicts as ordered sets).
    children: dict[str, None] = attrs.Factory(dict)
    edges: dict[tuple[str, str], None] = attrs.Factory(dict)


class Resolver:
    def __init__(
        self,
        registry: Registry,
        definitions: Mapping[str, Definition],
        *,
        sources: Mapping[str, SourceText] = {},
        roots: Sequence[Path] = (Path.cwd(),),
        base: Plan | None = None,
        added_while_running: bool = False,
        known: Mapping[str, PlanNode] | None = None,
        confinement: Confinement | None = None,
    ):
        self.registry = registry
        self.definitions = definitions
        self.sources = dict(sources)
        self.roots = tuple(roots)
        self.added_while_running = added_while_running
        #: What classes and files arguments may name; by default, those of the first root as workspace.
        self.confinement = confinement or Confinement(self.roots[0])
        #: Nodes of the running program: named again, they keep their on_error default.
        self.known = dict(known or {}) | (dict(base.nodes) if base is not None else {})
        self.problems: list[Diagnostic] = []
        self.drafts: dict[str, _Draft] = {}
        self.edge_spans: dict[tuple[str, str, str], Span | None] = {}
        self._args_cache: dict[str, dict | None] = {}
        #: Per base name, the index below which every ``NAME_i`` is taken (see _fresh).
        self._fresh_from: dict[str, int] = {}
        if base is not None:
            self._load_base(base)
        else:
            root_spec = registry.get(ROOT_COMMAND)
            if root_spec is None:
                raise LookupError(f"the '{ROOT_COMMAND}' command is not registered")
            self.drafts[ROOT] = _Draft(ROOT, root_spec, {}, {"repeat": 1}, None, None)

    # ---- entry points -------------------------------------------------------

    def add_program(self, program: ast.Program) -> None:
        for chain in program.statements:
            self._statement(chain)

    def plan(self) -> Plan:
        nodes = {}
        for draft in self.drafts.values():
            spec, options = draft.spec, draft.options
            nodes[draft.name] = PlanNode(
                name=draft.name,
                command=spec.name,
                kind=spec.kind,
                args=draft.args,
                parent=draft.parent,
                repeat=options.get("repeat", spec.defaults.get("repeat", -1 if spec.kind is Kind.LOADER else 1)),
                finish=options.get("finish", spec.defaults.get("finish", False)),
                run_cycle=options.get("run_cycle"),
                on_error=options.get("on_error", self._default_on_error(draft.name)),
                children=tuple(draft.children),
                edges=tuple(draft.edges),
                span=draft.span,
            )
        return Plan(nodes, ROOT)

    def _default_on_error(self, name: str) -> OnError:
        """A broken addition to a running training removes itself rather than stop it;
        a node of the running program named again keeps what it had."""
        if name in self.known:
            return self.known[name].on_error
        return OnError.REMOVE if self.added_while_running else OnError.STOP

    # ---- statements and groups ---------------------------------------------

    def _statement(self, chain: ast.Chain) -> None:
        first = chain.nodes[0]
        if len(chain.nodes) == 1 and first.kind is ast.NodeKind.INSTANCE and first.name in self.drafts:
            draft = self.drafts[first.name]
            self._apply_inline(draft, first)
            self._children(draft, first)
        else:
            self._group(self.drafts[ROOT], [chain])

    def _children(self, draft: _Draft, node: ast.Node) -> None:
        if not node.children:
            return
        if not draft.spec.kind.has_children:
            self._fail(
                f"'{node.kind.value}{node.name}' is a {draft.spec.kind.value} command ({draft.spec.name}) "
                "and cannot have children",
                _head(node),
            )
            self._recover(node, draft)
            return
        self._group(draft, node.children)

    def _recover(self, node: ast.Node, parent: _Draft) -> None:
        """After ``node`` failed, resolve its children under a stand-in graph so that
        their own problems are reported too; the nodes this creates are dropped again."""
        if not node.children:
            return
        before = set(self.drafts)
        stand_in = _Draft(node.name, self.drafts[ROOT].spec, {}, {}, parent.name, _head(node))
        self._group(stand_in, node.children)
        for name in set(self.drafts) - before:
            del self.drafts[name]
        self._fresh_from.clear()  # names are free again

    def _group(self, graph: _Draft, chains: Iterable[ast.Chain]) -> None:
        for chain in chains:
            previous: str | None = None
            for node in chain.nodes:
                name = self._node(node, graph)
                if name is None:
                    previous = None
                    continue
                graph.children[name] = None
                if previous is not None:
                    edge = (previous, name)
                    if edge in graph.edges:
                        self._fail(f"duplicate edge {previous} -> {name} in '{graph.name}'", _head(node))
                    else:
                        graph.edges[edge] = None
                        self.edge_spans[(graph.name, previous, name)] = _head(node)
                previous = name

    def _node(self, node: ast.Node, parent: _Draft) -> str | None:
        """Resolve one node reference under ``parent``; its name, or None after an error."""
        created = node.kind is not ast.NodeKind.INSTANCE or node.name not in self.drafts
        if node.kind is ast.NodeKind.INSTANCE:
            draft = self._instance(node, parent)
        elif node.kind is ast.NodeKind.DEFINE:
            definition = self.definitions.get(node.name)
            if definition is None:
                self._unknown(node, "definition", self.definitions)
                draft = None
            else:
                draft = self._from_definition(self._fresh(node.name), definition, parent, _head(node))
        else:
            spec = self.registry.get(node.name)
            if spec is None:
                self._unknown(node, "command class", self.registry.names())
                draft = None
            else:
                draft = _Draft(self._fresh(node.name.rsplit(".", 1)[-1]), spec, {}, {}, parent.name, _head(node))
                self.drafts[draft.name] = draft
        if draft is None:
            self._recover(node, parent)
            return None
        self._apply_inline(draft, node)
        if created:  # required arguments may come from DEFINE or be written inline
            self._check_required(draft, _head(node))
        self._children(draft, node)
        return draft.name

    def _instance(self, node: ast.Node, parent: _Draft) -> _Draft | None:
        name = node.name
        existing = self.drafts.get(name)
        if existing is not None:
            if existing.parent is None:
                self._fail(f"'${name}' is the root graph and cannot be a child", _head(node))
                return None
            if existing.parent != parent.name:
                self._fail(
                    f"'${name}' already belongs to graph '{existing.parent}'; "
                    f"a node has one parent (write '{name}' for a new instance)",
                    _head(node),
                )
                return None
            return existing
        definition = self.definitions.get(name)
        if definition is None:
            self._unknown(node, "name", [*self.definitions, *self.drafts])
            return None
        return self._from_definition(name, definition, parent, _head(node))

    def _fresh(self, base: str) -> str:
        """``base``, else ``base_i`` with the lowest free i."""
        if base not in self.drafts:
            return base
        index = self._fresh_from.get(base, 1)
        while f"{base}_{index}" in self.drafts:
            index += 1
        self._fresh_from[base] = index  # the caller may still fail to create it
        return f"{base}_{index}"

    # ---- definitions and arguments ---------------------------------------------

    def _from_definition(self, name: str, definition: Definition, parent: _Draft, span: Span | None) -> _Draft | None:
        command = definition.command
        if not isinstance(command, str):
            self._fail(f"DEFINE entry '{definition.name}' has no 'command'", definition.span)
            return None
        spec = self.registry.get(command)
        if spec is None:
            self._fail(
                f"unknown command class '{command}' in DEFINE entry '{definition.name}'",
                definition.span_of("command"),
                hint=did_you_mean(command, self.registry.names()),
            )
            if isinstance(definition.args, ArgsFile):
                self._load_args(definition.args)  # report a missing args file as well
            return None
        draft = _Draft(name, spec, {}, {}, parent.name, span)
        self.drafts[name] = draft
        values: dict[str, tuple[Any, Span | None]] = {}
        args = definition.args
        if isinstance(args, ArgsFile):
            args = self._load_args(args)
        if isinstance(args, Mapping):
            for key, value in args.items():
                values[str(key)] = (value, definition.span_of("args"))
        elif args is not None:
            self._fail(f"'args' of '{definition.name}' must be a mapping or a file path", definition.span_of("args"))
        for key, value in definition.data.items():
            if key not in _DEFINE_ONLY_KEYS:
                values[key] = (value, definition.span_of(key))
        for key, (value, value_span) in values.items():
            self._set(draft, key, _variables(value), value_span)
        return draft

    def _load_args(self, args: ArgsFile) -> dict | None:
        if args.path not in self._args_cache:
            refused = self.confinement.path_problem(args.path, "read")
            if refused is not None:
                self._fail(refused, args.span)
                self._args_cache[args.path] = None
                return None
            try:
                self._args_cache[args.path] = args.load(self.roots, self.sources.get(args.span.file))
            except Exception as problem:  # a ProgramError, reported with the others
                self.problems.extend(getattr(problem, "diagnostics", [Diagnostic(str(problem), args.span)]))
                self._args_cache[args.path] = None
        return self._args_cache[args.path]

    def _apply_inline(self, draft: _Draft, node: ast.Node) -> None:
        for argument in node.arguments:
            self._set(draft, argument.name, python_value(argument.value), argument.span)

    def _set(self, draft: _Draft, key: str, value: Any, span: Span | None) -> None:
        if key in OPTION_KEYS:
            try:
                draft.options[key] = option_value(key, value)
            except OptionError as problem:
                self._fail(str(problem), span)
            return
        wrong = argument_problem(draft.spec, draft.name, key, value, self.confinement)
        if wrong is not None:
            self._fail(wrong[0], span, hint=wrong[1])
            return
        draft.args[key] = value

    def _check_required(self, draft: _Draft, span: Span | None) -> None:
        for name in missing_arguments(draft.spec, draft.args):
            self._fail(f"{draft.spec.name} (node '{draft.name}') needs argument '{name}'", span)

    # ---- base plans (patches) and errors --------------------------------------

    def _load_base(self, base: Plan) -> None:
        for node in base.nodes.values():
            spec = self.registry.get(node.command)
            if spec is None:
                raise LookupError(f"command '{node.command}' of running node '{node.name}' is not registered")
            options = {"repeat": node.repeat, "finish": node.finish, "on_error": node.on_error}
            if node.run_cycle is not None:
                options["run_cycle"] = node.run_cycle
            draft = _Draft(node.name, spec, dict(node.args), options, node.parent, node.span)
            draft.children, draft.edges = dict.fromkeys(node.children), dict.fromkeys(node.edges)
            self.drafts[node.name] = draft

    def _unknown(self, node: ast.Node, what: str, candidates: Iterable[str]) -> None:
        written = f"{node.kind.value}{node.name}"
        self._fail(f"unknown {what} '{written}'", _head(node), hint=did_you_mean(node.name, candidates))

    def _fail(self, message: str, span: Span | None, hint: str | None = None) -> None:
        source = self.sources.get(span.file) if span else None
        self.problems.append(error(message, span, source, hint=hint))


def _variables(value: Any) -> Any:
    """YAML strings written ``$name`` become variable references, as in the language."""
    if isinstance(value, str):
        match = _VARIABLE.match(value)
        return ast.Variable(match.group(1)) if match else value
    if isinstance(value, list):
        return [_variables(item) for item in value]
    if isinstance(value, dict):
        return {key: _variables(item) for key, item in value.items()}
    return value


def _head(node: ast.Node) -> Span | None:
    """Where a node's reference (``$NAME``) is written: what diagnostics underline, rather
    than the node with all its arguments and children."""
    span = node.span
    if span is None:
        return None
    return attrs.evolve(span, end_line=span.line, end_column=span.column + len(node.kind.value + node.name))
