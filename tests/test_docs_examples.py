"""Every console example of README.md and docs/*.md runs as written and prints what it shows.

The notation and the normalisations are those of tests/docs_examples.py. A
document whose examples start a training is marked slow; it still runs in
the default suite.
"""

from __future__ import annotations

import pytest
from docs_examples import DOCUMENTS, ROOT, Example, ExtractionError, extract, matches, run_document


def _examples_of(path) -> list[Example]:
    return [step for step in extract(path) if isinstance(step, Example)]


def _documents_with_examples():
    for path in DOCUMENTS:
        examples = _examples_of(path)
        if examples:
            trains = any("deepleaps run" in example.command for example in examples)
            yield pytest.param(path, id=str(path.relative_to(ROOT)), marks=[pytest.mark.slow] if trains else [])


@pytest.mark.parametrize("path", list(_documents_with_examples()))
def test_console_examples(path, tmp_path):
    problems = run_document(path, tmp_path)
    assert not problems, "\n\n".join(problems)


def test_the_documents_with_console_examples_are_found():
    found = {path.relative_to(ROOT).as_posix() for path in DOCUMENTS if _examples_of(path)}
    assert {"docs/compiler.md", "docs/control.md"} <= found


# ---- the notation and the comparison ----------------------------------------------------------


def _examples(tmp_path, text: str) -> list[Example]:
    path = tmp_path / "page.md"
    path.write_text(text, encoding="utf-8")
    return _examples_of(path)


def test_examples_end_at_the_next_prompt_and_carry_their_exit_status(tmp_path):
    first, second, third = _examples(
        tmp_path,
        "text\n\n```console\n$ echo one\none\n$ false\n[exit 1]\n\n$ cd /tmp &&   true\n```\n",
    )
    assert (first.line, first.command, first.expected, first.status) == (4, "echo one", ("one",), 0)
    assert (second.line, second.expected, second.status) == (6, (), 1)
    assert (third.line, third.command, third.expected) == (9, "cd /tmp &&   true", ())
    assert not third.background


def test_a_background_command_ends_with_an_ampersand(tmp_path):
    (job,) = _examples(tmp_path, "```\n$ deepleaps run --port 0 &   # comment\n```\n")
    assert job.background


def test_a_background_command_shows_no_output(tmp_path):
    with pytest.raises(ExtractionError, match="background"):
        _examples(tmp_path, "```\n$ sleep 1 &\noutput\n```\n")


def test_blocks_without_a_prompt_and_file_blocks(tmp_path):
    path = tmp_path / "page.md"
    path.write_text("```\nplain\n```\n\n```yaml file=defs.yaml\nDEFINE: {}\n```\n", encoding="utf-8")
    (block,) = extract(path)
    assert (block.name, block.text, block.line) == ("defs.yaml", "DEFINE: {}\n", 5)


def test_exact_by_default():
    assert matches(["a 1", "b"], ["a 1", "b  ", ""])
    assert not matches(["a 1", "b"], ["a 2", "b"])
    assert not matches(["a", "b"], ["b", "a"])
    assert not matches(["a", "b"], ["a"])
    assert not matches(["a"], ["a", "b"])


def test_ellipsis_within_a_line_and_on_a_line_of_its_own():
    assert matches(["run directory: …/run-0001"], ["run directory: /x/y/run-0001"])
    assert not matches(["run directory: …/run-0001"], ["run directory: /x/y/run-0002"])
    assert matches(["first", "  …", "last"], ["first", "last"])
    assert matches(["first", "…", "last"], ["first", "x", "y", "last"])
    assert not matches(["first", "…", "last"], ["first", "x", "y"])


def test_numbers_vary_only_where_the_block_says_so():
    expected = ["patch 1 applied at TRAINING_BATCH {'step': 21, 'epoch': 1} loss 0.7663 (version 2)"]
    actual = ["patch 3 applied at TRAINING_BATCH {'step': 140, 'epoch': 12} loss 1.2e-05 (version 10)"]
    assert matches(expected, actual, numbers_vary=True)
    assert not matches(expected, actual)
    assert not matches(expected, [actual[0].replace("TRAINING_BATCH", "TRAINING_LOADER")], numbers_vary=True)
    assert not matches(["version 1"], ["version"], numbers_vary=True)


def test_a_mismatch_reports_the_place_the_command_and_a_diff(tmp_path):
    path = tmp_path / "page.md"
    path.write_text("# Page\n\n```console\n$ echo hello\nhello\n$ printf 'a\\nb\\n'\na\nc\n```\n", encoding="utf-8")
    problems = run_document(path, tmp_path / "run")
    assert len(problems) == 1
    (problem,) = problems
    assert problem.startswith(f"{path}:6: $ printf 'a\\nb\\n'\n")
    assert "-c\n+b" in problem


def test_the_session_keeps_the_directory_the_variables_and_the_exit_status(tmp_path):
    path = tmp_path / "page.md"
    path.write_text(
        "```console\n$ mkdir /tmp/d && cd /tmp/d && export X=1\n$ pwd; echo $X\n/tmp/d\n1\n"
        "$ false\n[exit 1]\n$ echo $?\n1\n```\n",
        encoding="utf-8",
    )
    assert run_document(path, tmp_path / "run") == []


def test_a_line_redrawn_in_place_shows_what_the_terminal_shows(tmp_path):
    path = tmp_path / "page.md"
    path.write_text("```console\n$ printf 'step 1\\rstep 2\\rdone\\n'\ndone\n```\n", encoding="utf-8")
    assert run_document(path, tmp_path / "run") == []


def test_the_shells_own_messages_about_jobs_are_not_output(tmp_path):
    path = tmp_path / "page.md"
    path.write_text("```console\n$ sleep 30 &\n$ kill -9 $!\n$ echo next\nnext\n```\n", encoding="utf-8")
    assert run_document(path, tmp_path / "run") == []
