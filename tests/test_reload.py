"""Hot reload of a model's module (docs/reload.md): rebuilt, old weights kept, optimizer goes on."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

import deepleaps.runtime.commands  # noqa: F401  (registers the built-in commands)
from deepleaps.compiler import REGISTRY, compile_source
from deepleaps.control.engine import Controller
from deepleaps.control.journal import Journal, read_journal
from deepleaps.control.reload import load_recorded
from deepleaps.lang import ProgramError
from deepleaps.runtime import Interpreter
from deepleaps.train.container import TrainerContainer, rebuilt_model

BEFORE = """
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.body(x).relu())
"""

AFTER = """
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.extra = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.extra(self.body(x).relu()).relu())
"""


@pytest.fixture
def model_module(tmp_path, monkeypatch):
    name = "reload_subject_net"
    (tmp_path / f"{name}.py").write_text(BEFORE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / f"{name}.py", name
    sys.modules.pop(name, None)


def test_a_reloaded_model_keeps_its_weights_and_the_optimizer_carries_on(model_module):
    path, name = model_module
    container = TrainerContainer(
        {"seed": 0, "device": "cpu", "model": f"{name}.Net", "optimizer": {"name": "Adam", "lr": 0.01}},
        root=path.parent,  # the workspace whose code the model is
    )
    container.sample = (torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 1]))
    container.train_step()
    body_before = container.model.body.weight.detach().clone()
    moment_before = container.optimizer.state[container.model.body.weight]["exp_avg"].clone()

    path.write_text(AFTER)
    importlib.reload(sys.modules[name])
    swap = rebuilt_model(container)
    assert container.model is not swap.model and not hasattr(container.model, "extra")  # nothing live changed yet
    swap.install(container)

    assert swap.report == {
        "missing": ["extra.bias", "extra.weight"],
        "unexpected": [],
        "mismatched": ["head.bias", "head.weight"],
    }
    model = container.model
    assert type(model).__module__ == name and hasattr(model, "extra")
    assert torch.equal(model.body.weight, body_before)
    assert torch.equal(container.optimizer.state[model.body.weight]["exp_avg"], moment_before)
    optimised = {id(p) for group in container.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in model.parameters()}

    container.sample = (torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 2]))
    container.train_step()  # the new model trains, through the same optimizer
    assert not torch.equal(model.body.weight, body_before)
    assert container.optimizer.state[model.extra.weight]["step"] == 1


def test_frozen_parameters_and_training_modes_carry_over(model_module):
    path, name = model_module
    container = TrainerContainer(
        {"seed": 0, "device": "cpu", "model": f"{name}.Net", "optimizer": {"name": "SGD", "lr": 0.1}},
        root=path.parent,  # the workspace whose code the model is
    )
    container.model.body.weight.requires_grad_(False)
    container.model.body.eval()
    path.write_text(AFTER)
    importlib.reload(sys.modules[name])
    swap = rebuilt_model(container)
    swap.install(container)
    assert not container.model.body.weight.requires_grad and container.model.body.bias.requires_grad
    assert not container.model.body.training and container.model.training and container.model.extra.training


# ---- all or nothing, in process ----------------------------------------------------------------

COMMAND = """
import attrs

from deepleaps.compiler import Kind
from deepleaps.runtime import Command, command


def helper():
    return "{version}"


@command
class ReloadSubjectEcho(Command):
    name = "ReloadSubjectEcho"
    kind = Kind.LEAF

    @attrs.frozen
    class Args:
        prefix: str = "echo"

    def run(self, ctx):
        ctx.variables.setdefault("echoed", []).append(f"{{self.args.prefix}} {{helper()}}")
