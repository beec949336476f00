"""What a program may name: classes, files and modules (deepleaps/workspace/confine.py, docs/security.md).

Each refusal is checked where it is decided — the compiler, with a span and
a caret, and again where the thing is used — and names the setting that
widens the limit.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import deepleaps.train.commands  # noqa: F401  (registers the training commands)
from deepleaps.compiler import compile_source
from deepleaps.lang import ProgramError
from deepleaps.train.checkpoint import CheckpointStore, rng_state, set_rng_state
from deepleaps.train.container import TrainerContainer
from deepleaps.workspace.confine import (
    CLASSES_SETTING,
    MODULES_SETTING,
    PICKLE_SETTING,
    READ_SETTING,
    WRITE_SETTING,
    Confinement,
    check_module,
)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A workspace with a package of its own on sys.path: ``wspkg.models`` defines a model and
    re-exports ``subprocess.Popen``."""
    root = tmp_path / "ws"
    package = root / "wspkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(
        textwrap.dedent(
            """
            from subprocess import Popen
            import torch

            class Tiny(torch.nn.Linear):
                def __init__(self):
                    super().__init__(2, 2)

            def make():
                return Tiny()
            """
        )
    )
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [name for name in sys.modules if name.split(".")[0] == "wspkg"]:
        del sys.modules[name]


# ---- modules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["os", "site", "sys", "subprocess", "json.decoder", "_io", "torch.nn"])
def test_modules_outside_the_workspace_are_refused(workspace, name):
    with pytest.raises(ProgramError, match=f"module '{name}' is not in the workspace; set {MODULES_SETTING}"):
        check_module(name, workspace, False)


def test_a_module_is_decided_without_importing_it_or_its_parents(workspace):
    assert "this" not in sys.modules
    with pytest.raises(ProgramError, match="not in the workspace"):
        check_module("this.x", workspace, False)
    assert "this" not in sys.modules  # `import this` would have printed the Zen of Python
    check_module("wspkg.models", workspace, False)
    assert "wspkg.models" not in sys.modules


def test_a_workspace_module_whose_file_lies_outside_is_refused(workspace, tmp_path):
    outside = tmp_path / "elsewhere.py"
    outside.write_text("")
    (workspace / "wspkg" / "linked.py").symlink_to(outside)
    with pytest.raises(ProgramError, match="not in the workspace"):
        check_module("wspkg.linked", workspace, False)


def test_unknown_modules_and_the_setting(workspace):
    with pytest.raises(ProgramError, match=r"no module named 'wspkg\.nothing'"):
        check_module("wspkg.nothing", workspace, False)
    with pytest.raises(ProgramError, match="not a package"):
        check_module("wspkg.models.deeper", workspace, False)
    with pytest.raises(ProgramError, match="not in the workspace"):
        check_module("wspkg", None, False)
    check_module("os", workspace, True)


# ---- classes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "subprocess.Popen",
        "os.system",
        "builtins.eval",
        "torch.load",  # a function of an allowed package, not a class of an allowed namespace
        "torch.nn.functional.relu",
        "torch.utils.data.datapipes.iter.FileOpener",  # reads any file
        "torch.Tensor",
        "torch.nn._reduction.legacy_get_enum",
        "wspkg.models.Popen",  # the workspace's module re-exports it: decided by where it is defined
        "deepleaps.control.server.ControlServer",
    ],
)
def test_classes_outside_the_allowed_namespaces_are_refused(workspace, path):
    confinement = Confinement(workspace)
    with pytest.raises(ProgramError, match=f"class '{path}' is neither.*set {CLASSES_SETTING}"):
        confinement.load_class(path)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("torch.nn.Linear", torch.nn.Linear),
        ("torch.optim.SGD", torch.optim.SGD),
        ("torch.optim.lr_scheduler.StepLR", torch.optim.lr_scheduler.StepLR),
        ("torch.utils.data.TensorDataset", torch.utils.data.TensorDataset),
    ],
)
def test_framework_classes_load(workspace, path, expected):
    assert Confinement(workspace).load_class(path) is expected


def test_workspace_classes_and_factories_load_and_the_setting_widens(workspace):
    confinement = Confinement(workspace)
    assert confinement.load_class("wspkg.models.Tiny").__name__ == "Tiny"
    assert callable(confinement.load_class("wspkg.models.make"))
    assert confinement.load_class("Adam", torch.optim) is torch.optim.Adam
    with pytest.raises(ProgramError, match="is neither"):
        confinement.load_class("load", torch)
    widened = Confinement(workspace, classes=("subprocess",))
    assert widened.load_class("subprocess.Popen") is subprocess.Popen


