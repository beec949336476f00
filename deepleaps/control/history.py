"""The UNDO history: the last :data:`HISTORY` applied changes, each with the program before
and after it (docs/control.md#undo). A checkpoint keeps it as the edit scripts that undo
them, so a resumed run can undo what was changed before the checkpoint was written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from deepleaps.compiler import Plan
from deepleaps.control import editjson, editscript
from deepleaps.lang.diagnostics import Diagnostic, ProgramError

#: How many applied changes UNDO can go back through.
HISTORY = 100


@attrs.frozen
class Applied:
    """One applied change, kept for UNDO: a plan change, or a module reload (the program the
    same before and after; ``reloaded`` is what UNDO loads back, see deepleaps.control.reload)."""

    patch_id: int
    before: Plan
    after: Plan
    #: The nodes that may differ between ``before`` and ``after`` (see
    #: :func:`deepleaps.control.editscript.changed`), so that diffs of a large program look at
    #: those only; None: any may.
    changed: frozenset[str] | None = None
    reloaded: Any = None


def forgetting(history: Sequence[Applied], name: str) -> list[Applied]:
    """``history`` as if node ``name`` had never been in its programs: a change that only
    made that node leaves it (the UNDO of a failed node's removal, docs/control.md#undo)."""
    kept = []
    for applied in history:
        before, after = (plan.without(name) if name in plan else plan for plan in (applied.before, applied.after))
        if applied.reloaded is not None or editscript.diff(before, after, among=applied.changed):
            kept.append(attrs.evolve(applied, before=before, after=after))
    return kept


def history_to_data(history: Sequence[Applied]) -> list[dict[str, Any]]:
    """The plan changes of ``history`` as data, newest first, each as the edit script that
    undoes it. It ends at the newest module reload: the module object a reload replaced
    cannot be saved, so a resumed run undoes back to that reload and no further."""
    data = []
    for applied in reversed(history):
        if applied.reloaded is not None:
            break
        undo = editjson.script_to_data(editscript.diff(applied.after, applied.before, among=applied.changed))
        data.append({"patch_id": applied.patch_id, "undo": undo})
    return data


def history_from_data(data: Any, program: Plan) -> list[Applied]:
    """The history :func:`history_to_data` wrote, whose newest change made ``program``.

    Raises:
        ProgramError: the data is not such a history.
    """
    malformed = ProgramError([Diagnostic("an UNDO history is a list of patch ids and edit scripts")])
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise malformed
    history = []
    after = program
    for item in data:
        if not isinstance(item.get("patch_id"), int):
            raise malformed
        undo = editjson.script_from_data(item.get("undo"))
        before = editscript.apply(after, undo)
        history.append(Applied(item["patch_id"], before, after, frozenset(editscript.changed(after, undo))))
        after = before
    history.reverse()
    return history[-HISTORY:]
