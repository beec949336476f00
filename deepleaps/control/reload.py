"""A new version of a module's code, put in place in a running training all or nothing (docs/reload.md).

``RELOAD_MODULE src.model.SimpleConv`` is a change like any other (docs/design.md §6, §7).
Everything that can fail happens first, aside: the new source is executed into a fresh
module object, its command classes are checked against the running nodes' arguments,
the nodes, the model and the trainer container that use the module are rebuilt, and a
rebuilt model or container makes one forward pass on the last batch (the canary). Then
the change is journaled, with the source text the version was made from and its hash,
and only then installed. A failure on the way puts back the old module object and the
registered commands as they were, and the refusal names the file and line; the live
nodes, model, optimizer and container were never touched.

A replay, and a run resumed from a checkpoint, load the recorded text, not the file on
disk: the run they reproduce ran that code. ``UNDO`` puts the module object a reload
replaced back in place through the same steps.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import linecache
import logging
import sys
import traceback
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import torch

from deepleaps.compiler import PlanNode
from deepleaps.compiler.registry import REGISTRY, Registry
from deepleaps.control.history import Applied
from deepleaps.control.preparation import check_program
from deepleaps.control.replies import Reply, failure
from deepleaps.distributed import ddp
from deepleaps.lang import ProgramError
from deepleaps.lang.ast import Span
from deepleaps.lang.diagnostics import Diagnostic
from deepleaps.train.checkpoint import rng_state, set_rng_state
from deepleaps.train.container import ModelSwap, rebuilt_model

if TYPE_CHECKING:
    from deepleaps.control.engine import Controller

log = logging.getLogger("deepleaps.control")

_UNSET = object()


@attrs.frozen
class ModuleVersion:
    """One version of a module's code: the text it was executed from, and where that file is."""

    name: str
    path: str
    source: str = attrs.field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "path": self.path, "sha256": self.sha256, "source": self.source}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModuleVersion:
        """A recorded version; its text must still match the hash recorded with it."""
        version = cls(str(data["name"]), str(data["path"]), str(data["source"]))
        if version.sha256 != data.get("sha256"):
            raise ProgramError([Diagnostic(f"the recorded text of module {version.name} does not match its sha256")])
        return version

    @classmethod
    def on_disk(cls, name: str) -> ModuleVersion:
        """The version of module ``name`` that its file holds now."""
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError) as problem:
            raise ProgramError([Diagnostic(f"cannot find module '{name}': {problem}")]) from None
        if spec is None or not spec.has_location or not str(spec.origin).endswith(".py"):
            raise ProgramError([Diagnostic(f"module '{name}' has no Python source file to load")])
        path = str(spec.origin)
        try:
            source = importlib.util.decode_source(Path(path).read_bytes())
        except (OSError, UnicodeDecodeError, SyntaxError) as problem:
            raise ProgramError([Diagnostic(f"cannot read {path}: {problem}")]) from None
        return cls(name, path, source)

    def execute(self) -> types.ModuleType:
        """A fresh module object made from this text (``sys.modules`` must hold it meanwhile:
        a module's classes look their annotations up there)."""
        package = [str(Path(self.path).parent)] if Path(self.path).name == "__init__.py" else None
        spec = importlib.util.spec_from_file_location(self.name, self.path, submodule_search_locations=package)
        assert spec is not None  # a .py path always has a spec
        module = importlib.util.module_from_spec(spec)
        code = compile(self.source, self.path, "exec", dont_inherit=True)
        sys.modules[self.name] = module
        exec(code, module.__dict__)
        return module


@attrs.frozen
class Reloaded:
    """What UNDO of a reload puts back: the module object it replaced (None: there was none)
    and that version's recorded text (None: it was imported from its file, unrecorded)."""

    name: str
    module: types.ModuleType | None
    version: Mapping[str, str] | None


