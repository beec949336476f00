"""Facts about a plan that would take a walk over every node, kept while the plan is
alive and derived from its predecessor's in time proportional to a change."""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Mapping

import attrs

from deepleaps.compiler.plan import Plan

#: target name -> the names of the nodes whose ``run_cycle`` watches it
Watchers = Mapping[str, frozenset[str]]
_SUFFIX = re.compile(r"^(.*)_([0-9]+)$")


@attrs.define
class Facts:
    watchers: dict[str, frozenset[str]]
    #: base name -> an index below which every ``NAME_i`` (i ≥ 1) is a node of the plan
    taken_below: dict[str, int] = attrs.Factory(dict)


#: By ``id`` of the plans alive.
_FACTS: dict[int, tuple[weakref.ref[Plan], Facts]] = {}


def facts(plan: Plan, before: Plan | None = None, changed: Iterable[str] = ()) -> Facts:
    """What is known of ``plan``; from ``before``'s, when known, and the ``changed`` names
    (those in which the two plans differ), else from a walk over ``plan``."""
    known = _known(plan)
    if known is not None:
        return known
    previous = _known(before) if before is not None else None
    if previous is not None and before is not None:
        found = Facts(dict(previous.watchers), dict(previous.taken_below))
        for name in changed:
            for version, sign in ((before.nodes.get(name), -1), (plan.nodes.get(name), 1)):
                if version is not None and version.run_cycle is not None:
                    target = version.run_cycle.node
                    names = found.watchers.get(target, frozenset())
                    found.watchers[target] = names | {name} if sign > 0 else names - {name}
            suffix = _SUFFIX.match(name)
            if suffix is not None and name not in plan.nodes:  # a name freed again
                base, index = suffix.group(1), int(suffix.group(2))
                found.taken_below[base] = min(found.taken_below.get(base, 1), max(index, 1))
        found.watchers = {target: names for target, names in found.watchers.items() if names}
    else:
        watching: dict[str, set[str]] = {}
        for node in plan.nodes.values():
            if node.run_cycle is not None:
                watching.setdefault(node.run_cycle.node, set()).add(node.name)
        found = Facts({target: frozenset(names) for target, names in watching.items()})
    key = id(plan)
    _FACTS[key] = (weakref.ref(plan, lambda _: _FACTS.pop(key, None)), found)
    return found


def _known(plan: Plan) -> Facts | None:
    entry = _FACTS.get(id(plan))
    return entry[1] if entry is not None and entry[0]() is plan else None


def taken_below(plan: Plan, base: str) -> int:
    """An index below which every ``base_i`` (i ≥ 1) is a node of ``plan``: where the search
    for a fresh name starts, rather than at 1 (a program may have thousands of ``base_i``)."""
    known = _known(plan) or facts(plan)
    index = known.taken_below.get(base, 1)
    while f"{base}_{index}" in plan.nodes:
        index += 1
    known.taken_below[base] = index
    return index
