"""The command registry: what each command class is called, its kind and its arguments.

A command class declares an attrs ``Args`` schema; the compiler checks every
node's arguments against it before anything runs::

    @register
    class PrintCommand(Command):
        name = "PrintCommand"
        kind = Kind.LEAF
        aliases = ("Print",)

        @attrs.frozen
        class Args:
            content: str = ""

The registry knows nothing of how commands run; the runtime does.
"""

from __future__ import annotations

import importlib
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar, Protocol, TypeGuard

import attrs

from deepleaps.compiler.plan import Kind
from deepleaps.lang.ast import Variable


@attrs.frozen
class NoArgs:
    """The schema of a command that takes no arguments."""


#: What an argument names outside the program: ``("class", "torch.nn.Linear")``, ``("read", path)``
#: or ``("write", path)``; the compiler confines each (:mod:`deepleaps.workspace.confine`).
Reference = tuple[str, str]


def no_references(key: str, value: Any) -> Iterator[Reference]:
    return iter(())


@attrs.frozen
class CommandSpec:
    name: str
    kind: Kind
    args: type
    cls: type
    aliases: tuple[str, ...] = ()
    #: Whether keys the schema does not name are accepted (free-form configuration).
    extra_args: bool = False
    #: Defaults of the node options for this command (repeat, finish …).
    defaults: Mapping[str, Any] = attrs.field(factory=dict)
    #: The classes and files an argument ``(key, value)`` names (a command's ``references``).
    references: Callable[[str, Any], Iterable[Reference]] = no_references

    @property
    def fields(self) -> dict[str, attrs.Attribute]:
        return {field.name: field for field in attrs.fields(self.args)}


class Registry:
    """Command classes by name and alias; later registrations replace earlier ones
    (so a reloaded module rebinds its commands)."""

    def __init__(self, parent: Registry | None = None):
        self._specs: dict[str, CommandSpec] = {}
        self._parent = parent
        #: Moves on every registration (and restore): what was checked against one
        #: generation of the commands may not hold for the next.
        self.generation = 0

    def register(self, cls: type) -> type:
        """Register a command class (usable as a decorator)."""
        spec = spec_of(cls)
        for name in (spec.name, *spec.aliases):
            self._specs[name] = spec
        self.generation += 1
        return cls

    def get(self, name: str) -> CommandSpec | None:
        spec = self._specs.get(name)
        if spec is None and self._parent is not None:
            return self._parent.get(name)
        return spec

    def names(self) -> set[str]:
        names = set(self._specs)
        if self._parent is not None:
            names |= self._parent.names()
        return names

    def child(self) -> Registry:
        """A registry that sees this one's commands and adds its own."""
        return Registry(parent=self)

    def import_module(self, module: str) -> types.ModuleType:
        """Import ``module`` and register the command classes it defines."""
        loaded = importlib.import_module(module)
        self.register_module(loaded)
        return loaded

    def register_module(self, module: types.ModuleType) -> list[type]:
        """Register the command classes ``module`` defines (not those it imports); them."""
        classes = [value for value in vars(module).values() if defined_in(value, module) and is_command(value)]
        for cls in classes:
            self.register(cls)
        return classes

    def saved(self) -> Callable[[], None]:
        """A function that puts back the commands this registry and its parents hold now
        (a reload that fails takes back what its module registered)."""
        chain: list[Registry] = []
        registry: Registry | None = self
        while registry is not None:
            chain.append(registry)
            registry = registry._parent
        specs = [dict(registry._specs) for registry in chain]

        def restore() -> None:
            for registry, kept in zip(chain, specs):
                registry._specs = dict(kept)
                registry.generation += 1

        return restore


class _Command(Protocol):
    """What makes a class a command class: a name and a kind."""

    name: ClassVar[str]
    kind: ClassVar[Kind]


def defined_in(value: Any, module: types.ModuleType) -> TypeGuard[type]:
    """Whether ``value`` is a class whose code ``module`` holds (not one it imports)."""
    return isinstance(value, type) and getattr(value, "__module__", None) == module.__name__


def is_command(cls: type) -> TypeGuard[type[_Command]]:
    return isinstance(getattr(cls, "kind", None), Kind) and isinstance(getattr(cls, "name", None), str)


def spec_of(cls: type) -> CommandSpec:
    if not is_command(cls):
        raise TypeError(f"{cls!r} is not a command class: it needs a 'name' and a 'kind'")
    args = getattr(cls, "Args", NoArgs)
    if not attrs.has(args):
        raise TypeError(f"{cls.__name__}.Args must be an attrs class")
    attrs.resolve_types(args, sys.modules[args.__module__].__dict__)
    return CommandSpec(
        name=cls.name,
        kind=cls.kind,
        args=args,
        cls=cls,
        aliases=tuple(getattr(cls, "aliases", ())),
        extra_args=bool(getattr(cls, "extra_args", False)),
        defaults=dict(getattr(cls, "node_defaults", {})),
        references=getattr(cls, "references", no_references),
    )


#: Built-in commands register here when ``deepleaps.runtime`` is imported.
REGISTRY = Registry()


# ---- argument type checking ---------------------------------------------------


def type_name(annotation: Any) -> str:
    if annotation is Any:
        return "any value"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return " or ".join(repr(arg) for arg in typing.get_args(annotation))
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def matches(value: Any, annotation: Any) -> bool:
    """Whether a literal value fits a field's type; variables fit anything (checked at run time)."""
    if isinstance(value, Variable) or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (list, tuple, Iterable, typing.Sequence) or annotation in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        item_types = typing.get_args(annotation)
        return not item_types or all(matches(item, item_types[0]) for item in value)
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        return isinstance(value, dict)
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True
