"""What each verb of the control channel does (docs/design.md §5).

Queued verbs are functions ``(controller, payload, node) -> Reply`` run at a
safe point on the interpreter's thread; immediate verbs ``(controller,
payload) -> Reply`` run on the caller's thread and change nothing.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepleaps.compiler import PlanNode, resolve
from deepleaps.compiler.dot import to_dot
from deepleaps.compiler.views import plan_tree
from deepleaps.control import editscript
from deepleaps.control.engine import Reply, failure, stale
from deepleaps.control.identity import match_identities
from deepleaps.lang import ProgramError, ast, parse, parse_value
from deepleaps.lang.ast import python_value
from deepleaps.lang.diagnostics import Diagnostic, SourceText, describe, did_you_mean
from deepleaps.lang.programfile import load_program_file
from deepleaps.lang.visitor import walk
from deepleaps.train import settable

if TYPE_CHECKING:
    from deepleaps.control.engine import Controller

log = logging.getLogger("deepleaps.control")

_NAMES = re.compile(r"[\s,]+")
_ASSIGNMENT = re.compile(r"^\s*([A-Za-z_][\w.\[\]]*)\s*(?:=|\s)\s*(.*?)\s*$", re.DOTALL)


# ---- programs -------------------------------------------------------------------------


def _edited(controller: Controller, text: str, verb: str):
    """A whole edited program (APPLY, DIFF), its anonymous nodes matched to the running ones."""
    program = parse(text, f"<{verb}>")
    named = {node.name for node in walk(program) if isinstance(node, ast.Node) and node.kind is ast.NodeKind.INSTANCE}
    return match_identities(controller.source, _resolve(controller, text, verb, base=False, program=program), named)


def _resolve(controller: Controller, text: str, verb: str, *, base: bool, program: ast.Program | None = None):
    name = f"<{verb}>"
    program = program if program is not None else parse(text, name)
    return resolve(
        [program],
        controller.definitions,
        registry=controller.registry,
        sources={**controller.sources, name: SourceText(name, text)},
        roots=controller.roots,
        base=controller.source if base else None,
        added_while_running=True,
        known=controller.source.nodes,
    )


def add(controller: Controller, payload: str, node: PlanNode, verb: str = "ADD") -> Reply:
    """``ADD $root( *PrintCommand[content="hi"] )``: extend the running program."""
    new = _resolve(controller, payload, verb, base=True)
    return controller.commit(verb, payload, editscript.diff(controller.source, new, controller.version), node)


def default(controller: Controller, payload: str, node: PlanNode) -> Reply:
    """The seed's DEFAULT verb: run more program statements, like ADD."""
    return add(controller, payload, node, verb="DEFAULT")


def apply_program(controller: Controller, payload: str, node: PlanNode) -> Reply:
    """``APPLY <whole program>``: the server diffs it against the running program."""
    new = _edited(controller, payload, "APPLY")
    return controller.commit("APPLY", payload, editscript.diff(controller.source, new, controller.version), node)


#: ``DIFF ADD <fragment>``: what ADD would change (a whole program never begins so).
_DIFF_ADD = re.compile(r"^ADD\s")


def diff_program(controller: Controller, payload: str) -> Reply:
    """``DIFF <whole program>``: what APPLY would change; ``DIFF ADD <fragment>``: what ADD
    would change. Changes nothing."""
    if _DIFF_ADD.match(payload):
        new = _resolve(controller, payload[4:], "ADD", base=True)
    else:
        new = _edited(controller, payload, "DIFF")
    script = editscript.diff(controller.source, new, controller.version)
    return Reply(
        True,
        "DIFF",
        "dry run",
        controller.version,
        diff=tuple(script.summary()),
        script=editscript.script_to_data(script),
    )


def remove(controller: Controller, payload: str, node: PlanNode) -> Reply:
    """``REMOVE NAME …``: take nodes (and what is below them) out of the running program."""
    names = [name.lstrip("$") for name in _NAMES.split(payload.strip()) if name]
    if not names:
        raise ProgramError([Diagnostic("REMOVE needs the names of the nodes to remove")])
    plan = controller.source
    for name in names:
        if name not in plan:
            hint = did_you_mean(name, plan.nodes)
            raise ProgramError([Diagnostic(f"there is no node '{name}' to remove", hint=hint)])
        if name == plan.root:
            raise ProgramError([Diagnostic("the root graph cannot be removed")])
        plan = plan.without(name)
    return controller.commit("REMOVE", payload, editscript.diff(controller.source, plan, controller.version), node)


