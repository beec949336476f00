"""``deepleaps compile``: views, diagnostics and exit codes (0 ok, 1 program errors, 2 usage)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import deepleaps.cli.compile as compile_module
from deepleaps.cli import main
from deepleaps.compiler import REGISTRY
from deepleaps.compiler.passes import PASSES

DATA = Path(__file__).parent / "data"

DEFINITIONS = """\
DEFINE:
  SETUP:
    command: SetCommand
    args: {key: ready, value: true}
    finish: true
  TRAINING_LOADER:
    command: Graph
    repeat: 3
  MODEL_LOAD:
    command: PrintCommand
    args: {content: load}
    finish: true
  TRAINING_BATCH:
    command: IterateCommand
    args: {data: $batches}
  TRAINING_STEP:
    command: PrintCommand
    args: {content: step}
  MODEL_SAVE:
    command: PrintCommand
    args: {content: save}
"""

PROGRAM = "$root( $SETUP -> $TRAINING_LOADER( $MODEL_LOAD -> $TRAINING_BATCH( $TRAINING_STEP ) -> MODEL_SAVE ) )\n"

TREE = """\
root (Graph)
  SETUP (SetCommand) [finish, prologue]
  TRAINING_LOADER (Graph) [repeat=3]
    MODEL_LOAD (PrintCommand) [finish, prologue]
    TRAINING_BATCH (IterateCommand)
      TRAINING_STEP (PrintCommand)
    MODEL_SAVE (PrintCommand)