class _Swap:
    """The module-wide state a change of ``name`` touches, to put back if the change fails:
    ``sys.modules``, the parent package's attribute, the registered commands, the RNG."""

    def __init__(self, registry: Registry, name: str):
        self.name = name
        self.old = sys.modules.get(name)
        self._restore_registries = [registry.saved(), REGISTRY.saved()]
        self._rng = rng_state()
        parent, _, self._child = name.rpartition(".")
        self._parent = sys.modules.get(parent) if parent else None
        self._attribute = getattr(self._parent, self._child, _UNSET)

    def place(self, module: types.ModuleType) -> None:
        sys.modules[self.name] = module
        if self._parent is not None:
            setattr(self._parent, self._child, module)

    def take_back(self) -> None:
        if self.old is None:
            sys.modules.pop(self.name, None)
        else:
            sys.modules[self.name] = self.old
        if self._parent is not None:
            if self._attribute is _UNSET:
                vars(self._parent).pop(self._child, None)
            else:
                setattr(self._parent, self._child, self._attribute)
        for restore in self._restore_registries:
            restore()
        set_rng_state(self._rng)


@attrs.define
class _Prepared:
    """A module version checked and everything that uses it rebuilt, not yet installed."""

    built: dict[str, Any] = attrs.field(factory=dict)
    model: ModelSwap | None = None
    container_class: type | None = None
    tried: bool = False

    def summary(self) -> list[str]:
        parts = [f"rebuilt {', '.join(self.built)}"] if self.built else []
        if self.model is not None:
            report = "; ".join(f"{kind} keys: {', '.join(keys)}" for kind, keys in self.model.report.items() if keys)
            parts.append(f"rebuilt the model ({report or 'every weight carried over'})")
        if self.container_class is not None:
            parts.append(f"rebound the container's methods ({self.container_class.__name__})")
        if self.model is not None or self.container_class is not None:
            parts.append("tried on the last batch" if self.tried else "no batch yet to try it on")
        return parts


class _Stage:
    """What the change is doing, for the refusal of an exception raised there."""

    def __init__(self) -> None:
        self.now = "executing the module"


def load(controller: Controller, verb: str, name: str, node: PlanNode, recorded: ModuleVersion | None = None) -> Reply:
    """``RELOAD_MODULE``/``IMPORT_MODULE`` of ``name``: its file (or the ``recorded`` text of a
    replay) executed into a fresh module, checked, and put in place with what uses it."""
    old = sys.modules.get(name)
    if old is not None and verb != "RELOAD_MODULE" and recorded is None:
        controller.registry.register_module(old)
        return controller.act(verb, name, node, lambda: f"{name} is imported already; RELOAD_MODULE loads it again")
    version = recorded or ModuleVersion.on_disk(name)
    headline = f"{'reloaded' if old is not None else 'imported'} {name}"
    before = Reloaded(name, old, controller.code.get(name))
    reply = _change(controller, verb, name, node, name, version.execute, version, headline)
    if reply.ok:
        controller.remember(Applied(reply.patch_id or 0, controller.source, controller.source, reloaded=before))
    return reply


def undo(controller: Controller, undone: Applied, node: PlanNode) -> Reply:
    """``UNDO`` of a reload: the module object it replaced, back in place with its commands,
    model and container methods; refused (and kept for UNDO) when that cannot be done."""
    reloaded: Reloaded = undone.reloaded
    if reloaded.module is None:
        why = f"patch {undone.patch_id} imported {reloaded.name}, which was not loaded before: a module is not unloaded"
        return failure("UNDO", why)
    previous = reloaded.module
    version = ModuleVersion.from_json(reloaded.version) if reloaded.version else None

    def restore() -> types.ModuleType:
        sys.modules[reloaded.name] = previous
        return previous

    headline = f"{reloaded.name} as it was before patch {undone.patch_id}"
    reply = _change(controller, "UNDO", str(undone.patch_id), node, reloaded.name, restore, version, headline)
    if reply.ok:
        controller.history.pop()
    return reply


def replay(controller: Controller, entry: Mapping[str, Any], node: PlanNode) -> Reply:
    """A journaled reload, or UNDO of one, carried out again with the text the run loaded."""
    record = entry["module"]
    if entry["verb"] == "UNDO":
        last = controller.history[-1] if controller.history else None
        if last is not None and last.reloaded is not None and last.reloaded.name == record["name"]:
            return undo(controller, last, node)
        if "source" not in record:
            raise ProgramError([Diagnostic(f"UNDO of a reload of {record['name']} that this run did not make")])
    return load(controller, entry["verb"], record["name"], node, ModuleVersion.from_json(record))