def patch(controller: Controller, payload: str, node: PlanNode) -> Reply:
    """``PATCH <edit script JSON>``: refused if the program moved since it was computed."""
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as problem:
        raise ProgramError([Diagnostic(f"PATCH needs an edit script in JSON: {problem}")]) from None
    except RecursionError:
        raise ProgramError([Diagnostic("PATCH: the JSON nests too deeply to be an edit script")]) from None
    script = editscript.script_from_data(data)
    if script.base_version != controller.version:
        return failure("PATCH", stale(script.base_version, controller.version))
    return controller.commit("PATCH", payload, script, node)


def undo(controller: Controller, payload: str, node: PlanNode) -> Reply:
    """``UNDO``: apply the inverse of the last applied plan change (kept for UNDO until it succeeds)."""
    if not controller.history:
        return failure("UNDO", "nothing to undo")
    undone = controller.history[-1]
    script = editscript.diff(controller.source, undone.before, controller.version)
    if not script:  # the program is already as it was before that change
        controller.history.pop()
    return controller.commit("UNDO", str(undone.patch_id), script, node, undoes=True)


# ---- runtime settings ---------------------------------------------------------------


def _assignment(payload: str, verb: str) -> tuple[str, str]:
    """``NAME VALUE`` or ``NAME=VALUE``: the target and the value's text."""
    match = _ASSIGNMENT.match(payload)
    if match is None or not match.group(2):
        raise ProgramError([Diagnostic(f"{verb} needs a target and a value: {verb} NAME VALUE")])
    return match.group(1), match.group(2)


def _literal(text: str, verb: str) -> Any:
    return python_value(parse_value(text, f"<{verb}>"))


def set_value(controller: Controller, payload: str, node: PlanNode) -> Reply:
    """``SET optimizer.lr 0.01`` (all param groups), ``SET optimizer.0.lr …`` (one group),
    ``SET main.some.attribute …`` (a setting the container declares), ``SET NODE.argument …``
    (a node). Values are checked as :mod:`deepleaps.train.settable` says before anything changes."""
    target, value_text = _assignment(payload, "SET")
    value = _literal(value_text, "SET")
    head, _, rest = target.partition(".")
    if not rest:
        raise ProgramError([Diagnostic(f"SET target '{target}' needs a dot: optimizer.lr, NODE.argument …")])
    if head in ("optimizer", "main", "container"):
        container = controller.interpreter.context.container
        if container is None:
            return failure("SET", "no trainer container yet: try again after it is built")
        effect = (
            _set_optimizer(container, rest, value, value_text)
            if head == "optimizer"
            else _set_attribute(container, rest, value, value_text)
        )
        return controller.act("SET", payload, node, effect)
    if head not in controller.source:
        hint = did_you_mean(head, [*controller.source.nodes, "optimizer", "main"])
        raise ProgramError([Diagnostic(f"SET: no node or object '{head}'", hint=hint)])
    key, _, deeper = rest.partition(".")
    if deeper:
        raise ProgramError([Diagnostic(f"SET {target}: a node argument is NODE.argument")])
    text = f"${head}[{key}={value_text}]"
    new = _resolve(controller, text, "SET", base=True)
    return controller.commit("SET", payload, editscript.diff(controller.source, new, controller.version), node)


def _set_optimizer(container, path: str, value: Any, text: str) -> Callable[[], str]:
    """What ``SET optimizer.PATH value`` does, once it is journaled; checked now."""
    optimizer = container.optimizer
    group, _, key = path.rpartition(".")
    groups = optimizer.param_groups
    if group:
        chosen = [g for i, g in enumerate(groups) if group == str(i) or g.get("name") == group]
        if not chosen:
            names = [str(g.get("name", i)) for i, g in enumerate(groups)]
            raise ProgramError([Diagnostic(f"no param group '{group}' (groups: {', '.join(names)})")])
    else:
        chosen = groups
    if key == "params" or any(key not in g for g in chosen):
        known = ", ".join(k for k in chosen[0] if k != "params")
        raise ProgramError([Diagnostic(f"the optimizer has no hyperparameter '{key}' (it has {known})")])
    new = settable.hyperparameter(optimizer, chosen, key, value, text)

    def effect() -> str:
        for g in chosen:
            g[key] = new
        return f"optimizer {key} = {new!r} in {len(chosen)} param group(s)"

    return effect


def _set_attribute(container, path: str, value: Any, text: str) -> Callable[[], str]:
    """What ``SET main.PATH value`` does, once it is journaled; checked now."""
    target, name, new = settable.attribute(container, path, value, text)

    def effect() -> str:
        setattr(target, name, new)
        return f"{path} = {new!r}"

    return effect


#: How a quoted string, a list and a mapping begin: an EXPORT value that begins so must be a whole literal.
_OPENERS = ('"', "[", "{")


