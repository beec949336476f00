"""What ``SET`` may change while a training runs, and the values it takes (docs/control.md#set).

A live change skips every check a configuration goes through when the run
starts, so each one is checked here instead, before it is journaled: a value
that fails would otherwise surface as an exception in the next step, or as
a training that diverges without a word.

- The optimizer's hyperparameters take the values torch's optimizers accept
  when they are built (the checks of their constructors, :data:`HYPERPARAMETERS`);
  one this module does not know takes a value of the type it holds.
- The trainer container's attributes: only those its class declares in
  ``settable``, a mapping of dotted paths to :class:`Check` values.
- The model: never; its code changes with ``RELOAD_MODULE``.

Every refusal says what would widen it, or why nothing does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import torch

from deepleaps.lang.diagnostics import Diagnostic, ProgramError, did_you_mean

if TYPE_CHECKING:
    from deepleaps.train.container import TrainerContainer

#: How much of a refused value's text a refusal shows.
SHOWN = 80


@attrs.frozen
class Check:
    """The values a setting takes: ``what`` names them in a refusal (``a number >= 0``);
    ``convert`` returns the value to store and raises ValueError, TypeError or
    OverflowError for any other. ``pair``: it takes a list of two, and replaces a pair."""

    what: str
    convert: Callable[[Any], Any]
    pair: bool = False


def _bounds(at_least: float | None, above: float | None, at_most: float | None, below: float | None) -> str:
    """`` >= 0``, `` in [0, 1)``, … as a refusal shows a range."""
    low, high = (at_least, "[") if above is None else (above, "("), (at_most, "]") if below is None else (below, ")")
    if low[0] is not None and high[0] is not None:
        return f" in {low[1]}{low[0]:g}, {high[0]:g}{high[1]}"
    if low[0] is not None:
        return f" {'>=' if low[1] == '[' else '>'} {low[0]:g}"
    if high[0] is not None:
        return f" {'<=' if high[1] == ']' else '<'} {high[0]:g}"
    return ""


def _real(value: Any) -> float:
    """A finite int or float, as a float. A boolean is not a number here, though Python's
    ``bool`` is an ``int``: ``true`` for a learning rate is a mistake, not 1.0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(value)
    result = float(value)  # OverflowError for an int beyond a float's range
    if not math.isfinite(result):
        raise ValueError(value)
    return result


def number(
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
) -> Check:
    """A finite number in a range (an int is taken as a float), stored as a float."""

    def convert(value: Any) -> float:
        result = _real(value)
        if (
            (at_least is not None and result < at_least)
            or (above is not None and result <= above)
            or (at_most is not None and result > at_most)
            or (below is not None and result >= below)
        ):
            raise ValueError(value)
        return result

    return Check(f"a number{_bounds(at_least, above, at_most, below)}", convert)


def integer(*, at_least: int | None = None, at_most: int | None = None) -> Check:
    """An int in a range (a float, even ``2.0``, is not one)."""

    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(value)
        if (at_least is not None and value < at_least) or (at_most is not None and value > at_most):
            raise ValueError(value)
        return value

    return Check(f"an integer{_bounds(at_least, None, at_most, None)}", convert)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(value)
    return value


BOOLEAN = Check("true or false", _boolean)


def pair(
    *,
    what: str | None = None,
    where: Callable[[float, float], bool] | None = None,
    at_least: float | None = None,
    below: float | None = None,
) -> Check:
    """A list of two numbers, each in a range, together as ``where`` says; stored as a tuple."""
    element = number(at_least=at_least, below=below)

    def convert(value: Any) -> tuple[float, float]:
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise TypeError(value)
        first, second = element.convert(value[0]), element.convert(value[1])
        if where is not None and not where(first, second):
            raise ValueError(value)
        return first, second

    return Check(what or f"a list of two numbers{_bounds(at_least, None, None, below)}", convert, pair=True)


_NON_NEGATIVE = number(at_least=0)

#: The hyperparameters of torch's optimizers and the values their constructors accept
#: (``torch.optim.SGD``, ``Adam``, ``AdamW``, ``RMSprop``, ``Adagrad``, ``Adadelta``,
#: ``NAdam``, ``RAdam``, ``Rprop``, ``Adafactor`` … check these in ``__init__``).
HYPERPARAMETERS: Mapping[str, Check] = {
    "lr": _NON_NEGATIVE,
    "momentum": _NON_NEGATIVE,
    "dampening": number(),
    "weight_decay": _NON_NEGATIVE,
    "eps": _NON_NEGATIVE,
    "alpha": _NON_NEGATIVE,
    "lr_decay": _NON_NEGATIVE,
    "initial_accumulator_value": _NON_NEGATIVE,
    "momentum_decay": _NON_NEGATIVE,
    "rho": number(at_least=0, at_most=1),
    "d": number(at_least=1),
    "beta2_decay": number(at_most=0),
    "betas": pair(at_least=0, below=1),
    "etas": pair(
        what="a list of two numbers [etaminus, etaplus] with 0 < etaminus < 1 < etaplus",
        where=lambda minus, plus: 0 < minus < 1 < plus,
    ),
    "step_sizes": pair(),
    **dict.fromkeys(("nesterov", "amsgrad", "maximize", "centered", "decoupled_weight_decay"), BOOLEAN),
}

