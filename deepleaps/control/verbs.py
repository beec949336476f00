"""What each verb of the control channel does (docs/design.md §5).

Queued verbs are functions ``(controller, payload, node) -> Reply`` run at a
safe point on the interpreter's thread; immediate verbs ``(controller,
payload) -> Reply`` run on the caller's thread and change nothing.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from deepleaps.compiler import PlanNode, resolve_change
from deepleaps.compiler.dot import to_dot
from deepleaps.compiler.views import plan_tree
from deepleaps.control import editjson, editscript, reload
from deepleaps.control.identity import match_identities, written_names
from deepleaps.control.program_text import ProgramWriter
from deepleaps.control.replies import Reply, cut, failure, stale
from deepleaps.lang import ProgramError, ast, parse, parse_value
from deepleaps.lang.ast import python_value
from deepleaps.lang.diagnostics import Diagnostic, SourceText, describe, did_you_mean
from deepleaps.lang.programfile import load_program_file
from deepleaps.train import settable
from deepleaps.workspace.confine import check_module

if TYPE_CHECKING:
    from deepleaps.control.engine import Controller
    from deepleaps.control.preparation import Program

log = logging.getLogger("deepleaps.control")

_NAMES = re.compile(r"[\s,]+")
_ASSIGNMENT = re.compile(r"^\s*([A-Za-z_][\w.\[\]]*)\s*(?:=|\s)\s*(.*?)\s*$", re.DOTALL)


# ---- programs -------------------------------------------------------------------------


def _edited(controller: Program, text: str, verb: str):
    """A whole edited program (APPLY, DIFF), its anonymous nodes matched to the running ones."""
    program = parse(text, f"<{verb}>")
    plan = _resolve(controller, text, verb, base=False, program=program)[0]
    return match_identities(controller.source, plan, written_names(program))


def _resolve(controller: Program, text: str, verb: str, *, base: bool, program: ast.Program | None = None):
    """The program ``text`` resolved (on top of the running one if ``base``), and the names
    of the nodes it made or named (with ``base``, the only ones that may differ)."""
    name = f"<{verb}>"
    program = program if program is not None else parse(text, name)
    return resolve_change(
        [program],
        controller.definitions,
        registry=controller.registry,
        sources={**controller.sources, name: SourceText(name, text)},
        roots=controller.roots,
        base=controller.source if base else None,
        added_while_running=True,
        known=controller.source.nodes,
        confinement=controller.confinement,
    )


def add_script(controller: Program, payload: str, verb: str = "ADD") -> editscript.EditScript:
    """``ADD $root( *PrintCommand[content="hi"] )``: extend the running program."""
    new, among = _resolve(controller, payload, verb, base=True)
    return editscript.diff(controller.source, new, controller.version, among)


def default_script(controller: Program, payload: str) -> editscript.EditScript:
    """The seed's DEFAULT verb: run more program statements, like ADD."""
    return add_script(controller, payload, verb="DEFAULT")


def apply_script(controller: Program, payload: str) -> editscript.EditScript:
    """``APPLY <whole program>``: the server diffs it against the running program."""
    new = _edited(controller, payload, "APPLY")
    return editscript.diff(controller.source, new, controller.version)


#: ``DIFF ADD <fragment>``: what ADD would change (a whole program never begins so).
_DIFF_ADD = re.compile(r"^ADD\s")


def diff_program(controller: Controller, payload: str) -> Reply:
    """``DIFF <whole program>``: what APPLY would change; ``DIFF ADD <fragment>``: what ADD
    would change. Changes nothing."""
    if _DIFF_ADD.match(payload):
        script = add_script(controller, payload[4:])
    else:
        script = editscript.diff(controller.source, _edited(controller, payload, "DIFF"), controller.version)
    return Reply(
        True,
        "DIFF",
        "dry run",
        controller.version,
        diff=tuple(script.summary()),
        script=editjson.script_to_data(script),
    )


def remove_script(controller: Program, payload: str) -> editscript.EditScript:
    """``REMOVE NAME …``: take nodes (and what is below them) out of the running program."""
    names = [name.lstrip("$") for name in _NAMES.split(payload.strip()) if name]
    if not names:
        raise ProgramError([Diagnostic("REMOVE needs the names of the nodes to remove")])
    plan = controller.source
    among: set[str] = set()
    for name in names:
        if name not in plan:
            hint = did_you_mean(name, plan.nodes)
            raise ProgramError([Diagnostic(f"there is no node '{name}' to remove", hint=hint)])
        if name == plan.root:
            raise ProgramError([Diagnostic("the root graph cannot be removed")])
        among.update(below.name for below in plan.walk(name))
        among.add(plan[name].parent)  # type: ignore[arg-type]
        plan = plan.without(name)
    return editscript.diff(controller.source, plan, controller.version, among)


