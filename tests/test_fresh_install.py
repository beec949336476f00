"""README's main command, as written, in a brand-new virtual environment: nothing from this
machine's Python (no system site-packages) can hide a missing dependency."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    """The commands of README.md's first ``bash`` block (comments and blank lines left out)."""
    block = re.search(r"^```bash\n(.*?)^```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S | re.M)
    assert block, "README.md must start with a bash block holding its two commands"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def copy_tree(destination: Path) -> Path:
    """The project's files as a fresh clone has them (what git tracks, plus new files it does not ignore)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode != 0:
        return Path(shutil.copytree(ROOT, destination, ignore=shutil.ignore_patterns(".venv", "*.egg-info")))
    for name in listed.stdout.splitlines():
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def test_readme_main_command_in_a_new_virtual_environment(tmp_path: Path):
    main_command = readme_commands()[0]
    assert "deepleaps run" in main_command and "torch==2.13.0" in main_command
    project = copy_tree(tmp_path / "project")
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True, system_site_packages=False)
    bin_dir = environment / ("Scripts" if sys.platform == "win32" else "bin")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(VIRTUAL_ENV=str(environment), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    env.setdefault("OMP_NUM_THREADS", "1")
    try:
        result = subprocess.run(
            ["bash", "-c", main_command],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"the README's main command did not finish in 20 minutes:\n{expired.stderr}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"exit {result.returncode}\n{output[-5000:]}"
    for sign in ("No module named", "Failed to initialize", "Traceback"):
        assert sign not in output, f"{sign!r} in the output:\n{output[-5000:]}"
    run_dir = project / "demo" / "resource" / "output" / "example" / "run-0001"
    assert len(list((run_dir / "checkpoints").glob("*.pt"))) == 40
    assert "valid accuracy: 1.0000" in result.stdout