"""


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A folder (the current directory) with a command file, a .dl program and its definitions."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "defs.yaml").write_text(DEFINITIONS, encoding="utf-8")
    (tmp_path / "train.dl").write_text(PROGRAM, encoding="utf-8")
    (tmp_path / "train.yaml").write_text(f"DEFAULT:\n  - '{PROGRAM.strip()}'\n{DEFINITIONS}", encoding="utf-8")
    return tmp_path


def invoke(*args: str):
    return CliRunner().invoke(main, ["compile", *args])


def dot_program() -> str:
    path = shutil.which("dot")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Graphviz 'dot' is not installed, and CI needs these tests to run")
        pytest.skip("Graphviz 'dot' is not installed")
    return path


def no_traceback(result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# ---- views -------------------------------------------------------------------------------


@pytest.mark.parametrize("file", ["train.yaml", "train.dl"])
def test_tree_is_the_default(workspace, file):
    extra = ["--define", "defs.yaml"] if file.endswith(".dl") else []
    result = invoke(file, *extra)
    assert result.exit_code == 0, result.output
    assert result.stdout == TREE
    assert invoke(file, "--tree", *extra).stdout == TREE


def test_json(workspace):
    result = invoke("train.yaml", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema"] == "deepleaps.plan/1"
    assert [node["name"] for node in data["nodes"]] == [
        "root",
        "SETUP",
        "TRAINING_LOADER",
        "MODEL_LOAD",
        "TRAINING_BATCH",
        "TRAINING_STEP",
        "MODEL_SAVE",
    ]
    assert data["nodes"][4]["args"] == {"data": "$batches"}


def test_dot_and_output_file(workspace):
    result = invoke("train.yaml", "--dot", "-o", "plan.dot")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    text = (workspace / "plan.dot").read_text(encoding="utf-8")
    assert text.startswith("digraph plan {")
    assert 'subgraph "cluster_TRAINING_BATCH" {' in text
    checked = subprocess.run([dot_program(), "-Tsvg"], input=text.encode(), capture_output=True, check=False)
    assert checked.returncode == 0, checked.stderr.decode()


def test_svg_and_png(workspace):
    dot_program()
    result = invoke("train.yaml", "--svg")
    assert result.exit_code == 0, result.output
    assert "<svg" in result.stdout and "cluster_TRAINING_LOADER" in result.stdout
    result = invoke("train.yaml", "--png", "-o", "plan.png")
    assert result.exit_code == 0, result.output
    assert (workspace / "plan.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    result = invoke("train.yaml", "--dot", "--svg", "-o", "plan.svg")
    assert result.exit_code == 0, result.output
    assert (workspace / "plan.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")


def test_explain_lists_the_passes(workspace):
    result = invoke("train.yaml", "--explain")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"passes: {', '.join(PASSES)}\n"
        "round 1, schedule:\n"
        "  root: schedule SETUP, TRAINING_LOADER\n"
        "  TRAINING_LOADER: schedule MODEL_LOAD, TRAINING_BATCH, MODEL_SAVE\n"
        "  TRAINING_BATCH: schedule TRAINING_STEP\n"
        "round 1, prologue:\n"
        "  root: SETUP hoisted into the prologue\n"
        "  TRAINING_LOADER: MODEL_LOAD hoisted into the prologue\n"
        "\n" + TREE
    )


def test_no_pass_switches_a_pass_off(workspace):
    result = invoke("train.yaml", "--explain", "--no-pass", "schedule")
    assert result.exit_code == 0, result.output
    assert "schedule (off)" in result.stdout
    assert "round" not in result.stdout  # without schedules, prologue and flatten have nothing to do
    assert "no pass changed anything" in result.stdout
    data = json.loads(invoke("train.yaml", "--json", "--no-pass", "schedule").stdout)
    assert all(node["schedule"] is None and node["prologue"] == [] for node in data["nodes"])
    result = invoke("train.yaml", "--explain", "--no-pass", "prologue", "--no-pass", "flatten")
    assert "round 1, schedule:" in result.stdout and "prologue:" not in result.stdout


def test_warnings_go_to_stderr(workspace):
    (workspace / "w.dl").write_text("$root( *Print -> *Print[repeat=0] )\n", encoding="utf-8")
    result = invoke("w.dl")
    assert result.exit_code == 0, result.output
    assert result.stdout == "root (Graph)\n  Print (PrintCommand)\n"
    assert result.stderr == "w.dl:1:18: warning: node 'Print_1' can never run (it has repeat: 0); removed\n"


# ---- program errors: exit 1 ----------------------------------------------------------------


def test_program_error_shows_position_line_and_caret(workspace):
    (workspace / "bad.dl").write_text("$root( $SETUP -> $TRAINING_LOAD )\n", encoding="utf-8")
    result = invoke("bad.dl", "--define", "defs.yaml")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "bad.dl:1:18: error: unknown name '$TRAINING_LOAD'\n"
        "    $root( $SETUP -> $TRAINING_LOAD )\n"
        "                     ^~~~~~~~~~~~~~\n"
        "  = did you mean 'TRAINING_LOADER' or 'TRAINING_BATCH' or 'TRAINING_STEP'?\n"
    )
    no_traceback(result)


def test_syntax_error(workspace):
    (workspace / "bad.dl").write_text("$root( *Print -> )\n", encoding="utf-8")
    result = invoke("bad.dl")
    assert result.exit_code == 1
    assert result.stderr.startswith("bad.dl:1:")
    assert "    $root( *Print -> )\n" in result.stderr and "^" in result.stderr
    no_traceback(result)


def test_yaml_error(workspace):
    (workspace / "bad.yaml").write_text("DEFAULT: [$root(\nDEFINE: {\n", encoding="utf-8")
    result = invoke("bad.yaml")
    assert result.exit_code == 1
    assert result.stderr.startswith("bad.yaml:")
    no_traceback(result)


def test_seed_readme_yaml(monkeypatch):
    """The seed's README example names nodes its DEFINE lacks: each is reported where it is written."""
    monkeypatch.chdir(DATA)
    result = invoke("seed_default.yaml")
    assert result.exit_code == 1
    no_traceback(result)
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert errors[:4] == [
        "seed_default.yaml:1:43: error: unknown name '$TRAINING_LOADER'",
        "seed_default.yaml:1:79: error: unknown name '$TRAINING_BATCH'",
        "seed_default.yaml:1:96: error: unknown name '$TRAINING_STEP'",
        "seed_default.yaml:1:114: error: unknown definition 'MAIN_MODEL_SAVE'",
    ]
    line = (DATA / "seed_default.yaml").read_text(encoding="utf-8").splitlines()[0]
    for name, column in (("$TRAINING_LOADER", 43), ("$TRAINING_BATCH", 79), ("$TRAINING_STEP", 96)):
        assert line.index(name) + 1 == column
    assert line.index("MAIN_MODEL_SAVE") + 1 == 114
    assert "  = did you mean 'MAIN_MODEL_LOAD'?" in result.stderr
    assert (
        "seed_default.yaml:6:11: error: args file not found: 'resource/configs/trainer/ExampleContainer.yaml'"
        in result.stderr
    )
    for command, line_number in (("TrainerContainerLoaderCommand", 5), ("ModuleLoadClass", 10)):
        message = f"seed_default.yaml:{line_number}:14: error: unknown command class '{command}'"
        # the training commands are built in; without them the classes are reported unknown
        assert (message in result.stderr) == (REGISTRY.get(command) is None)
    assert len(errors) == 5 + sum(REGISTRY.get(c) is None for c in ("TrainerContainerLoaderCommand", "ModuleLoadClass"))


# ---- module imports ----------------------------------------------------------------------------

COMMAND_MODULE = """\
import attrs
from deepleaps.compiler.plan import Kind
from deepleaps.runtime.command import Command


class CompileViewProbeCommand(Command):
    name = "CompileViewProbeCommand"
    kind = Kind.LEAF

    @attrs.frozen
    class Args:
        level: int = 0
"""