def patch_script(controller: Program, payload: str) -> editscript.EditScript:
    """``PATCH <edit script JSON>``: refused if the program moved since it was computed."""
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as problem:
        raise ProgramError([Diagnostic(f"PATCH needs an edit script in JSON: {problem}")]) from None
    except RecursionError:
        raise ProgramError([Diagnostic("PATCH: the JSON nests too deeply to be an edit script")]) from None
    script = editjson.script_from_data(data)
    if script.base_version != controller.version:
        raise ProgramError([Diagnostic(stale(script.base_version, controller.version))])
    return script


def undo(controller: Controller, payload: str, node: PlanNode) -> Reply:
    """``UNDO``: apply the inverse of the last applied plan change (kept for UNDO until it succeeds)."""
    if not controller.history:
        return failure("UNDO", "nothing to undo")
    undone = controller.history[-1]
    if undone.reloaded is not None:
        return reload.undo(controller, undone, node)
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


#: What ``SET`` reaches besides nodes: the optimizer and the trainer container (``main``).
_OBJECTS = ("optimizer", "main", "container")


def set_value(controller: Controller, payload: str, node: PlanNode) -> Reply:
    """``SET optimizer.lr 0.01`` (all param groups), ``SET optimizer.0.lr …`` (one group),
    ``SET main.some.attribute …`` (a setting the container declares), ``SET NODE.argument …``
    (a node). Values are checked as :mod:`deepleaps.train.settable` says before anything changes."""
    if _sets_node(payload):
        return controller.commit("SET", payload, set_script(controller, payload), node)
    target, value_text = _assignment(payload, "SET")
    value = _literal(value_text, "SET")
    head, _, rest = _target(target)
    container = controller.interpreter.context.container
    if container is None:
        return failure("SET", "no trainer container yet: try again after it is built")
    effect = (
        _set_optimizer(container, rest, value, value_text)
        if head == "optimizer"
        else _set_attribute(container, rest, value, value_text)
    )
    return controller.act("SET", payload, node, effect)


def set_script(controller: Program, payload: str) -> editscript.EditScript:
    """``SET NODE.argument value``: a change of the program, like ADD ``$NODE[argument=value]``."""
    target, value_text = _assignment(payload, "SET")
    _literal(value_text, "SET")
    head, _, rest = _target(target)
    if head not in controller.source:
        hint = did_you_mean(head, [*controller.source.nodes, "optimizer", "main"])
        raise ProgramError([Diagnostic(f"SET: no node or object '{head}'", hint=hint)])
    key, _, deeper = rest.partition(".")
    if deeper:
        raise ProgramError([Diagnostic(f"SET {target}: a node argument is NODE.argument")])
    new, among = _resolve(controller, f"${head}[{key}={value_text}]", "SET", base=True)
    return editscript.diff(controller.source, new, controller.version, among)


def _target(target: str) -> tuple[str, str, str]:
    """``HEAD.REST`` of a SET target: a node or object, and what of it."""
    head, dot, rest = target.partition(".")
    if not rest:
        raise ProgramError([Diagnostic(f"SET target '{target}' needs a dot: optimizer.lr, NODE.argument …")])
    return head, dot, rest


def _sets_node(payload: str) -> bool:
    """Whether ``SET payload`` changes a node's argument (a program change) rather than a
    setting of the running objects (the optimizer, the container)."""
    match = _ASSIGNMENT.match(payload)
    return match is None or match.group(1).partition(".")[0] not in _OBJECTS


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
    """``CHECKPOINT``: write one now, then journal it: a checkpoint that could not be written
    is not in the journal. (It waits for the journal entries before it: the journal never lags
    a checkpoint.)"""
    if not _can_checkpoint(controller):
        raise ProgramError([Diagnostic("nothing to checkpoint yet: no trainer container")])
    try:
        written = _checkpoint(controller)
    except OSError as problem:
        raise ProgramError([Diagnostic(f"the checkpoint could not be written: {describe(problem)}")]) from None
    return controller.act("CHECKPOINT", payload, node, lambda: f"checkpoint {written}", data={"id": written})


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


def import_module(controller: Controller, payload: str, node: PlanNode, verb: str = "IMPORT_MODULE") -> Reply:
    """``IMPORT_MODULE src.ipc.CustomCommand``: register the commands a module defines;
    ``RELOAD_MODULE``: load it again (:mod:`deepleaps.control.reload`)."""
    module = payload.strip()
    if not all(part.isidentifier() for part in module.split(".")):
        raise ProgramError([Diagnostic(f"{verb} takes a module name such as src.ipc.CustomCommand, not {module!r}")])
    check_module(module, controller.workspace, controller.confinement.external_modules)
    return reload.load(controller, verb, module, node)


