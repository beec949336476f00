"""Typed SET (docs/control.md#set): a value reaches the optimizer or the container only if it
is one they take, checked before it is journaled; a refusal changes nothing and says what
would widen it. In the test's process (:class:`InProcess`); tests/test_control_live.py sends
the same refusals to a real training."""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

import pytest
import torch
from control_fixtures import InProcess

from deepleaps.train import TrainerContainer
from deepleaps.train.settable import BOOLEAN, integer, number, pair

ADAM = {"name": "Adam", "lr": 0.01}


def hyperparameters(run: InProcess) -> list[dict[str, Any]]:
    return [{k: v for k, v in group.items() if k != "params"} for group in run.container.optimizer.param_groups]


def assert_refused_and_nothing_changed(run: InProcess, payload: str, message: str) -> dict[str, Any]:
    groups, training = copy.deepcopy(hyperparameters(run)), run.container.model.training
    smoothing = run.container.loss.label_smoothing
    reply = run.send("SET", payload)
    assert not reply["ok"], reply
    assert message in reply["message"], reply["message"]
    assert hyperparameters(run) == groups
    assert run.container.model.training == training and run.container.loss.label_smoothing == smoothing
    assert run.journaled() == []
    assert reply["errors"][0]["message"] in reply["message"]
    return reply


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('optimizer.lr "abc"', 'optimizer.lr takes a number >= 0 (as torch.optim checks it), not "abc"'),
        ("optimizer.lr -1", "optimizer.lr takes a number >= 0 (as torch.optim checks it), not -1"),
        ("optimizer.lr true", "optimizer.lr takes a number >= 0 (as torch.optim checks it), not true"),
        ("optimizer.lr $lr", "not $lr"),
        ("optimizer.lr null", "not null"),
        ("optimizer.lr " + "9" * 400, "not 999"),
        ("optimizer.0.lr -0.5", "optimizer.lr takes a number >= 0"),
        ("optimizer.eps -1e-8", "optimizer.eps takes a number >= 0"),
        ("optimizer.weight_decay -0.1", "optimizer.weight_decay takes a number >= 0"),
        ("optimizer.betas [0.9, 1]", "optimizer.betas takes a list of two numbers in [0, 1)"),
        ("optimizer.betas [0.9]", "optimizer.betas takes a list of two numbers in [0, 1)"),
        ("optimizer.betas 0.9", "optimizer.betas takes a list of two numbers in [0, 1)"),
        ('optimizer.betas [0.9, "x"]', "optimizer.betas takes a list of two numbers in [0, 1)"),
        ("optimizer.amsgrad 1", "optimizer.amsgrad takes true or false (as torch.optim checks it), not 1"),
        ('optimizer.maximize "yes"', "optimizer.maximize takes true or false"),
        (
            "optimizer.fused true",
            "optimizer.fused is chosen when the optimizer is built; "
            "set it in the trainer configuration (optimizer: {name: Adam, fused: …}) for a new run",
        ),
        ("optimizer.foreach false", "optimizer.foreach is chosen when the optimizer is built"),
        ("optimizer.params []", "the optimizer has no hyperparameter 'params'"),
        ("optimizer.momentum 0.9", "the optimizer has no hyperparameter 'momentum'"),
        (
            'main.root "/"',
            "main.root is not a setting of TrainerContainer: SET changes only what the container class declares "
            "in its 'settable' (here: loss.label_smoothing); declare 'root' there to change it",
        ),
        ("main.optimizer null", "main.optimizer is not a setting of TrainerContainer"),
        (
            "main.model.head null",
            "SET does not change the model (main.model.head): edit its code and send RELOAD_MODULE with its module; "
            "the model is rebuilt and keeps its weights",
        ),
        ("main.model.training false", "SET does not change the model (main.model.training)"),
        ("container.model.training false", "SET does not change the model"),
        (
            "main.loss.label_smoothing 2",
            "main.loss.label_smoothing takes a number in [0, 1] (as TrainerContainer.settable declares), not 2",
        ),
        ("main.loss.label_smoothing false", "main.loss.label_smoothing takes a number in [0, 1]"),
    ],
)
def test_a_value_the_setting_does_not_take_is_refused_and_nothing_changes(tmp_path, payload, message):
    assert_refused_and_nothing_changed(InProcess(tmp_path, ADAM), payload, message)


def test_a_misspelt_setting_gets_the_declared_one_as_a_hint(tmp_path):
    reply = assert_refused_and_nothing_changed(
        InProcess(tmp_path, ADAM), "main.loss.label_smoothin 0.1", "main.loss.label_smoothin is not a setting"
    )
    assert reply["errors"][0]["text"].endswith("= did you mean 'loss.label_smoothing'?")


@pytest.mark.parametrize(
    ("payload", "key", "stored", "message"),
    [
        ("optimizer.lr 1", "lr", 1.0, "optimizer lr = 1.0 in 1 param group(s)"),
        ("optimizer.lr 0", "lr", 0.0, "optimizer lr = 0.0 in 1 param group(s)"),
        ("optimizer.0.lr 2e-4", "lr", 2e-4, "optimizer lr = 0.0002 in 1 param group(s)"),
        ("optimizer.betas [0.8, 0]", "betas", (0.8, 0.0), "optimizer betas = (0.8, 0.0) in 1 param group(s)"),
        ("optimizer.amsgrad true", "amsgrad", True, "optimizer amsgrad = True in 1 param group(s)"),
        ("optimizer.weight_decay 0.01", "weight_decay", 0.01, "optimizer weight_decay = 0.01 in 1 param group(s)"),
    ],
)
def test_a_value_in_range_is_journaled_and_stored_with_the_type_torch_expects(tmp_path, payload, key, stored, message):
    run = InProcess(tmp_path, ADAM)
    reply = run.send("SET", payload)
    assert reply["ok"] and reply["message"] == message, reply
    value = run.container.optimizer.param_groups[0][key]
    assert value == stored and type(value) is type(stored)
    assert [(entry["verb"], entry["text"]) for entry in run.journaled()] == [("SET", payload)]