#: Chosen when an optimizer is built, which checks them against its parameters (their
#: devices, their types) and picks its implementation by them.
BUILT_WITH = ("foreach", "fused", "capturable", "differentiable")


def _refuse(message: str, hint: str | None = None) -> ProgramError:
    return ProgramError([Diagnostic(message, hint=hint)])


def _shown(text: str) -> str:
    text = text.strip()
    return text if len(text) <= SHOWN else text[:SHOWN] + "…"


def _like(current: Any) -> Check | None:
    """The check of a hyperparameter :data:`HYPERPARAMETERS` does not know: a value of the type it holds."""
    if isinstance(current, bool):
        return BOOLEAN
    if isinstance(current, int):
        return integer()
    if isinstance(current, float):
        return number()
    return None


def hyperparameter(
    optimizer: torch.optim.Optimizer, groups: Sequence[Mapping[str, Any]], key: str, value: Any, text: str
) -> Any:
    """The value ``SET optimizer.KEY`` stores in ``groups`` (param groups of ``optimizer``
    that hold ``key``), given as ``value`` (``text`` in the request).

    Raises:
        ProgramError: the value is not one the optimizer takes for ``key``.
    """
    kind = type(optimizer).__name__
    configure = f"set it in the trainer configuration (optimizer: {{name: {kind}, {key}: …}}) for a new run"
    if key in BUILT_WITH:
        raise _refuse(f"optimizer.{key} is chosen when the optimizer is built; {configure}")
    current = groups[0][key]
    check = HYPERPARAMETERS.get(key)
    origin = "as torch.optim checks it"
    if check is None:
        check, origin = _like(current), f"like the {_shown(repr(current))} it holds"
    if check is None or check.pair != isinstance(current, list | tuple):
        raise _refuse(
            f"optimizer.{key} holds {_shown(repr(current))} ({type(current).__name__}); SET changes numbers, "
            f"pairs of numbers and booleans here; {configure}"
        )
    try:
        new = check.convert(value)
    except (TypeError, ValueError, OverflowError):
        raise _refuse(f"optimizer.{key} takes {check.what} ({origin}), not {_shown(text)}") from None
    if isinstance(optimizer, torch.optim.SGD) and key in ("nesterov", "momentum", "dampening"):
        for group in groups:
            changed = {**group, key: new}
            if changed["nesterov"] and (changed["momentum"] <= 0 or changed["dampening"] != 0):
                raise _refuse(
                    f"optimizer.{key} = {_shown(text)}: Nesterov momentum needs a momentum > 0 and "
                    f"a dampening of 0 (as torch.optim.SGD checks it); set optimizer.nesterov false first"
                )
    return new


def attribute(container: TrainerContainer, path: str, value: Any, text: str) -> tuple[Any, str, Any]:
    """Where ``SET main.PATH`` stores what: the object, its attribute, the checked value.

    Raises:
        ProgramError: the path is under the model, or not declared in the container
            class's ``settable``, or not there, or the value is not one its check takes.
    """
    if path.split(".")[0] == "model":
        raise _refuse(
            f"SET does not change the model (main.{path}): edit its code and send RELOAD_MODULE "
            f"with its module; the model is rebuilt and keeps its weights"
        )
    declared = type(container).settable
    cls = type(container).__name__
    check = declared.get(path)
    if check is None:
        names = ", ".join(declared) or "none"
        raise _refuse(
            f"main.{path} is not a setting of {cls}: SET changes only what the container class declares "
            f"in its 'settable' (here: {names}); declare '{path}' there to change it",
            hint=did_you_mean(path, declared),
        )
    *parents, last = path.split(".")
    target: Any = container
    for part in parents:
        target = getattr(target, part, None)
    if target is None or not hasattr(target, last):
        raise _refuse(f"main.{path}: the container has no attribute '{path}' (its class declares it settable)")
    try:
        new = check.convert(value)
    except (TypeError, ValueError, OverflowError):
        raise _refuse(f"main.{path} takes {check.what} (as {cls}.settable declares), not {_shown(text)}") from None
    return target, last, new