def load_recorded(code: Mapping[str, Mapping[str, str]], registry: Registry) -> None:
    """Before a resumed run builds anything: the module versions its checkpoint recorded, in
    the order they were loaded, so that it goes on with the code it ran.

    Raises:
        ProgramError: a recorded version cannot be executed again.
    """
    for data in code.values():
        version = ModuleVersion.from_json(data)
        try:
            module = version.execute()
        except Exception as problem:
            raise _refusal(problem, "executing the recorded module", version, None) from None
        _place_in_parent(version.name, module)
        registry.register_module(module)


def _place_in_parent(name: str, module: types.ModuleType) -> None:
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)


def _change(
    controller: Controller,
    verb: str,
    text: str,
    node: PlanNode,
    name: str,
    make: Callable[[], types.ModuleType],
    version: ModuleVersion | None,
    headline: str,
) -> Reply:
    """Make the module (``make``), prepare, journal and install the change; or put everything
    back and refuse it."""
    swap = _Swap(controller.registry, name)
    stage = _Stage()
    try:
        module = make()
        swap.place(module)
        prepared = _prepare(controller, name, module, stage)
        message = "; ".join([headline, *prepared.summary()])
        record = {"module": version.to_json() if version is not None else {"name": name}}

        def install() -> str:
            _install(controller, prepared)
            controller.code.pop(name, None)
            if version is not None:
                controller.code[name] = version.to_json()
            return message

        reply = controller.act(verb, text, node, install, data=_data(name, version, prepared), record=record)
    except ProgramError as problem:
        swap.take_back()
        raise ProgramError([*problem.diagnostics, _unchanged(name)]) from None
    except Exception as problem:
        swap.take_back()
        raise _refusal(problem, stage.now, version, controller.workspace, name) from None
    log.info("%s %s (patch %s): %s", verb, text, reply.patch_id, message)
    return reply


def _prepare(controller: Controller, name: str, module: types.ModuleType, stage: _Stage) -> _Prepared:
    """Check ``module`` (in ``sys.modules`` now) against the running program and build, aside,
    what uses it: nodes, model, container; try a model or container on the last batch."""
    interpreter, registry = controller.interpreter, controller.registry
    stage.now = "registering its command classes"
    registry.register_module(module)
    plan = interpreter.plan
    users = [node for node, command in interpreter.commands.items() if type(command).__module__ == name]
    gone = []
    for user in users:
        spec = registry.get(plan.nodes[user].command)
        if spec is None or getattr(module, spec.cls.__name__, None) is not spec.cls:
            command = type(interpreter.commands[user]).__name__
            gone.append(Diagnostic(f"node '{user}' runs {command}, which the new {name} does not define"))
    if gone:
        raise ProgramError(gone)
    check_program(
        controller.source, registry, controller.sources, controller.confinement
    )  # the running nodes' arguments against the new Args
    prepared = _Prepared()
    stage.now = "rebuilding its nodes"
    prepared.built = interpreter.build(plan, rebuild=users)
    for user in users:
        prepared.built[user].load_state_dict(interpreter.commands[user].state_dict())
    container = interpreter.context.container
    if container is None:
        return prepared
    if type(ddp.unwrap(container.model)).__module__ == name:
        stage.now = "building the model"
        prepared.model = rebuilt_model(container)
    if type(container).__module__ == name:
        prepared.container_class = _container_class(container, module)
    if prepared.model is None and prepared.container_class is None:
        return prepared
    stage.now = "the canary pass on the last batch"
    staged = copy.copy(container)
    if prepared.container_class is not None:
        staged.__class__ = prepared.container_class
    # The module itself: a distributed wrapper's forward is a collective, and the canary runs on one rank.
    staged.model = prepared.model.model if prepared.model is not None else ddp.unwrap(container.model)
    prepared.tried = _canary(staged)
    return prepared