def _exported_value(text: str) -> Any:
    """A literal of the language, or else the text itself, as the seed's EXPORT took it:
    ``EXPORT note=hello`` stores ``"hello"``. Text that opens a string, list or
    mapping and does not close it is a mistake, not text, and its diagnostic stands."""
    try:
        return _literal(text, "EXPORT")
    except ProgramError:
        if text.startswith(_OPENERS):
            raise
        return text


def export(controller: Controller, payload: str, node: PlanNode) -> Reply:
    """``EXPORT name value``: set a variable that arguments read as ``$name``."""
    name, value_text = _assignment(payload, "EXPORT")
    value = _exported_value(value_text)
    variables = controller.interpreter.context.variables

    def effect() -> str:
        variables[name] = value
        exported = variables.setdefault("exported", [])
        if name not in exported:
            exported.append(name)
        return f"${name} = {value!r}"

    return controller.act("EXPORT", payload, node, effect)


def pause(controller: Controller, payload: str, node: PlanNode) -> Reply:
    def effect() -> str:
        controller.paused = True
        return "paused"

    return controller.act("PAUSE", payload, node, effect)


def resume(controller: Controller, payload: str, node: PlanNode) -> Reply:
    def effect() -> str:
        was, controller.paused = controller.paused, False
        return "resumed" if was else "was not paused"

    return controller.act("RESUME", payload, node, effect)


def _checkpoint(controller: Controller) -> str:
    from deepleaps.train.checkpoint import CheckpointStore
    from deepleaps.train.commands import save_checkpoint

    ctx = controller.interpreter.context
    ref = save_checkpoint(ctx, ctx.container.modules, CheckpointStore(ctx.variables["base"]))
    log.info("saved checkpoint %s at %s", ref.id, "/".join(controller.interpreter.position()))
    return ref.id


def _can_checkpoint(controller: Controller) -> bool:
    ctx = controller.interpreter.context
    return ctx.container is not None and "base" in ctx.variables


def checkpoint(controller: Controller, payload: str, node: PlanNode) -> Reply:
    """``CHECKPOINT``: write one now (journaled first: the journal never lags a checkpoint)."""
    if not _can_checkpoint(controller):
        raise ProgramError([Diagnostic("nothing to checkpoint yet: no trainer container")])
    data: dict[str, str] = {}

    def effect() -> str:
        data["id"] = _checkpoint(controller)
        return f"checkpoint {data['id']}"

    return controller.act("CHECKPOINT", payload, node, effect, data=data)


def stop(controller: Controller, payload: str, node: PlanNode) -> Reply:
    """``STOP``: write a checkpoint, then end the run cleanly at this safe point."""

    def effect() -> str:
        controller.paused = False
        controller.interpreter.request_stop()
        if not _can_checkpoint(controller):
            return "stopping"
        try:
            return f"stopping after checkpoint {_checkpoint(controller)}"
        except Exception as problem:  # the stop stands; the run's last checkpoint is the one before
            log.exception("STOP: the checkpoint failed")
            return f"stopping; the checkpoint failed: {describe(problem)}"

    return controller.act("STOP", payload, node, effect)


# ---- code ---------------------------------------------------------------------------


def _check_module(controller: Controller, module: str) -> None:
    if controller.allow_external_modules or controller.workspace is None:
        return
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ProgramError([Diagnostic(f"no module named '{module}'")])
    origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    if origin is None or not origin.is_relative_to(controller.workspace.resolve()):
        raise ProgramError(
            [Diagnostic(f"module '{module}' is not in the workspace; set COMMAND_CONTROLLER.allow_external_modules")]
        )


def import_module(controller: Controller, payload: str, node: PlanNode, verb: str = "IMPORT_MODULE") -> Reply:
    """``IMPORT_MODULE src.ipc.CustomCommand``: register the commands a module defines."""
    module = payload.strip()
    if not all(part.isidentifier() for part in module.split(".")):
        raise ProgramError([Diagnostic(f"{verb} takes a module name such as src.ipc.CustomCommand, not {module!r}")])
    try:
        _check_module(controller, module)
        controller.registry.import_module(module, reload=verb == "RELOAD_MODULE")
    except ProgramError:
        raise
    except Exception:  # the user's module failed to import: the old code keeps running
        excerpt = "".join(traceback.format_exc(limit=-4).splitlines(keepends=True)[-12:])
        return failure(verb, f"cannot import '{module}'; the running code is unchanged:\n{excerpt}")
    rebuilt = []
    if verb == "RELOAD_MODULE":
        rebuilt = _rebind(controller, module)
        rebuilt += _rebuild_model(controller, module)
    message = f"imported {module}" + (f"; rebuilt {', '.join(rebuilt)}" if rebuilt else "")
    return controller.act(verb, payload, node, lambda: message)


