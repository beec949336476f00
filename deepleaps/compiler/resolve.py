"""Name resolution: program ASTs + DEFINE entries + registry → an unoptimised Plan.

docs/design.md §3: ``$NAME`` reuses the instance NAME or creates it from
``DEFINE[NAME]``; ``NAME`` and ``*Class`` create fresh instances, named by
their label (``*Class as P``) or else with unique generated names (``NAME``,
``NAME_1``, … never a label of the program); ``$root`` always exists; a statement whose
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
from deepleaps.compiler.facts import taken_below
from deepleaps.compiler.plan import Kind, OnError, Plan, PlanNode, owned
from deepleaps.compiler.registry import CommandSpec, Registry
from deepleaps.lang import ast
from deepleaps.lang.ast import Span, python_value
from deepleaps.lang.diagnostics import Diagnostic, SourceText, did_you_mean, error
from deepleaps.lang.programfile import ArgsFile, Definition
from deepleaps.lang.visitor import walk
from deepleaps.workspace.confine import Confinement

ROOT = "root"
ROOT_COMMAND = "Graph"
_DEFINE_ONLY_KEYS = ("command", "args", "inherit")
#: Spelling hints ("did you mean …") for the first problems only: each costs a fuzzy match
#: against every known name, and a program with more mistakes than this needs no more hints.
HINTED = 50
_LABEL_FIRST = "a label is known from the node it is written on: write the labelled node first"
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
        complete: bool = True,
        confinement: Confinement | None = None,
    ):
        self.registry = registry
        #: Check that every node has its required arguments (off for a node taken alone).
        self.complete = complete
        self.definitions = definitions
        self.sources = dict(sources)
        self.roots = tuple(roots)
        self.added_while_running = added_while_running
        #: What classes and files arguments may name; by default, those of the first root as workspace.
        self.confinement = confinement or Confinement(self.roots[0] if self.roots else Path.cwd())
        #: Nodes of the running program: named again, they keep their on_error default.
        self.known = known or {}
        self.base = base
        self.problems: list[Diagnostic] = []
        #: The nodes this resolution made or named; the other nodes of ``base`` stay as they are.
        self.drafts: dict[str, _Draft] = {}
        self.edge_spans: dict[tuple[str, str, str], Span | None] = {}
        self._args_cache: dict[str, dict | None] = {}
        #: Per base name, the index below which every ``NAME_i`` is taken (see _fresh).
        self._fresh_from: dict[str, int] = {}
        #: The labels of the program being added (no generated name takes one), and those
        #: written so far.
        self._labels: set[str] = set()
        self._written: set[str] = set()
        if base is None:
            root_spec = registry.get(ROOT_COMMAND)
            if root_spec is None:
                raise LookupError(f"the '{ROOT_COMMAND}' command is not registered")
            self.drafts[ROOT] = _Draft(ROOT, root_spec, {}, {"repeat": 1}, None, None)

    # ---- entry points -------------------------------------------------------

    def add_program(self, program: ast.Program) -> None:
        self._labels = {node.label for node in walk(program) if isinstance(node, ast.Node) and node.label is not None}
        self._written = set()
        self._fresh_from.clear()  # a label of the program before may be free now
        for chain in program.statements:
            self._statement(chain)

    def plan(self) -> Plan:
        nodes = self.base.node_dict() if self.base is not None else {}
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
        return Plan(owned(nodes), ROOT)

    def _default_on_error(self, name: str) -> OnError:
        """A broken addition to a running training removes itself rather than stop it;
        a node of the running program named again keeps what it had."""
        for known in (self.known, self.base.nodes if self.base is not None else {}):
            if name in known:
                return known[name].on_error
        return OnError.REMOVE if self.added_while_running else OnError.STOP

    # ---- statements and groups ---------------------------------------------

    def _statement(self, chain: ast.Chain) -> None:
        first = chain.nodes[0]
        draft = self._draft(first.name) if len(chain.nodes) == 1 and first.kind is ast.NodeKind.INSTANCE else None
        if draft is not None:
            self._apply_inline(draft, first)
            self._children(draft, first)
        else:
            self._group(self._root(), [chain])

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
        stand_in = _Draft(node.name, self._root().spec, {}, {}, parent.name, _head(node))
        self._group(stand_in, node.children)
        for name in set(self.drafts) - before:
            if self.base is None or name not in self.base.nodes:
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
        created = node.kind is not ast.NodeKind.INSTANCE or not self._exists(node.name)
        if node.kind is ast.NodeKind.INSTANCE:
            draft = self._instance(node, parent)
        elif node.kind is ast.NodeKind.DEFINE:
            definition = self.definitions.get(node.name)
            if definition is None:
                self._unknown(node, "definition", self.definitions)
                draft = None
            elif (name := self._instance_name(node, node.name)) is None:
                draft = None
            else:
                draft = self._from_definition(name, definition, parent, _head(node))
        else:
            spec = self.registry.get(node.name)
            if spec is None:
                self._unknown(node, "command class", self.registry.names())
                draft = None
            elif (name := self._instance_name(node, node.name.rsplit(".", 1)[-1])) is None:
                draft = None
            else:
                draft = _Draft(name, spec, {}, {}, parent.name, _head(node))
                self.drafts[draft.name] = draft
        if draft is None:
            self._recover(node, parent)
            return None
        self._apply_inline(draft, node)
        if created and self.complete:  # required arguments may come from DEFINE or be written inline
            self._check_required(draft, _head(node))
        self._children(draft, node)
        return draft.name

    def _instance(self, node: ast.Node, parent: _Draft) -> _Draft | None:
        name = node.name
        existing = self._draft(name)
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
        if definition is None and name in self._labels:
            if name not in self._written:  # else the labelled node failed, and said why
                self._fail(f"'${name}' comes before the node labelled '{name}'", _head(node), hint=_LABEL_FIRST)
            return None
        if definition is None:
            self._unknown(node, "name", [*self.definitions, *self._names()])
            return None
        return self._from_definition(name, definition, parent, _head(node))

    def _instance_name(self, node: ast.Node, base: str) -> str | None:
        """The name of the instance a fresh node creates: its label, or a generated name;
        None after an error (the label is a node's name already)."""
        label = node.label
        if label is None:
            return self._fresh(base)
        self._written.add(label)
        existing = self._draft(label)
        if existing is None:
            return label
        where = f" (at {existing.span})" if existing.span is not None else ""
        self._fail(
            f"label '{label}' is taken: the program has a node '{label}'{where}",
            node.label_span,
            hint="labels and instance names are one namespace: choose another label",
        )
        return None

    def _fresh(self, base: str) -> str:
        """``base``, else ``base_i`` with the lowest free i; never a label of the program."""

        def taken(name: str) -> bool:
            return self._exists(name) or name in self._labels

        if not taken(base):
            return base
        index = self._fresh_from.get(base, 1)
        if self.base is not None:
            index = max(index, taken_below(self.base, base))
        while taken(f"{base}_{index}"):
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

    def _exists(self, name: str) -> bool:
        return name in self.drafts or (self.base is not None and name in self.base.nodes)

    def _names(self) -> list[str]:
        """Every node name: the running program's, then those made here."""
        if self.base is None:
            return list(self.drafts)
        return [*self.base.nodes, *(name for name in self.drafts if name not in self.base.nodes)]

    def _root(self) -> _Draft:
        draft = self._draft(ROOT)
        assert draft is not None  # every program has its root
        return draft

    def _draft(self, name: str) -> _Draft | None:
        """The draft of node ``name``, made from the running program's node when first named
        (so that resolving a patch takes time in proportion to it, not to the program)."""
        draft = self.drafts.get(name)
        if draft is not None or self.base is None or name not in self.base.nodes:
            return draft
        node = self.base.nodes[name]
        spec = self.registry.get(node.command)
        if spec is None:
            raise LookupError(f"command '{node.command}' of running node '{node.name}' is not registered")
        options = {"repeat": node.repeat, "finish": node.finish, "on_error": node.on_error}
        if node.run_cycle is not None:
            options["run_cycle"] = node.run_cycle
        draft = _Draft(node.name, spec, dict(node.args), options, node.parent, node.span)
        draft.children, draft.edges = dict.fromkeys(node.children), dict.fromkeys(node.edges)
        self.drafts[name] = draft
        return draft

    def _unknown(self, node: ast.Node, what: str, candidates: Iterable[str]) -> None:
        written = f"{node.kind.value}{node.name}"
        hint = did_you_mean(node.name, candidates) if len(self.problems) < HINTED else None
        self._fail(f"unknown {what} '{written}'", _head(node), hint=hint)

    def _fail(self, message: str, span: Span | None, hint: str | None = None) -> None:
        source = self.sources.get(span.file) if span else None
        self.problems.append(error(message, span, source, hint=hint))


def resolve_alone(
    node: ast.Node,
    registry: Registry,
    definitions: Mapping[str, Definition],
    *,
    sources: Mapping[str, SourceText] = {},
    roots: Sequence[Path] = (Path.cwd(),),
    confinement: Confinement | None = None,
) -> PlanNode | None:
    """The node that ``node`` (a reference without children) is, alone under ``$root`` of an
    empty program: what its DEFINE entry or its class gives it and what it writes inline,
    required arguments missing or not. None if it does not resolve (an unknown name, …).

    What the program printer compares a running node with, to write only what differs.
    """
    resolver = Resolver(registry, definitions, sources=sources, roots=roots, complete=False, confinement=confinement)
    resolver.add_program(ast.Program([ast.Chain([node])]))
    name = node.label or node.name
    if resolver.problems or name not in resolver.drafts:
        return None
    return resolver.plan().nodes[name]


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