def add_command_module(controller: Controller, payload: str, node: PlanNode) -> Reply:
    return import_module(controller, payload, node, verb="ADD_COMMAND_MODULE")


def reload_module(controller: Controller, payload: str, node: PlanNode) -> Reply:
    return import_module(controller, payload, node, verb="RELOAD_MODULE")


def load(controller: Controller, payload: str, node: PlanNode) -> Reply:
    """``LOAD path.yaml``: add the DEFINE entries of another command file, a YAML file in the
    workspace or the run directories. A file that is not one is refused without a word of its content."""
    written = payload.strip()
    if "\0" in payload or not written.endswith((".yaml", ".yml")):
        why = f"LOAD takes the path of a command file, not {cut(written, 200)!r}: a .yaml or .yml file"
        raise ProgramError([Diagnostic(why)])
    path = controller.confinement.readable(written)
    if not path.is_file():
        raise ProgramError([Diagnostic(f"LOAD: no command file '{cut(written, 200)}'")])
    try:
        program_file = load_program_file(path)
    except ProgramError as problem:
        where = [f"line {d.span.line}, column {d.span.column}" for d in problem.diagnostics if d.span is not None]
        at = f" ({where[0]})" if where else ""
        raise ProgramError([Diagnostic(f"LOAD: '{cut(written, 200)}' is not a command file{at}")]) from None
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
        "pacing": controller.pacing.to_json(),
    }
    lines = [data["tree"].rstrip("\n")]
    for event in controller.removed:
        added = f" (added by patch {event['added_by']})" if event["added_by"] is not None else ""
        lines.append(f"removed by the runtime: {event['node']}{added}: {event['error']}")
    return Reply(True, "STATUS", "\n".join(lines) + "\n", controller.version, data=data)


def dot(controller: Controller, payload: str = "") -> Reply:
    text = to_dot(controller.interpreter.plan)
    return Reply(True, "DOT", text, controller.version, data=text)


def program(controller: Controller, payload: str, node: PlanNode) -> Reply:
    """``PROGRAM``: the running program as program text, its first line the version it is at.
    Queued: at a safe point the program and its version are read together."""
    writer = ProgramWriter(
        controller.registry, controller.definitions, controller.sources, controller.roots, controller.confinement
    )
    text = writer.text(controller.source, controller.version)
    return Reply(True, "PROGRAM", text, controller.version, data=text)


def ping(controller: Controller, payload: str = "") -> Reply:
    return Reply(True, "PING", "pong", controller.version)


def _changes_program(verb: str, script_of: Callable[[Program, str], editscript.EditScript]):
    """The queued verb that commits the change ``script_of`` computes against the running program."""

    def run(controller: Controller, payload: str, node: PlanNode) -> Reply:
        return controller.commit(verb, payload, script_of(controller, payload), node)

    return run


#: The verbs whose change is an edit script computed from the program alone: a request for
#: one is prepared (parsed, resolved, checked, compiled) off the training thread.
SCRIPTS: dict[str, Callable[[Program, str], editscript.EditScript]] = {
    "ADD": add_script,
    "DEFAULT": default_script,
    "APPLY": apply_script,
    "REMOVE": remove_script,
    "PATCH": patch_script,
}


def script_of(verb: str, payload: str) -> Callable[[Program, str], editscript.EditScript] | None:
    """How to compute the change ``VERB payload`` makes to the program, if that is what it does."""
    if verb == "SET" and _sets_node(payload):
        return set_script
    return SCRIPTS.get(verb)


VERBS: dict[str, Callable[[Controller, str, PlanNode], Reply]] = {
    **{verb: _changes_program(verb, script) for verb, script in SCRIPTS.items()},
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
    "PROGRAM": program,
}
IMMEDIATE_VERBS = {"STATUS": status, "DOT": dot, "DIFF": diff_program, "PING": ping}


def replay(controller: Controller, entry: Mapping[str, Any], node: PlanNode) -> Reply:
    """Re-apply a journal entry: plan changes by their recorded edit script, actions by their text."""
    if entry.get("module"):
        return reload.replay(controller, entry, node)
    if entry.get("diff"):
        script = editjson.script_from_data(entry["diff"])
        if "error" in entry:  # the removal of a node that failed
            return controller.remove_failed(entry["text"], entry["error"], script, node)
        undoes = entry["verb"] == "UNDO"  # it leaves the UNDO history as it left the original run's
        return controller.commit(entry["verb"], entry.get("text", ""), script, node, undoes=undoes)
    return VERBS[entry["verb"]](controller, entry.get("text", ""), node)
