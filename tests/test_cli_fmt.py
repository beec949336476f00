"""``deepleaps fmt``: canonical text of .dl files and of YAML program strings; exit codes."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

from click.testing import CliRunner

from deepleaps.cli import main

SEED = Path(__file__).parent / "data" / "seed_default.yaml"
CANONICAL = '$root($A -> $B, *Print[content="hi"])\n'


def fmt(*args: str, input: str | bytes | None = None):
    return CliRunner().invoke(main, ["fmt", *args], input=input)


def test_prints_the_canonical_form(tmp_path):
    path = tmp_path / "p.dl"
    path.write_text('# header\n$root(  $A->$B ,*Print[ content = "hi" ] )\n')
    result = fmt(str(path))
    assert result.exit_code == 0, result.output
    assert result.output == "# header\n" + CANONICAL


def test_check_exits_1_when_not_canonical_and_0_when_it_is(tmp_path):
    messy, clean = tmp_path / "messy.dl", tmp_path / "clean.dl"
    messy.write_text('$root( $A->$B, *Print[content="hi"] )\n')
    clean.write_text(CANONICAL)
    result = fmt("--check", str(messy), str(clean))
    assert result.exit_code == 1
    assert result.stderr == f"{messy}: not in canonical form\n"
    assert fmt("--check", str(clean)).exit_code == 0


def test_write_rewrites_dl_files(tmp_path):
    path = tmp_path / "p.dl"
    path.write_text('$root( $A->$B, *Print[content="hi"] )')
    assert fmt("--write", str(path)).exit_code == 0
    assert path.read_text() == CANONICAL
    assert fmt("--check", str(path)).exit_code == 0


def test_dash_reads_standard_input():
    result = fmt("-", input='$root( $A->$B, *Print[content="hi"] )')
    assert result.exit_code == 0
    assert result.output == CANONICAL


def test_yaml_program_strings():
    result = fmt(str(SEED))
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"# DEFAULT[0] ({SEED}:1:11)\n"
        "$root(\n"
        "    $TRAINER_CONTAINER_LOAD -> $TRAINING_LOADER(\n"
        "        $MAIN_MODEL_LOAD -> $TRAINING_BATCH($TRAINING_STEP) -> MAIN_MODEL_SAVE\n"
        "    )\n"
        ")\n"
    )
    assert fmt("--check", str(SEED)).exit_code == 1


def test_program_errors_exit_1_with_diagnostics_on_stderr(tmp_path):
    path = tmp_path / "bad.dl"
    path.write_text("$root( $A -> )\n")
    result = fmt(str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}:1:14: error: '->' must be followed by a node ($NAME, NAME or *Class)",
        "    $root( $A -> )",
        "                 ^",
    ]
    assert "Traceback" not in result.output


def test_usage_errors_exit_2(tmp_path):
    assert fmt(str(tmp_path / "absent.dl")).exit_code == 2
    assert fmt().exit_code == 2
    path = tmp_path / "p.dl"
    path.write_text(CANONICAL)
    assert fmt("--check", "--write", str(path)).exit_code == 2
    assert fmt("--write", str(SEED)).exit_code == 2


def test_the_console_script_runs(tmp_path):
    path = tmp_path / "p.dl"
    path.write_text('$root( $A->$B, *Print[content="hi"] )')
    script = Path(sys.executable).parent / "deepleaps"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "deepleaps"]
    result = subprocess.run([*command, "fmt", str(path)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, CANONICAL)


def test_the_example_workspace_program_is_canonical():
    """`deepleaps init` writes a command file that `deepleaps fmt --check` accepts."""
    template = resources.files("deepleaps.workspace").joinpath("template", "resource", "configs", "default.yaml")
    with resources.as_file(template) as path:
        result = fmt("--check", str(path))
    assert result.exit_code == 0, result.output
