"""The interpreter: runs a Plan, node by node, step by step (docs/design.md §4).

- A graph's activation runs ``repeat`` steps (-1: until stopped or, for a
  loader, until its data runs out); each step runs its prologue (once) and
  then its schedule.
- Counters: ``step`` counts steps of the node's current activation — for a
  leaf, its runs in the current activation of its parent — ``total_step``
  every step ever, ``epoch`` a loader's activations. They are 1-based while
  a step runs.
- ``run_cycle: X.c:N`` runs a node when X's counter c is a positive multiple
  of N that has moved since the node last ran. X's ``total_step`` (``epoch``
  for ``X.epoch``) tells whether it moved, so a ``step`` counter that resets
  with each epoch fires again in the next: ``TRAINING_BATCH.step:10`` runs at
  batches 10, 20, … of every epoch.
- ``finish: true`` nodes are skipped once their activation is over, which
  joins their predecessors to their successors.
- Resuming from a checkpoint re-enters the step that was under way when it
  was written: graphs on the saved :meth:`Interpreter.position` keep their
  counters; children before the position re-run only if they are one-shot
  setup (``finish``); the saving node itself does not run again. A
  checkpoint written at a graph's safe point (``STOP``, ``CHECKPOINT``, a
  signal) ends its position with that graph: its finished setup runs again
  and the next step begins. A loader on the position fetches again the
  batches it had delivered in that epoch, and goes on with the next.
- The start of every graph step is a *safe point*: hooks registered with
  :meth:`Interpreter.add_safe_point_hook` run there, and only there may the
  plan be swapped (:meth:`Interpreter.install`), so every change lands
  between two steps, at the same point on every rank.
- The plan, the node states and the command instances change only through
  :meth:`Interpreter.install` and :meth:`Interpreter.restore`: a graph step
  runs its children from a table built once per plan version (each child's
  node, state, command and watched counter), and falls back to looking
  every child up by name for the rest of a step in which the plan changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from deepleaps.compiler.plan import Kind, OnError, Plan, PlanNode
from deepleaps.compiler.registry import REGISTRY, Registry
from deepleaps.lang.diagnostics import describe
from deepleaps.runtime.command import Command
from deepleaps.runtime.context import Context, has_variables

log = logging.getLogger("deepleaps.run")

SafePointHook = Callable[["Interpreter", PlanNode], None]


class RunStopped(Exception):
    """Raised at a safe point after :meth:`Interpreter.request_stop`; ends the run cleanly."""


class NodeFailed(Exception):
    """A command raised; carries the node path. Stops the run (``on_error: stop``)."""

    def __init__(self, path: str, error: BaseException):
        self.path = path
        self.error = error
        super().__init__(f"node {path} failed: {describe(error)}")


@attrs.define(slots=True)
class NodeState:
    """Counters and runtime state of one node; survives patches that leave the node alone."""

    step: int = 0
    total_step: int = 0
    epoch: int = 0
    finished: bool = False
    #: The watched node's total_step (or epoch) when this node last ran (run_cycle).
    last_cycle: int | None = None

    def counters(self) -> dict[str, int]:
        return {"step": self.step, "total_step": self.total_step, "epoch": self.epoch}


#: The counter whose change says a watched counter moved: a ``step`` resets
#: with each activation, the ``total_step`` of its node never does.
_MOVES = {"step": "total_step", "total_step": "total_step", "epoch": "epoch"}


def _cycle_due(watched: NodeState, counter: str, every: int, state: NodeState) -> bool:
    """Whether a node with ``run_cycle: X.counter:every`` runs now (X's state is ``watched``)."""
    value = getattr(watched, counter)
    if value <= 0 or value % every:
        return False
    mark = getattr(watched, _MOVES[counter])
    if mark == state.last_cycle:
        return False
    state.last_cycle = mark
    return True


class _StepTable:
    """One step of a graph, resolved against one plan version.

    ``entries`` holds, per child in run order, ``(index, name, node, state,
    command, dynamic, watched, counter, every)``: ``command`` is None for a
    child that goes through :meth:`Interpreter._run_child` (graphs, leaves
    with ``repeat`` other than 1, anything unusual); ``watched`` is the state
    whose ``counter`` a ``run_cycle`` of ``every`` watches (None: no cycle).
    ``starts`` says where the steps of inlined graphs begin (see :func:`_inlined_starts`).
    """

    __slots__ = ("entries", "node", "order", "starts", "version")

    def __init__(self, interpreter: Interpreter, node: PlanNode, order: tuple[str, ...]):
        self.version = interpreter._version
        self.node = node
        self.order = order
        nodes, states, commands = interpreter.plan.nodes, interpreter.states, interpreter.commands
        entries: list[tuple] = []
        for index, name in enumerate(order):
            child = nodes.get(name)
            cycle = child.run_cycle if child is not None else None
            fast = (
                child is not None
                and child.kind is Kind.LEAF
                and (child.repeat == 1 or child.repeat < 0)  # one run per step
                and name in states
                and name in commands
                and (cycle is None or cycle.node in states)
            )
            if not fast:
                entries.append((index, name, child, None, None, False, None, "", 0))
                continue
            watched = states[cycle.node] if cycle is not None else None
            counter, every = (cycle.counter, cycle.every) if cycle is not None else ("", 0)
            dynamic = name in interpreter._dynamic
            entries.append((index, name, child, states[name], commands[name], dynamic, watched, counter, every))
        self.entries = tuple(entries)
        self.starts = _inlined_starts(interpreter, node, order)


def _inlined_starts(interpreter: Interpreter, node: PlanNode, order: tuple[str, ...]) -> dict[int, tuple]:
    """Where in ``order`` each graph the flatten pass inlined into ``node`` starts its step:
    index -> ``(graph, its state, its children's states)`` for each, outermost first."""
    plan, states = interpreter.plan, interpreter.states
    starts: dict[int, list] = {}
    begun: set[str] = set()
    for index, name in enumerate(order):
        chain = []
        graph = node.inlined_from.get(name)
        while graph is not None and graph != node.name and graph not in begun:
            chain.append(graph)
            graph = plan.nodes[graph].parent
        for graph in reversed(chain):
            begun.add(graph)
            inlined = plan.nodes[graph]
            children = tuple(states[child] for child in inlined.children)
            starts.setdefault(index, []).append((inlined, states[graph], children))
    return {index: tuple(entries) for index, entries in starts.items()}


class Interpreter:
    def __init__(
        self,
        plan: Plan,
        *,
        registry: Registry | None = None,
        variables: Mapping[str, Any] | None = None,
    ):
        self.registry = registry or REGISTRY
        #: Bumped by every change of the plan, the node states or the command instances.
        self._version = 0
        #: Graph name -> what one step of it runs; see :meth:`_step_table`.
        self._tables: dict[str, _StepTable] = {}
        self.plan = plan
        self.states: dict[str, NodeState] = {}
        self.commands: dict[str, Command] = {}
        self.context = Context(self, variables)
        self._hooks: list[SafePointHook] = []
        self._stop_requested = False
        self._dynamic: set[str] = set()  # nodes whose arguments hold variables
        self._stack: list[str] = []  # the nodes under way, root first
        self._resume: list[str] = []
        self._resume_hooks: list[Callable[[Interpreter], None]] = []
        #: Told of a node with ``on_error: remove`` that failed (it no longer runs): the
        #: owner of the program removes it at the next safe point.
        self.on_remove: Callable[[PlanNode, Exception], None] | None = None
        #: Further parts of a checkpoint, by key: each callable returns what to keep.
        self.checkpoint_parts: dict[str, Callable[[], Any]] = {}
        self.install(plan)

    # ---- plan changes ---------------------------------------------------------

    @property
    def plan(self) -> Plan:
        return self._plan

    @plan.setter
    def plan(self, plan: Plan) -> None:
        self._plan = plan
        self._version += 1
        self._tables.clear()

    def install(self, plan: Plan, rebuild: Iterable[str] = ()) -> None:
        """Swap in ``plan``. Nodes that keep their name keep their counters and
        their command instance unless listed in ``rebuild`` or their command
        or arguments changed. Call only at a safe point (or before running).

        All or nothing: if a command cannot be built, nothing changes.
        """
        self.install_built(plan, self.build(plan, rebuild))

    def build(
        self, plan: Plan, rebuild: Iterable[str] = (), changed: Iterable[str] | None = None
    ) -> dict[str, Command]:
        """The command instances that installing ``plan`` needs anew (see :meth:`install`),
        built without changing anything: what can fail when a plan changes fails here.
        ``changed``: the only nodes in which ``plan`` differs from the running plan
        (default: any), so that a change costs in proportion to it."""
        rebuild = set(rebuild)
        old = self.plan
        built = {}
        names = plan.nodes if changed is None else {*changed, *rebuild}
        for name in names:
            node = plan.nodes.get(name)
            if node is None:
                continue
            previous = old.nodes.get(name) if old is not plan else None
            if (
                name in rebuild
                or name not in self.commands
                or (previous is not None and (previous.command, previous.args) != (node.command, node.args))
            ):
                built[name] = self._build(node)
        return built

    def install_built(self, plan: Plan, built: Mapping[str, Command], changed: Iterable[str] | None = None) -> None:
        """Swap in ``plan`` with the commands :meth:`build` made for it; cannot fail.
        ``changed`` as for :meth:`build` (with the names :meth:`build` was given)."""
        names = list(self.states) if changed is None else {*changed, *built}
        for name in names:
            if name not in plan.nodes:
                self.states.pop(name, None)
                self.commands.pop(name, None)
                self._dynamic.discard(name)
        for name in plan.nodes if changed is None else names:
            node = plan.nodes.get(name)
            if node is None:
                continue
            self.states.setdefault(name, NodeState())
            if name in built:
                self.commands[name] = built[name]
            else:
                self.commands[name].node = node
            if has_variables(dict(node.args)):
                self._dynamic.add(name)
            else:
                self._dynamic.discard(name)
        self.plan = plan  # a new version, even for the same plan: commands may have been rebuilt

    def _build(self, node: PlanNode) -> Command:
        spec = self.registry.get(node.command)
        if spec is None:
            raise LookupError(f"command '{node.command}' of node '{node.name}' is not registered")
        args, extra = self._arguments(spec, node.args, resolve=False)
        return spec.cls(node, args, extra)

    def _arguments(self, spec, raw: Mapping[str, Any], resolve: bool):
        values = self.context.resolve(dict(raw)) if resolve else dict(raw)
        fields = spec.fields
        known = {key: value for key, value in values.items() if key in fields}
        extra = {key: value for key, value in values.items() if key not in fields}
        if not resolve and has_variables(known):
            return None, extra  # built when the node runs, with the variables' values
        return spec.args(**known), extra

    def position(self) -> list[str]:
        """The nodes under way, from the root to the one running now."""
        return list(self._stack)

    def restore(self, states: Mapping[str, Mapping[str, Any]], position: Iterable[str]) -> None:
        """Take counters from a checkpoint and resume at ``position`` on the next :meth:`run`."""
        for name, saved in states.items():
            if name in self.states:
                self.states[name] = NodeState(**saved)
        self._version += 1
        self._resume = list(position)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every node's state, as plain data for a checkpoint."""
        return {name: attrs.asdict(state) for name, state in self.states.items()}

    def add_resume_hook(self, hook: Callable[[Interpreter], None]) -> None:
        """``hook(interpreter)`` runs where a restored run reaches its checkpoint's position."""
        self._resume_hooks.append(hook)

    def add_safe_point_hook(self, hook: SafePointHook) -> None:
        self._hooks.append(hook)

    def remove_safe_point_hook(self, hook: SafePointHook) -> None:
        self._hooks.remove(hook)

    def request_stop(self) -> None:
        """Ask the run to end at the next safe point (thread-safe: a flag)."""
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    # ---- running --------------------------------------------------------------

    def run(self) -> None:
        """Run the plan from its root until it ends or is stopped.

        Raises:
            NodeFailed: a node with ``on_error: stop`` raised.
        """
        try:
            self._activate(self.plan[self.plan.root])
        except RunStopped:
            log.info("run stopped")

    def safe_point(self, node: PlanNode) -> None:
        for hook in self._hooks:
            hook(self, node)
        if self._stop_requested:
            raise RunStopped()

    def _activate(self, node: PlanNode) -> None:
        name = node.name
        self._stack.append(name)
        try:
            if node.kind is Kind.LEAF:
                self._run_leaf(node)
            else:
                self._run_graph(node)
        finally:
            self._stack.pop()

    def _prepare(self, node: PlanNode) -> Command:
        command = self.commands[node.name]
        self.context.node = node
        if node.name in self._dynamic:
            self._resolve_arguments(command, node)
        return command

    def _resolve_arguments(self, command: Command, node: PlanNode) -> None:
        """Arguments that hold variables take their values when the node runs."""
        command.args, command.extra = self._arguments(self.registry.get(node.command), node.args, resolve=True)

    def _run_leaf(self, node: PlanNode) -> None:
        command = self._prepare(node)
        state = self.states[node.name]
        for _ in range(node.repeat if node.repeat >= 0 else 1):
            state.step += 1
            state.total_step += 1
            command.run(self.context)

    def _run_graph(self, node: PlanNode) -> None:
        name = node.name
        state = self.states[name]
        command = self._prepare(node)
        ctx = self.context
        resuming = bool(self._resume) and self._resume[0] == name
        if resuming:
            self._resume.pop(0)
        else:
            for child in node.children:
                self.states[child].step = 0
            if node.kind is Kind.LOADER:
                state.epoch += 1
            state.step = 0
        outer_sample = ctx.sample  # a loader's batches are its children's; its siblings keep theirs
        command.start(ctx)
        if resuming and node.kind is Kind.LOADER:
            # The checkpoint was written inside this epoch: fetch again the batches it had
            # delivered (the command restored the random state its epoch started with).
            for _ in range(state.step):
                if not command.next_step(ctx):
                    break
        hooks = self._hooks
        own_safe_point = type(self).safe_point is not Interpreter.safe_point or "safe_point" in vars(self)
        seen = -1  # the plan version ``node`` was looked up in
        table = None
        current: PlanNode | None = node  # None once a patch removed it
        try:
            while resuming or node.repeat < 0 or state.step < node.repeat:
                if hooks or self._stop_requested or own_safe_point:
                    self.safe_point(node)
                if self._version != seen:
                    seen = self._version
                    current = self.plan.nodes.get(name)
                    if current is None:
                        return  # removed by a patch at this safe point
                    node = current
                ctx.node = node
                if resuming:
                    resuming = False
                    if self._resume_step(node):
                        continue
                if not command.next_step(ctx):
                    break
                state.step += 1
                state.total_step += 1
                if table is None or table.version != self._version or table.node is not node:
                    table = self._step_table(node)
                self._run_step(node, table)
        finally:
            ctx.node = current
            command.end(ctx)
            if command.kind is Kind.LOADER:
                ctx.sample = outer_sample

    def _step_table(self, node: PlanNode) -> _StepTable:
        """What one step of graph ``node`` runs, for the current plan version (cached)."""
        cached = self._tables.get(node.name)
        if cached is not None and cached.version == self._version and cached.node is node:
            return cached
        order = (*node.prologue, *(self.plan.run_order(node.name) if node.schedule is None else node.schedule))
        table = _StepTable(self, node, order)
        self._tables[node.name] = table
        return table

    def _run_step(self, node: PlanNode, table: _StepTable) -> None:
        """Run the children of one step of graph ``node``: prologue, schedule, inlined graphs' steps.

        Does what :meth:`_run_child` on each child does, from the
        step table; once the plan changes, the rest of the step goes through :meth:`_run_child`.
        """
        version = self._version
        starts = table.starts
        ctx = self.context
        stack = self._stack
        for index, name, child, state, command, dynamic, watched, counter, every in table.entries:
            if starts and index in starts:
                self._begin_inlined(starts[index])
                if self._version != version:  # a patch at the inlined graph's safe point
                    self._run_rest(table, index)
                    return
            if command is None:
                self._run_child(name)
            elif not state.finished:
                if watched is not None and not _cycle_due(watched, counter, every, state):
                    continue
                try:
                    stack.append(name)
                    try:
                        ctx.node = child
                        if dynamic:
                            self._resolve_arguments(command, child)
                        state.step += 1
                        state.total_step += 1
                        command.run(ctx)
                    finally:
                        stack.pop()
                except (RunStopped, NodeFailed):
                    raise
                except Exception as error:
                    self._failed(child, error)
                if child.finish:
                    state.finished = True
            if self._version != version:  # the plan changed: look the rest up by name
                self._run_rest(table, index + 1, begin=True)
                return

    def _begin_inlined(self, starts: tuple) -> None:
        """An inlined graph's step begins: its children's step counters reset, its safe
        point, its own counters — what :meth:`_run_graph` would have done."""
        for graph, state, children in starts:
            for child in children:
                child.step = 0
            if self._hooks or self._stop_requested:
                self._stack.append(graph.name)  # a checkpoint written here resumes here
                try:
                    self.safe_point(graph)
                finally:
                    self._stack.pop()
            state.step = 1
            state.total_step += 1

    def _run_rest(self, table: _StepTable, first: int, begin: bool = False) -> None:
        """Run ``table``'s children from index ``first`` on by name, after a plan change."""
        for index in range(first, len(table.order)):
            if begin and index in table.starts:
                self._begin_inlined(tuple(entry for entry in table.starts[index] if entry[0].name in self.plan))
            begin = True
            self._run_child(table.order[index])

    def _resume_step(self, node: PlanNode) -> bool:
        """Finish the step a checkpoint was written in (see the module docstring).

        False when it was written at ``node``'s own safe point: no step was under
        way, so the caller goes on with the next one.
        """
        target = self._resume[0] if self._resume else None
        order = (*node.prologue, *self.plan.run_order(node.name))
        if target is None:
            self._rerun_setup(order)
            self._after_resume()
            return False
        inlined = self._inlined_start(node, target)
        if inlined is not None:  # written at the safe point of a graph inlined into this one
            table, index, begin = inlined
            self._resume.pop(0)
            self._rerun_setup(order[:index])
            self._after_resume()
            self._begin_inlined(begin)
            self._run_rest(table, index)
            return True
        if target not in order:
            raise LookupError(f"cannot resume: '{target}' is not a child of '{node.name}' in this program")
        self._rerun_setup(order[: order.index(target)])
        if self.plan[target].kind.has_children:
            self._run_child(target)
        else:
            self._resume.pop(0)  # the node that wrote the checkpoint
            self._after_resume()
        for child in order[order.index(target) + 1 :]:
            self._run_child(child)
        return True

    def _rerun_setup(self, children: Iterable[str]) -> None:
        """One-shot setup (``finish``) among ``children`` runs again: a resumed run rebuilds what it made."""
        for child in children:
            if self.plan[child].finish and self.states[child].finished:
                self.states[child].finished = False
                self._run_child(child)

    def _inlined_start(self, node: PlanNode, graph: str) -> tuple[_StepTable, int, tuple] | None:
        """Where in ``node``'s step the inlined ``graph`` begins: its step table, the index and
        the inlined graphs to begin there, ``graph`` first (None if ``graph`` is not inlined here)."""
        table = self._step_table(node)
        for index, entries in table.starts.items():
            names = [entry[0].name for entry in entries]
            if graph in names:
                return table, index, entries[names.index(graph) :]
        return None

    def _after_resume(self) -> None:
        """Hook for the session: the point where the checkpoint was written is reached again."""
        for hook in self._resume_hooks:
            hook(self)

    def _run_child(self, name: str) -> None:
        node = self.plan.nodes.get(name)
        if node is None:
            return  # removed while its parent's step was under way
        state = self.states[name]
        if state.finished:
            return
        cycle = node.run_cycle
        if cycle is not None and not _cycle_due(self.states[cycle.node], cycle.counter, cycle.every, state):
            return
        try:
            self._activate(node)
        except (RunStopped, NodeFailed):
            raise
        except Exception as error:
            self._failed(node, error)
        if node.finish:
            state.finished = True

    def _failed(self, node: PlanNode, error: Exception) -> None:
        path = self.plan.path(node.name)
        if node.on_error is OnError.STOP:
            raise NodeFailed(path, error) from error
        log.warning("node %s failed: %s (on_error: %s)", path, describe(error), node.on_error.value)
        if node.on_error is OnError.REMOVE:
            # It runs no more from now on; the program changes only through whoever owns it.
            self.states[node.name].finished = True
            if self.on_remove is not None:
                self.on_remove(node, error)
