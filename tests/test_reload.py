"""Hot reload of a model's module (docs/design.md §7): rebuilt, old weights kept, optimizer goes on."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from deepleaps.train.container import TrainerContainer, rebuild_model

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
    report = rebuild_model(container)

    assert report == {
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