def _container_class(container: Any, module: types.ModuleType) -> type:
    """The new version of the running container's class, checked to fit the live object."""
    running = type(container).__name__
    new = getattr(module, running, None)
    if not isinstance(new, type):
        gone = f"the trainer container is a {running}, which {module.__name__} no longer defines"
        raise ProgramError([Diagnostic(gone)])
    try:
        copy.copy(container).__class__ = new
    except TypeError as problem:
        raise ProgramError([Diagnostic(f"the running container cannot take the new {running}: {problem}")]) from None
    return new


def _canary(container: Any) -> bool:
    """One forward pass on the last batch, without gradients; the model's buffers (batch-norm
    statistics) and the random state are as they were afterwards. Whether there was a batch."""
    sample = container.sample if container.sample is not None else getattr(container, "last_sample", None)
    if sample is None:
        return False
    buffers = [(buffer, buffer.detach().clone()) for buffer in container.model.buffers()]
    state = rng_state()
    try:
        with torch.no_grad():
            container.canary(sample)
    finally:
        set_rng_state(state)
        with torch.no_grad():
            for buffer, kept in buffers:
                buffer.copy_(kept)
    return True


def _install(controller: Controller, prepared: _Prepared) -> None:
    """Put in place what :func:`_prepare` built; cannot fail."""
    interpreter = controller.interpreter
    interpreter.install_built(interpreter.plan, prepared.built)
    container = interpreter.context.container
    if prepared.model is not None:
        prepared.model.install(container)
    if prepared.container_class is not None:
        container.__class__ = prepared.container_class


def _data(name: str, version: ModuleVersion | None, prepared: _Prepared) -> dict[str, Any]:
    data: dict[str, Any] = {"module": name, "sha256": version.sha256 if version else None}
    data["rebuilt"] = list(prepared.built)
    if prepared.model is not None:
        data["model"] = prepared.model.report
    if prepared.model is not None or prepared.container_class is not None:
        data["tried"] = prepared.tried
    return data


def _unchanged(name: str) -> Diagnostic:
    return Diagnostic(f"{name} is as it was; the running code is unchanged", severity="note")


def _refusal(
    problem: BaseException, stage: str, version: ModuleVersion | None, workspace: Path | None, name: str | None = None
) -> ProgramError:
    """An exception of the user's code as a diagnostic at its file and line: a syntax error
    where it is; any other at the last frame in the module's file (else in the workspace)."""
    what = f"{stage}: {type(problem).__name__}: {problem}"
    span: Span | None
    if isinstance(problem, SyntaxError) and problem.filename and problem.lineno:
        what = f"{type(problem).__name__}: {problem.msg}"
        start = problem.offset or 1
        end = problem.end_offset if problem.end_lineno == problem.lineno and problem.end_offset else start + 1
        span = Span(problem.filename, problem.lineno, start, problem.lineno, max(end, start + 1))
    else:
        span = _frame_span(problem, version, workspace)
    line = _line(span, version) if span is not None else None
    diagnostics = [Diagnostic(what, span, line)]
    if name is not None:
        diagnostics.append(_unchanged(name))
    return ProgramError(diagnostics)


def _frame_span(problem: BaseException, version: ModuleVersion | None, workspace: Path | None) -> Span | None:
    frames = traceback.extract_tb(problem.__traceback__)
    root = str(workspace.resolve()) if workspace is not None else None
    chosen = [frame for frame in frames if version is not None and frame.filename == version.path]
    if not chosen and root is not None:
        chosen = [frame for frame in frames if frame.filename.startswith(root)]
    if not chosen or chosen[-1].lineno is None:
        return None
    frame = chosen[-1]
    line = frame.lineno or 1
    column, end = getattr(frame, "colno", None), getattr(frame, "end_colno", None)  # 0-based, Python 3.11+
    if column is None or end is None or getattr(frame, "end_lineno", line) != line:
        text = frame.line or ""
        column, end = len(text) - len(text.lstrip()), max(len(text), 1)
    return Span(frame.filename, line, column + 1, line, max(end, column + 1) + 1)


def _line(span: Span, version: ModuleVersion | None) -> str | None:
    if version is not None and span.file == version.path:
        lines = version.source.splitlines()
        return lines[span.line - 1] if 0 < span.line <= len(lines) else None
    return linecache.getline(span.file, span.line).rstrip("\n") or None