"""


@pytest.fixture
def echo_run(tmp_path, monkeypatch):
    """A controller over ``$root( *ReloadSubjectEcho )``, whose class a module in ``tmp_path`` defines."""
    name = "reload_subject_echo"
    path = tmp_path / f"{name}.py"
    path.write_text(COMMAND.format(version="V1"))
    monkeypatch.syspath_prepend(str(tmp_path))
    REGISTRY.import_module(name)
    compiled = compile_source("$root( *ReloadSubjectEcho )", registry=REGISTRY)
    interpreter = Interpreter(compiled.plan, registry=REGISTRY)
    controller = Controller(
        interpreter,
        compiled.source,
        registry=REGISTRY,
        journal=Journal(tmp_path / "journal.jsonl"),
        workspace=tmp_path,  # the module's workspace
    )
    root = interpreter.plan.nodes[interpreter.plan.root]

    def send(verb: str, payload: str = "") -> dict:
        future = controller.request(verb, payload)
        controller.on_safe_point(interpreter, root)
        return future.result().to_json()

    def echo() -> str:
        interpreter.commands["ReloadSubjectEcho"].run(interpreter.context)
        return interpreter.context.variables["echoed"][-1]

    yield path, name, send, echo, controller
    sys.modules.pop(name, None)


def test_a_module_that_redefines_a_helper_then_raises_changes_nothing(echo_run):
    path, name, send, echo, controller = echo_run
    module, spec = sys.modules[name], REGISTRY.get("ReloadSubjectEcho")
    path.write_text(COMMAND.format(version="V2-PARTIAL") + '\nraise RuntimeError("half way")\n')
    reply = send("RELOAD_MODULE", name)
    assert not reply["ok"]
    assert reply["errors"][0]["file"] == str(path) and reply["line"] == COMMAND.count("\n") + 2, reply
    assert "RuntimeError: half way" in reply["message"] and "the running code is unchanged" in reply["message"]
    assert sys.modules[name] is module and REGISTRY.get("ReloadSubjectEcho") == spec
    assert echo() == "echo V1"
    assert controller.history == [] and controller.journal is not None
    assert not (path.parent / "journal.jsonl").read_text()


def test_a_new_required_argument_is_refused_before_anything_changes(echo_run):
    path, name, send, echo, _ = echo_run
    path.write_text(
        COMMAND.format(version="V2").replace('prefix: str = "echo"', 'needed: str\n        prefix: str = "echo"')
    )
    reply = send("RELOAD_MODULE", name)
    assert not reply["ok"]
    assert "ReloadSubjectEcho (node 'ReloadSubjectEcho') needs argument 'needed'" in reply["message"]
    assert echo() == "echo V1"


def test_a_reload_takes_effect_and_undo_puts_the_old_module_back(echo_run):
    path, name, send, echo, controller = echo_run
    old = sys.modules[name]
    path.write_text(COMMAND.format(version="V2"))
    reloaded = send("RELOAD_MODULE", name)
    assert reloaded["ok"] and reloaded["message"] == f"reloaded {name}; rebuilt ReloadSubjectEcho", reloaded
    assert echo() == "echo V2" and sys.modules[name] is not old
    entry = read_journal(controller.journal.path)[-1]
    assert entry["module"]["source"] == COMMAND.format(version="V2")
    assert entry["module"]["sha256"] == reloaded["data"]["sha256"]

    undone = send("UNDO")
    assert undone["ok"] and undone["message"].startswith(f"{name} as it was before patch {reloaded['patch_id']}")
    assert echo() == "echo V1" and sys.modules[name] is old
    assert send("UNDO")["message"] == "nothing to undo"


def test_a_resumed_run_executes_the_recorded_text_not_the_file(echo_run):
    path, name, send, _, controller = echo_run
    path.write_text(COMMAND.format(version="V2"))
    assert send("RELOAD_MODULE", name)["ok"]
    saved = controller.saved()
    assert saved["code"][name]["source"] == COMMAND.format(version="V2")
    path.write_text(COMMAND.format(version="V3"))  # edited after the checkpoint
    sys.modules.pop(name)

    load_recorded(saved["code"], REGISTRY)

    assert sys.modules[name].helper() == "V2"
    assert REGISTRY.get("ReloadSubjectEcho").cls is sys.modules[name].ReloadSubjectEcho
    tampered = {name: {**saved["code"][name], "source": COMMAND.format(version="V4")}}
    with pytest.raises(ProgramError, match="does not match its sha256"):
        load_recorded(tampered, REGISTRY)