def test_command_modules_are_imported(workspace):
    (workspace / "compile_probe_commands.py").write_text(COMMAND_MODULE, encoding="utf-8")
    (workspace / "probe.yaml").write_text(
        "ADD_COMMAND_MODULE: [compile_probe_commands]\nDEFAULT: ['$root( *CompileViewProbeCommand[level=3] )']\n",
        encoding="utf-8",
    )
    result = invoke("probe.yaml")
    assert result.exit_code == 0, result.output
    assert result.stdout == "root (Graph)\n  CompileViewProbeCommand (CompileViewProbeCommand)\n"
    assert str(workspace) not in sys.path  # the folder was on the path only while importing


def test_failed_import_is_a_diagnostic_at_the_verb(workspace):
    (workspace / "compile_probe_broken.py").write_text("raise RuntimeError('broken on purpose')\n", encoding="utf-8")
    (workspace / "imports.yaml").write_text(
        "IMPORT_MODULE:\n  - compile_probe_missing\n  - compile_probe_broken\nDEFAULT: ['$root( *Print )']\n",
        encoding="utf-8",
    )
    result = invoke("imports.yaml")
    assert result.exit_code == 1
    no_traceback(result)
    assert result.stderr == (
        "imports.yaml:2:5: error: cannot import module 'compile_probe_missing': "
        "ModuleNotFoundError: No module named 'compile_probe_missing'\n"
        "      - compile_probe_missing\n"
        "        ^~~~~~~~~~~~~~~~~~~~~\n"
        "imports.yaml:3:5: error: cannot import module 'compile_probe_broken': RuntimeError: broken on purpose\n"
        "      - compile_probe_broken\n"
        "        ^~~~~~~~~~~~~~~~~~~~\n"
    )


def test_define_file_imports_modules_for_a_program(workspace):
    (workspace / "compile_probe_commands2.py").write_text(
        COMMAND_MODULE.replace("CompileViewProbe", "CompileViewProbeTwo"), encoding="utf-8"
    )
    (workspace / "defs2.yaml").write_text("IMPORT_MODULE: [compile_probe_commands2.py]\n", encoding="utf-8")
    (workspace / "probe.dl").write_text("$root( *CompileViewProbeTwoCommand )\n", encoding="utf-8")
    result = invoke("probe.dl", "--define", "defs2.yaml")
    assert result.exit_code == 0, result.output
    assert "CompileViewProbeTwoCommand (CompileViewProbeTwoCommand)" in result.stdout


# ---- usage: exit 2 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.yaml"], "no such file: 'missing.yaml'"),
        (["train.yaml", "--dot", "--json"], "choose one of --json and --dot"),
        (["train.yaml", "--svg", "--png", "-o", "x"], "choose one of --svg and --png"),
        (["train.yaml", "--json", "--svg"], "--svg draws the DOT graph"),
        (["train.yaml", "--png"], "give the output file with -o"),
        (["train.yaml", "--no-pass", "bogus"], "'bogus' is not one of"),
        (["train.yaml", "--define", "defs.yaml"], "--define goes with a .dl program"),
        (["train.dl", "--define", "nowhere.yaml"], "no such file: 'nowhere.yaml'"),
        (["defs.txt"], "neither a YAML command file"),
        ([], "Missing argument 'FILE'"),
    ],
)
def test_usage_errors(workspace, args, message):
    (workspace / "defs.txt").write_text("", encoding="utf-8")
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    no_traceback(result)


def test_pictures_without_graphviz(workspace, monkeypatch):
    monkeypatch.setattr(compile_module.shutil, "which", lambda name: None)
    result = invoke("train.yaml", "--svg")
    assert result.exit_code == 2
    assert "needs Graphviz's 'dot' program, which is not installed" in result.stderr
    no_traceback(result)


def test_unwritable_output(workspace):
    result = invoke("train.yaml", "-o", str(workspace / "no" / "such" / "folder" / "plan.txt"))
    assert result.exit_code == 2
    assert "cannot write" in result.stderr
    no_traceback(result)


# ---- a real process ----------------------------------------------------------------------------------


def deepleaps_command() -> list[str]:
    script = shutil.which("deepleaps") or shutil.which("deepleaps", path=str(Path(sys.executable).parent))
    if script is not None:
        return [script]
    return [sys.executable, "-c", "import sys; from deepleaps.cli import main; sys.exit(main())"]


def test_subprocess_exit_codes(workspace):
    run = [*deepleaps_command(), "compile"]
    ok = subprocess.run([*run, "train.dl", "--define", "defs.yaml"], capture_output=True, text=True, check=False)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, TREE, "")
    (workspace / "bad.dl").write_text("$root( $SETUP -> $NOPE )\n", encoding="utf-8")
    bad = subprocess.run([*run, "bad.dl", "--define", "defs.yaml"], capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert bad.stderr.startswith("bad.dl:1:18: error: unknown name '$NOPE'\n    $root( $SETUP -> $NOPE )\n")
    assert "Traceback" not in bad.stderr
    usage = subprocess.run([*run, "train.yaml", "--tree", "--json"], capture_output=True, text=True, check=False)
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr
