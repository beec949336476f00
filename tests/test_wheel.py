"""The built wheel works on its own: it ships the grammar and parses without torch.

Builds the wheel, installs it with only the language's dependencies (lark,
pyyaml, attrs, cattrs) into a fresh virtual environment, and parses the
seed's program from a directory outside the source tree, so neither the
checkout nor an editable install can supply ``grammar/deepleaps.lark``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SEED_PROGRAM = (
    "$root( $TRAINER_CONTAINER_LOAD->$TRAINING_LOADER( $MAIN_MODEL_LOAD->$TRAINING_BATCH( $TRAINING_STEP )"
    "->MAIN_MODEL_SAVE) )"
)

CANONICAL = """\
$root(
    $TRAINER_CONTAINER_LOAD -> $TRAINING_LOADER(
        $MAIN_MODEL_LOAD -> $TRAINING_BATCH($TRAINING_STEP) -> MAIN_MODEL_SAVE
    )
)
"""

#: What pip prints when it cannot reach the package index.
UNREACHABLE = re.compile(
    r"Could not find a version that satisfies the requirement"
    r"|No matching distribution found"
    r"|Failed to establish a new connection"
    r"|Temporary failure in name resolution"
    r"|Network is unreachable"
    r"|ProxyError"
    r"|Max retries exceeded"
)

#: Build outputs, caches and environments that must not travel into the copy.
IGNORED = shutil.ignore_patterns(
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".venv",
    "venv",
    ".tox",
    ".*_cache",
    ".hypothesis",
)

# Runs in the fresh environment, from a directory outside the source tree.
PROBE = textwrap.dedent(
    """
    import importlib.resources
    import importlib.util
    import json
    import sys

    import deepleaps
    from deepleaps.lang import format_program, parse

    program = parse(sys.argv[1], "seed.dl")
    print(json.dumps({
        "canonical": format_program(program),
        "deepleaps": deepleaps.__file__,
        "grammar": str(importlib.resources.files("deepleaps.grammar").joinpath("deepleaps.lark")),
        "torch_installed": importlib.util.find_spec("torch") is not None,
        "torch_imported": "torch" in sys.modules,
    }))
    """
)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(args: list, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout
    )


def _pip(python: Path | str, *args, cwd: Path, what: str) -> None:
    """Run pip; skip when the index is unreachable, fail with pip's output otherwise."""
    result = _run([python, "-m", "pip", *args], cwd=cwd)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        if UNREACHABLE.search(output):
            pytest.skip(f"{what}: the package index is unreachable\n{output[-2000:]}")
        pytest.fail(f"{what} failed (exit {result.returncode}):\n{output[-4000:]}")


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def test_wheel_ships_grammar_and_parses_without_torch(tmp_path: Path) -> None:
    # Build from a copy: building in place would leave build/ and *.egg-info in
    # the checkout, and a stale build/lib could put deleted modules in the wheel.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=IGNORED, symlinks=True)
    dist = tmp_path / "dist"
    build = ["wheel", "--no-deps", "--no-cache-dir", "-w", dist, source]
    _pip(sys.executable, *build, cwd=tmp_path, what="building the wheel")
    wheels = sorted(dist.glob("deepleaps-*.whl"))
    assert len(wheels) == 1, f"expected one deepleaps wheel in {sorted(p.name for p in dist.iterdir())}"
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
    template = ROOT / "deepleaps" / "workspace" / "template"
    for folder, what in ((template, "template files"), (ROOT / "deepleaps" / "dashboard" / "static", "page files")):
        expected = {
            "deepleaps/" + path.relative_to(ROOT / "deepleaps").as_posix()
            for path in folder.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        }
        assert expected <= names, f"the wheel lacks {what}: {sorted(expected - names)[:5]}"
    assert "deepleaps/dashboard/static/vendor/uplot/LICENSE" in names
    packages = {path.parent for path in (ROOT / "deepleaps").rglob("__init__.py") if template not in path.parents}
    for package in packages:
        module = (package / "__init__.py").relative_to(ROOT).as_posix()
        assert module in names, f"package {module} is missing from the wheel (add it to pyproject.toml)"

    venv = tmp_path / "venv"
    created = _run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    assert created.returncode == 0, created.stdout + created.stderr
    python = _venv_python(venv)
    dependencies = ["lark", "pyyaml", "attrs", "cattrs"]
    _pip(python, "install", *dependencies, cwd=tmp_path, what="installing " + ", ".join(dependencies))
    _pip(python, "install", "--no-deps", wheels[0], cwd=tmp_path, what="installing the wheel")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = _run([python, "-c", PROBE, SEED_PROGRAM], cwd=elsewhere, timeout=120)
    assert probe.returncode == 0, (
        "parsing with the installed wheel failed (is grammar/deepleaps.lark packaged as deepleaps.grammar, "
        f"and does deepleaps.lang import without torch?):\n{probe.stdout}{probe.stderr}"
    )
    report = json.loads(probe.stdout.strip().splitlines()[-1])

    assert report["canonical"] == CANONICAL
    venv_root = venv.resolve()
    assert Path(report["deepleaps"]).resolve().is_relative_to(venv_root), report["deepleaps"]
    assert Path(report["grammar"]).resolve().is_relative_to(venv_root), report["grammar"]
    assert not Path(report["deepleaps"]).resolve().is_relative_to(ROOT)
    assert not report["torch_installed"], "the fresh environment should not have torch"
    assert not report["torch_imported"]