def _rebind(controller: Controller, module: str) -> list[str]:
    """Rebuild the nodes whose command class a reloaded module defines, keeping their state."""
    interpreter = controller.interpreter
    names = [name for name, cmd in interpreter.commands.items() if type(cmd).__module__ == module]
    states = {name: interpreter.commands[name].state_dict() for name in names}
    interpreter.install(interpreter.plan, rebuild=names)
    for name in names:
        interpreter.commands[name].load_state_dict(states[name])
    return names


def _rebuild_model(controller: Controller, module: str) -> list[str]:
    """A model whose class the reloaded module defines is rebuilt with its old weights."""
    container = controller.interpreter.context.container
    if container is None or type(container.model).__module__ != module:
        return []
    from deepleaps.train.container import rebuild_model

    report = rebuild_model(container)
    details = "; ".join(f"{kind} keys: {', '.join(keys)}" for kind, keys in report.items() if keys)
    return [f"the model ({details or 'every weight carried over'})"]


def add_command_module(controller: Controller, payload: str, node: PlanNode) -> Reply:
    return import_module(controller, payload, node, verb="ADD_COMMAND_MODULE")


def reload_module(controller: Controller, payload: str, node: PlanNode) -> Reply:
    return import_module(controller, payload, node, verb="RELOAD_MODULE")


def load(controller: Controller, payload: str, node: PlanNode) -> Reply:
    """``LOAD path.yaml``: add the DEFINE entries of another command file."""
    if "\0" in payload:
        raise ProgramError([Diagnostic(f"LOAD takes the path of a command file, not {payload.strip()!r}")])
    path = Path(payload.strip())
    if not path.is_absolute() and controller.workspace is not None:
        path = controller.workspace / path
    program_file = load_program_file(path)
    controller.definitions.update(program_file.definitions)
    controller.sources[program_file.source.name] = program_file.source
    return Reply(
        True,
        "LOAD",
        f"{len(program_file.definitions)} definitions from {payload.strip()}",
        controller.version,
        point=controller.point(node),
        data=sorted(program_file.definitions),
    )


# ---- views --------------------------------------------------------------------------


def status(controller: Controller, payload: str = "") -> Reply:
    interpreter = controller.interpreter
    container = interpreter.context.container
    states = list(interpreter.states.items())  # the training thread may install a plan meanwhile
    data: dict[str, Any] = {
        "version": controller.version,
        "paused": controller.paused,
        "position": interpreter.position(),
        "tree": plan_tree(interpreter.plan, interpreter.states),
        "last_loss": getattr(container, "last_loss", None),
        "metrics": dict(getattr(container, "metrics", {}) or {}),
        "removed": list(controller.removed),
        # Per node, for pictures of the running program: counters, and what changed it live.
        "nodes": {name: {**state.counters(), "finished": state.finished} for name, state in states},
        "added_by": dict(controller.added_by),
        "failed": [name for name, _, _ in controller._runtime],
        "run_dir": None if controller.run_dir is None else str(controller.run_dir),
    }
    lines = [data["tree"].rstrip("\n")]
    for event in controller.removed:
        added = f" (added by patch {event['added_by']})" if event["added_by"] is not None else ""
        lines.append(f"removed by the runtime: {event['node']}{added}: {event['error']}")
    return Reply(True, "STATUS", "\n".join(lines) + "\n", controller.version, data=data)


def dot(controller: Controller, payload: str = "") -> Reply:
    text = to_dot(controller.interpreter.plan)
    return Reply(True, "DOT", text, controller.version, data=text)


def ping(controller: Controller, payload: str = "") -> Reply:
    return Reply(True, "PING", "pong", controller.version)


VERBS: dict[str, Callable[[Controller, str, PlanNode], Reply]] = {
    "ADD": add,
    "DEFAULT": default,
    "APPLY": apply_program,
    "REMOVE": remove,
    "PATCH": patch,
    "UNDO": undo,
    "SET": set_value,
    "EXPORT": export,
    "PAUSE": pause,
    "RESUME": resume,
    "STOP": stop,
    "CHECKPOINT": checkpoint,
    "IMPORT_MODULE": import_module,
    "ADD_COMMAND_MODULE": add_command_module,
    "RELOAD_MODULE": reload_module,
    "LOAD": load,
}
IMMEDIATE_VERBS = {"STATUS": status, "DOT": dot, "DIFF": diff_program, "PING": ping}


def replay(controller: Controller, entry: Mapping[str, Any], node: PlanNode) -> Reply:
    """Re-apply a journal entry: plan changes by their recorded edit script, actions by their text."""
    if entry.get("diff"):
        script = editscript.script_from_data(entry["diff"])
        undoes = entry["verb"] == "UNDO"  # it leaves the UNDO history as it left the original run's
        return controller.commit(entry["verb"], entry.get("text", ""), script, node, undoes=undoes)
    return VERBS[entry["verb"]](controller, entry.get("text", ""), node)
