"""YAML command files: ``DEFAULT`` programs, ``DEFINE`` entries, verbs, settings.

The seed's file loads unchanged::

    DEFAULT: [$root( $TRAINER_CONTAINER_LOAD->$TRAINING_LOADER( ... ) )]
    DEFINE:
      TRAINER_CONTAINER_LOAD:
        command: 'TrainerContainerLoaderCommand'
        args: 'resource/configs/trainer/ExampleContainer.yaml'
        finish: True

Every position — of a YAML error, of a DEFINE key, of a token inside a
program string — is reported in the YAML file's own lines and columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from deepleaps.lang import ast
from deepleaps.lang.diagnostics import Diagnostic, ProgramError, SourceText, decode_utf8, did_you_mean, error
from deepleaps.lang.parser import Locate, parse, parse_value

#: Top-level keys that are verbs (docs/design.md §5): their lists are applied in file order.
VERBS = (
    "ADD",
    "LOAD",
    "IMPORT_MODULE",
    "ADD_COMMAND_MODULE",
    "RELOAD_MODULE",
    "EXPORT",
    "REMOVE",
    "APPLY",
    "SET",
    "PAUSE",
    "RESUME",
    "STOP",
    "CHECKPOINT",
)
#: Verbs whose arguments are program text, parsed (and checked) when the file loads.
PROGRAM_VERBS = ("ADD", "APPLY")
#: Top-level keys that configure deepleaps itself rather than the program.
SETTINGS = ("COMMAND_CONTROLLER", "DASHBOARD", "RUN")
#: Keys every DEFINE entry may have; commands declare further ones.
DEFINE_KEYS = ("command", "args", "required", "repeat", "finish", "run_cycle", "inherit", "base_path", "on_error")


def find_file(path: str, roots: Iterable[Path]) -> tuple[Path | None, list[Path]]:
    """The first existing file of ``path`` (absolute, or relative to each of ``roots``
    in turn) and every place looked in (a folder given twice is looked in once)."""
    candidates = [Path(path)] if Path(path).is_absolute() else [Path(root) / path for root in roots]
    candidates = list(dict.fromkeys(candidates))
    return next((candidate for candidate in candidates if candidate.is_file()), None), candidates


@attrs.frozen
class ArgsFile:
    """``args`` given as the path of a YAML file, read when the command is built."""

    path: str
    span: Span

    def load(self, roots: Iterable[Path], source: SourceText | None = None) -> dict:
        """Read the file, looking in each of ``roots`` in turn (relative paths)."""
        found, candidates = find_file(self.path, roots)
        if found is not None:
            document = load_yaml(found)
            data = document.data if document.data is not None else {}
            if not isinstance(data, dict):
                raise ProgramError([error(f"args file '{found}' must hold a mapping", self.span, source)])
            return data
        looked = ", ".join(str(c) for c in candidates)
        raise ProgramError([error(f"args file not found: '{self.path}' (looked in {looked})", self.span, source)])


Span = ast.Span


@attrs.frozen
class Definition:
    """One ``DEFINE`` entry after its ``inherit`` chain has been merged in."""

    name: str
    data: Mapping[str, Any]
    span: Span
    spans: Mapping[str, Span] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def command(self) -> str | None:
        return self.data.get("command")

    @property
    def args(self) -> Mapping[str, Any] | ArgsFile | None:
        return self.data.get("args")

    def span_of(self, key: str) -> Span:
        """Where ``key``'s value was written, else where the entry starts."""
        return self.spans.get(key, self.span)


@attrs.frozen
class VerbCall:
    """One argument of a top-level verb key, e.g. ``ADD: ["$root( *Print )"]``."""

    verb: str
    argument: Any
    span: Span


@attrs.frozen
class ProgramFile:
    path: str
    defaults: tuple[ast.Program, ...]
    definitions: Mapping[str, Definition]
    verbs: tuple[VerbCall, ...]
    settings: Mapping[str, Any]
    source: SourceText = attrs.field(repr=False)
    #: The raw program strings of DEFAULT and the program verbs, for ``deepleaps fmt``.
    program_texts: tuple[tuple[str, str, Span], ...] = attrs.field(default=(), repr=False)
    #: Files whose DEFINE entries ``LOAD`` merged in (see :func:`merge_loaded`).
    loaded_sources: tuple[SourceText, ...] = attrs.field(default=(), repr=False)

    @property
    def sources(self) -> dict[str, SourceText]:
        """Every file this program's definitions come from, by name (for diagnostics)."""
        return {source.name: source for source in (self.source, *self.loaded_sources)}


def merge_loaded(program_file: ProgramFile, roots: Iterable[Path]) -> ProgramFile:
    """The file with the DEFINE entries of the files its ``LOAD`` verb names merged
    under its own (its own entries win)."""
    roots = tuple(roots)
    definitions: dict[str, Definition] = {}
    sources = list(program_file.loaded_sources)
    for call in program_file.verbs:
        if call.verb != "LOAD":
            continue
        path, _ = find_file(str(call.argument), (Path("."), *roots))
        if path is None:
            message = f"LOAD: no command file '{call.argument}'"
            raise ProgramError([error(message, call.span, program_file.source)])
        loaded = merge_loaded(load_program_file(path), roots)
        definitions.update(loaded.definitions)
        sources.extend(loaded.sources.values())
    definitions.update(program_file.definitions)
    return attrs.evolve(program_file, definitions=definitions, loaded_sources=tuple(sources))


@attrs.frozen
class YamlDocument:
    """A YAML file's Python data together with its node tree (for positions)."""

    data: Any
    node: yaml.Node | None
    source: SourceText

    def span(self, node: yaml.Node) -> Span:
        start, end = node.start_mark, node.end_mark
        return Span(self.source.name, start.line + 1, start.column + 1, end.line + 1, end.column + 1)


def load_yaml(path: str | Path, text: str | bytes | None = None) -> YamlDocument:
    """Parse YAML with positions; errors and duplicate keys become ProgramError."""
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise ProgramError([Diagnostic(f"cannot read '{name}': {exc.strerror}")]) from None
    if isinstance(text, bytes):
        text = decode_utf8(text, name)
    source = SourceText(name, text)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_duplicate_keys(node, source)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        span = Span(name, mark.line + 1, mark.column + 1, mark.line + 1, mark.column + 2) if mark else None
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        raise ProgramError([error(f"YAML: {message}", span, source)]) from None
    except yaml.YAMLError as exc:
        raise ProgramError([Diagnostic(f"YAML: {exc} in '{name}'")]) from None
    finally:
        loader.dispose()
    return YamlDocument(data, node, source)


def _check_duplicate_keys(root: yaml.Node, source: SourceText) -> None:
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen and key.value != "<<":
                        mark = key.start_mark
                        span = Span(
                            source.name, mark.line + 1, mark.column + 1, mark.line + 1, mark.column + 1 + len(key.value)
                        )
                        raise ProgramError([error(f"duplicate key '{key.value}'", span, source)])
                    seen.add(key.value)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


@attrs.frozen
class Override:
    """One ``NODE.KEY=VALUE`` of ``deepleaps run --set``."""

    node: str
    key: str
    value: Any
    span: ast.Span
    source: SourceText


def parse_overrides(assignments: Iterable[str]) -> list[Override]:
    """``NODE.KEY=VALUE`` texts, each its own source (``--set N``) for diagnostics.

    A value is a literal of the language; one that is not one is kept as the string it is.
    """
    overrides, problems = [], []
    for number, text in enumerate(assignments, 1):
        source = SourceText(f"--set {number}", text)
        target, equals, value_text = text.partition("=")
        name, dot, key = target.strip().partition(".")
        if not (equals and dot and name and key):
            problems.append(Diagnostic(f"--set takes NODE.ARGUMENT=VALUE, not '{text}'"))
            continue
        column = len(target) + 2
        span = ast.Span(source.name, 1, column, 1, column + len(value_text))
        try:
            value = ast.python_value(parse_value(value_text.strip(), source.name))
        except ProgramError:
            value = value_text.strip()
        overrides.append(Override(name, key, value, span, source))
    if problems:
        raise ProgramError(problems)
    return overrides


def with_overrides(program_file: ProgramFile, overrides: Iterable[Override]) -> ProgramFile:
    """The file with ``--set`` overrides written over its DEFINE entries, as if the YAML
    said so: the compiler checks them, with their own spans."""
    definitions = dict(program_file.definitions)
    problems = []
    sources = []
    for override in overrides:
        definition = definitions.get(override.node)
        if definition is None:
            hint = did_you_mean(override.node, definitions)
            problems.append(Diagnostic(f"--set: no DEFINE entry '{override.node}'", hint=hint))
            continue
        definitions[override.node] = attrs.evolve(
            definition,
            data={**definition.data, override.key: override.value},
            spans={**definition.spans, override.key: override.span},
        )
        sources.append(override.source)
    if problems:
        raise ProgramError(problems)
    return attrs.evolve(program_file, definitions=definitions, loaded_sources=(*program_file.loaded_sources, *sources))


def load_program_file(path: str | Path, text: str | bytes | None = None) -> ProgramFile:
    """Load a YAML command file: parse its programs, merge ``inherit`` chains.

    All mistakes found are reported together in one :class:`ProgramError`.
    """
    document = load_yaml(path, text)
    return _Builder(document).build()


class _Builder:
    def __init__(self, document: YamlDocument):
        self.document = document
        self.source = document.source
        self.problems: list[Diagnostic] = []

    def fail(self, message: str, node: yaml.Node, hint: str | None = None) -> None:
        self.problems.append(error(message, self.document.span(node), self.source, hint=hint))

    def build(self) -> ProgramFile:
        root = self.document.node
        defaults: list[ast.Program] = []
        definitions: dict[str, Definition] = {}
        verbs: list[VerbCall] = []
        settings: dict[str, Any] = {}
        texts: list[tuple[str, str, Span]] = []
        if root is not None and not isinstance(root, yaml.MappingNode):
            self.fail("a command file is a mapping of DEFAULT, DEFINE, verbs and settings", root)
        for key_node, value_node in root.value if isinstance(root, yaml.MappingNode) else ():
            key = key_node.value
            if key == "DEFAULT":
                for index, item in enumerate(self._items(value_node)):
                    program = self._program(item, f"DEFAULT[{index}]", texts)
                    if program is not None:
                        defaults.append(program)
            elif key == "DEFINE":
                definitions = self._definitions(value_node)
            elif key in VERBS:
                for index, item in enumerate(self._items(value_node)):
                    argument = _construct(item)
                    if key in PROGRAM_VERBS:
                        argument = self._program(item, f"{key}[{index}]", texts)
                    verbs.append(VerbCall(key, argument, self.document.span(item)))
            elif key in SETTINGS:
                settings[key] = _construct(value_node)
            else:
                hint = did_you_mean(str(key), ("DEFAULT", "DEFINE", *VERBS, *SETTINGS))
                self.fail(f"unknown top-level key '{key}'", key_node, hint=hint)
        if self.problems:
            raise ProgramError(self.problems)
        return ProgramFile(
            self.source.name, tuple(defaults), definitions, tuple(verbs), settings, self.source, tuple(texts)
        )

    def _items(self, node: yaml.Node) -> list[yaml.Node]:
        return node.value if isinstance(node, yaml.SequenceNode) else [node]

    def _program(self, node: yaml.Node, label: str, texts: list) -> ast.Program | None:
        if not isinstance(node, yaml.ScalarNode) or not isinstance(_construct(node), str):
            self.fail(f"{label} must be program text (a string)", node)
            return None
        texts.append((label, node.value, self.document.span(node)))
        try:
            return parse(node.value, self.source.name, locate=_locator(node, self.source.text), source=self.source)
        except ProgramError as exc:
            self.problems.extend(exc.diagnostics)
            return None

    def _definitions(self, node: yaml.Node) -> dict[str, Definition]:
        if not isinstance(node, yaml.MappingNode):
            self.fail("DEFINE must map names to definitions", node)
            return {}
        raw: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(value_node, yaml.MappingNode):
                self.fail(f"DEFINE entry '{key_node.value}' must be a mapping of keys such as 'command'", value_node)
                continue
            raw[str(key_node.value)] = (key_node, value_node)
        merged: dict[str, Definition | None] = {}
        for name in raw:
            self._merge(name, raw, [], merged)
        return {name: definition for name, definition in merged.items() if definition is not None}

    def _merge(self, name: str, raw: dict, chain: list[str], done: dict) -> Definition | None:
        """``name``'s entry deep-merged over the entry it inherits from (memoised
        in ``done``, failures as None so that each problem is reported once)."""
        if name not in done:
            done[name] = self._merge_uncached(name, raw, chain, done)
        return done[name]

    def _merge_uncached(self, name: str, raw: dict, chain: list[str], done: dict) -> Definition | None:
        key_node, value_node = raw[name]
        data = _construct(value_node)
        spans = {k.value: self.document.span(v) for k, v in value_node.value}
        if isinstance(data.get("args"), str):
            data["args"] = ArgsFile(data["args"], spans["args"])
        parent_name = data.pop("inherit", None)
        definition = Definition(name, data, self.document.span(key_node), spans)
        if parent_name is None:
            return definition
        inherit_node = next(v for k, v in value_node.value if k.value == "inherit")
        path = [*chain, name]
        if parent_name in path:
            cycle = " -> ".join([*path[path.index(parent_name) :], parent_name])
            self.fail(f"'inherit' forms a cycle: {cycle}", inherit_node)
            return None
        if parent_name not in raw:
            self.fail(
                f"'{name}' inherits from '{parent_name}', which DEFINE does not have",
                inherit_node,
                hint=did_you_mean(str(parent_name), raw),
            )
            return None
        parent = self._merge(parent_name, raw, [*chain, name], done)
        if parent is None:
            return None
        return Definition(name, deep_merge(parent.data, data), definition.span, {**parent.spans, **definition.spans})


def deep_merge(base: Mapping, override: Mapping) -> dict:
    """``override`` over ``base``; nested mappings merge, everything else is replaced."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def _construct(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _locator(node: yaml.ScalarNode, text: str) -> Locate:
    """Map (line, column) inside a YAML string's value to the YAML file.

    Exact for single-line plain and quoted strings without escapes and for
    literal blocks (``|``); other forms point at the string's first line.
    """
    start = node.start_mark
    raw = text[start.index : node.end_mark.index]
    if node.style in (None, "'", '"') and "\n" not in raw:
        shift = 0 if node.style is None else 1
        if node.style is None or ("\\" not in raw and "''" not in raw):
            return lambda line, column: (start.line + 1, start.column + shift + column)
    if node.style == "|":
        lines = text.split("\n")
        first = start.line + 1
        body = lines[first] if first < len(lines) else ""
        indent = len(body) - len(body.lstrip(" "))
        return lambda line, column: (first + line, indent + column)
    return lambda line, column: (start.line + 1, start.column + 1)