def test_the_loss_label_smoothing_that_the_base_container_declares_is_set(tmp_path):
    run = InProcess(tmp_path, ADAM)
    reply = run.send("SET", "main.loss.label_smoothing 0.1")
    assert reply["ok"] and reply["message"] == "loss.label_smoothing = 0.1", reply
    assert run.container.loss.label_smoothing == 0.1
    assert run.send("SET", "container.loss.label_smoothing 1")["ok"]
    assert run.container.loss.label_smoothing == 1.0


class ClippedContainer(TrainerContainer):
    """A workspace's container: a setting of its own besides the base class's."""

    settable: ClassVar = {**TrainerContainer.settable, "clip": number(above=0), "warmup": integer(at_least=0)}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.clip = 1.0
        self.warmup = 10
        self.note = "untouched"


def test_a_container_class_declares_more_settings(tmp_path):
    run = InProcess(tmp_path, ADAM, ClippedContainer)
    assert run.send("SET", "main.clip 0.5")["message"] == "clip = 0.5"
    assert run.send("SET", "main.warmup 3")["message"] == "warmup = 3"
    assert (run.container.clip, run.container.warmup) == (0.5, 3)
    assert run.send("SET", "main.loss.label_smoothing 0.2")["ok"]
    assert len(run.journaled()) == 3
    reply = run.send("SET", "main.clip 0")
    assert reply["message"] == "error: main.clip takes a number > 0 (as ClippedContainer.settable declares), not 0"
    assert "takes an integer >= 0" in run.send("SET", "main.warmup 2.5")["message"]
    refused = run.send("SET", 'main.note "changed"')
    assert "(here: loss.label_smoothing, clip, warmup); declare 'note' there" in refused["message"]
    assert (run.container.clip, run.container.warmup, run.container.note) == (0.5, 3, "untouched")
    assert len(run.journaled()) == 3


def test_a_declared_setting_the_container_lacks_is_refused(tmp_path):
    run = InProcess(tmp_path, ADAM)
    run.container.loss = torch.nn.MSELoss()
    reply = run.send("SET", "main.loss.label_smoothing 0.1")
    assert "the container has no attribute 'loss.label_smoothing' (its class declares it settable)" in reply["message"]
    assert run.journaled() == []


def test_sgd_nesterov_needs_a_momentum_and_no_dampening_as_torch_checks(tmp_path):
    run = InProcess(tmp_path, {"name": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": True})
    for payload in ("optimizer.momentum 0", "optimizer.dampening 0.1"):
        assert_refused_and_nothing_changed(run, payload, "Nesterov momentum needs a momentum > 0 and a dampening of 0")
    assert run.send("SET", "optimizer.nesterov false")["ok"]
    assert run.send("SET", "optimizer.momentum 0")["ok"]
    assert "Nesterov momentum needs" in run.send("SET", "optimizer.nesterov true")["message"]


def test_rprop_etas_keep_their_order_around_one(tmp_path):
    run = InProcess(tmp_path, {"name": "Rprop"})
    assert_refused_and_nothing_changed(run, "optimizer.etas [0.5, 1]", "with 0 < etaminus < 1 < etaplus")
    assert run.send("SET", "optimizer.etas [0.4, 1.5]")["ok"]
    assert run.container.optimizer.param_groups[0]["etas"] == (0.4, 1.5)


def test_a_hyperparameter_torch_does_not_check_takes_the_type_it_holds(tmp_path):
    run = InProcess(tmp_path, {"name": "LBFGS", "lr": 1})
    assert_refused_and_nothing_changed(
        run, "optimizer.max_iter 2.5", "optimizer.max_iter takes an integer (like the 20 it holds), not 2.5"
    )
    assert_refused_and_nothing_changed(
        run,
        'optimizer.line_search_fn "strong_wolfe"',
        "optimizer.line_search_fn holds None (NoneType); SET changes numbers, pairs of numbers and booleans here; "
        "set it in the trainer configuration (optimizer: {name: LBFGS, line_search_fn: …}) for a new run",
    )
    assert run.send("SET", "optimizer.max_iter 3")["ok"]
    assert run.send("SET", "optimizer.tolerance_grad 1")["ok"]
    assert run.container.optimizer.param_groups[0]["tolerance_grad"] == 1.0


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, "1", None, [1], 10**400, -1, 2], ids=repr)
def test_a_number_is_a_finite_int_or_float_in_range(value):
    check = number(at_least=0, at_most=1)
    with pytest.raises((TypeError, ValueError, OverflowError)):
        check.convert(value)


def test_checks_say_what_they_take():
    assert number().what == "a number"
    assert number(above=0).what == "a number > 0"
    assert number(at_most=0).what == "a number <= 0"
    assert number(above=0, below=1).what == "a number in (0, 1)"
    assert integer(at_least=1).what == "an integer >= 1"
    assert pair(at_least=0, below=1).what == "a list of two numbers in [0, 1)"
    assert BOOLEAN.what == "true or false"
    assert number(at_least=0).convert(3) == 3.0 and type(number().convert(3)) is float
    assert pair().convert([1, 2]) == (1.0, 2.0)
    with pytest.raises(TypeError):
        integer().convert(2.0)