def test_a_container_builds_only_allowed_classes(workspace, tmp_path):
    marker = tmp_path / "pwned"
    config = {"device": "cpu", "model": {"class": "subprocess.Popen", "args": {"args": ["touch", str(marker)]}}}
    with pytest.raises(ProgramError, match=r"class 'subprocess\.Popen'"):
        TrainerContainer(config, workspace)
    assert not marker.exists()
    built = TrainerContainer({"device": "cpu", "model": "wspkg.models.Tiny"}, workspace)
    assert type(built.model).__name__ == "Tiny"


# ---- files --------------------------------------------------------------------------------------


def test_paths_as_written(tmp_path):
    run_dir = tmp_path / "ws" / "out" / "run-1"
    confinement = Confinement(tmp_path / "ws", runs=tmp_path / "ws" / "out", run_dir=run_dir)
    assert confinement.path_problem("metrics.csv", "write") is None
    assert confinement.path_problem("a/../b.csv", "write") is None
    assert confinement.path_problem(str(run_dir / "x.csv"), "write") is None
    for written in ("../x.csv", "a/../../x.csv", "/tmp/t/victim.txt", str(tmp_path / "ws" / "x.csv")):
        assert WRITE_SETTING in confinement.path_problem(written, "write"), written
    assert confinement.path_problem(str(tmp_path / "ws" / "data.yaml"), "read") is None
    for written in ("../../../../etc/passwd", "/etc/passwd"):
        assert READ_SETTING in confinement.path_problem(written, "read"), written
    widened = Confinement(tmp_path / "ws", run_dir=run_dir, write=[tmp_path / "shared"])
    assert widened.path_problem(str(tmp_path / "shared" / "x.csv"), "write") is None


def test_a_link_out_of_the_run_directory_is_refused_where_it_is_used(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "escape").symlink_to(tmp_path)
    confinement = Confinement(tmp_path / "ws", run_dir=run_dir)
    assert confinement.writable(run_dir / "metrics.csv") == run_dir / "metrics.csv"
    with pytest.raises(ProgramError, match=WRITE_SETTING):
        confinement.writable(run_dir / "escape" / "victim.txt")
    with pytest.raises(ProgramError, match=READ_SETTING):
        confinement.readable("/etc/passwd")


# ---- the compiler ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("program", "message", "caret"),
    [
        (
            '$root( *TrainerContainerLoaderCommand[model={class="subprocess.Popen", args={args=["id"]}}] )',
            "class 'subprocess.Popen' is neither",
            "model={",
        ),
        ('$root( *LogMetricsCommand[file="/tmp/t/victim.txt"] )', "'/tmp/t/victim.txt' is outside the run", "file="),
        ('$root( *LogMetricsCommand[file="../../victim.txt"] )', "is outside the run directory", "file="),
        ('$root( *SaveImageGridCommand[folder="/abs"] )', f"set {WRITE_SETTING}", "folder="),
        ('$root( *ModuleSaveClass[base_path="/abs"] )', f"set {WRITE_SETTING}", "base_path="),
        (
            '$root( *ModuleLoadClass[required=["MODEL"], MODEL={file_name="/tmp/evil.pt"}] )',
            f"set {READ_SETTING}",
            "MODEL=",
        ),
        ('$root( *TrainerContainerLoaderCommand[container="os.system"] )', CLASSES_SETTING, "container="),
        ('$root( *TrainerContainerLoaderCommand[data={train={dataset="/etc/x.yaml"}}] )', READ_SETTING, "data="),
    ],
)
def test_the_compiler_refuses_with_a_span_and_a_caret(tmp_path, program, message, caret):
    with pytest.raises(ProgramError) as raised:
        compile_source(program, "<ADD>")
    (diagnostic,) = raised.value.diagnostics
    assert message in diagnostic.message
    assert diagnostic.span is not None and diagnostic.span.line == 1
    assert program[diagnostic.span.column - 1 :].startswith(caret)
    assert "^" in diagnostic.render()


# ---- checkpoints ----------------------------------------------------------------------------------


class Explosive:
    """Unpickling it runs ``touch``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return subprocess.call, (["touch", str(self.marker)],)


def test_checkpoints_load_without_unpickling_and_keep_their_random_state(tmp_path):
    store = CheckpointStore(tmp_path / "run")
    model = torch.nn.Linear(2, 2)
    state = rng_state()
    ref = store.save({"modules": {"MODEL": model.state_dict()}, "rng": state, "program": "$root()"})
    loaded = CheckpointStore.load(ref)
    assert torch.equal(loaded["modules"]["MODEL"]["weight"], model.weight)
    before = torch.rand(3)
    set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(3), before)


def test_a_pickle_that_runs_code_is_refused_unless_allowed(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"modules": Explosive(marker)}, evil)
    with pytest.raises(ProgramError, match=f"set {PICKLE_SETTING}"):
        CheckpointStore.load(evil)
    assert not marker.exists()
    CheckpointStore.load(evil, allow_pickle=True)
    assert marker.exists()
