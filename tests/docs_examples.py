"""The console examples of the documentation: found, run as a reader would type them, compared.

A *console example* is a line of a fenced block that begins with the prompt
``$ ``: the command. The lines after it, up to the next prompt or the end of
the block, are the output it prints (standard output and standard error, as
a terminal shows them). An ``[exit N]`` line ends that output and gives the
command's exit status; an example without one must exit 0. A command that
ends with ``&`` runs in the background: it shows no output, and when it
starts a training the session waits until the training's control server has
written its address (``.deepleaps/control.json``), as a reader waits for it
to come up.

A fenced block whose info string names a file (```` ```yaml file=defs.yaml ````)
is written to that file in the session's current directory when the session
reaches it, as a reader would save it.

Each document runs in one bash session, in document order, so ``cd``,
``export`` and background jobs carry from one example to the next. The
session works in a fresh scratch directory that stands for the documents'
``/tmp``: ``/tmp`` in a command is that directory, and that directory in the
output reads ``/tmp`` again. When the document is done, its background jobs
get SIGTERM (a training finishes its step and exits), and whatever is left
after a bounded wait is killed.

Output is compared line by line after these normalisations, and no others:

- what the shell itself prints about background jobs (``[1] 4242``, ``Killed``,
  which differ between an interactive shell and this one) is not output of
  the command, and neither the documents nor the comparison include it;
- trailing white space on each line, and blank lines at the end, are ignored;
- of a line with carriage returns (a progress bar redrawn in place) only the
  text after the last one counts, which is what the terminal shows;
- ``…`` in an expected line matches any text within the line, and a line
  that holds only ``…`` matches any number of lines (output left out);
- in a block whose info string says ``numbers=any`` (values that change from
  run to run: counters, ports, losses, times, ids, sizes), every number
  matches every number. The exit status is always compared exactly.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from workspace_fixtures import deepleaps_command, environment, parent_pid

#: The documents whose console examples are checked.
ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))

PROMPT = "$ "
ELLIPSIS = "…"
#: The longest a command may run, a background training take to come up, and its jobs take to stop.
COMMAND_TIMEOUT = 120.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_EXIT = re.compile(r"^\[exit (\d+)\]$")
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_COMMENT = re.compile(r"\s+#[^'\"]*$")
_TMP = re.compile(r"(?<![\w./-])/tmp(?![\w.-])")
#: How this shell reports a background job that ended on a signal: ``bash: line 58: 4242 Killed  …``.
_JOB_NOTICE = re.compile(r"^bash: line \d+: +(\d+) ")


def shown(path: Path) -> str:
    """A document's path as reports show it: relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


class ExtractionError(Exception):
    """A console block that does not follow the notation above."""


@dataclass(frozen=True)
class Example:
    """One command of a console block and what it should print."""

    document: Path
    line: int
    command: str
    expected: tuple[str, ...]
    status: int
    numbers_vary: bool

    @property
    def background(self) -> bool:
        stripped = _COMMENT.sub("", self.command).rstrip()
        return stripped.endswith("&") and not stripped.endswith("&&")

    @property
    def starts_training(self) -> bool:
        return self.background and "deepleaps run" in self.command

    @property
    def where(self) -> str:
        return f"{shown(self.document)}:{self.line}"


@dataclass(frozen=True)
class FileBlock:
    """A fenced block to be saved as a file."""

    document: Path
    line: int
    name: str
    text: str


Step = Example | FileBlock


def _fenced_blocks(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line of the first content line, info string, content lines) of each fenced block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        index += 1
        if not opening:
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        start = index
        while index < len(lines):
            closing = _FENCE.match(lines[index])
            if closing and closing["fence"].startswith(fence) and not closing["info"].strip():
                break
            index += 1
        content = [line[min(indent, len(line) - len(line.lstrip(" "))) :] for line in lines[start:index]]
        yield start + 1, opening["info"].strip(), content
        index += 1


def _info_words(info: str) -> dict[str, str]:
    """``key=value`` words of an info string (the language, its first word, is left out)."""
    return dict(word.split("=", 1) for word in info.split()[1:] if "=" in word)


def extract(path: Path) -> list[Step]:
    """The console examples and file blocks of a Markdown document, in document order."""
    steps: list[Step] = []
    for first_line, info, content in _fenced_blocks(path):
        words = _info_words(info)
        if "file" in words:
            steps.append(FileBlock(path, first_line - 1, words["file"], "".join(line + "\n" for line in content)))
            continue
        if not any(line.startswith(PROMPT) for line in content):
            continue
        steps.extend(_console_block(path, first_line, content, numbers_vary=words.get("numbers") == "any"))
    return steps


def _console_block(path: Path, first_line: int, content: list[str], *, numbers_vary: bool) -> list[Example]:
    examples: list[Example] = []
    starts = [index for index, line in enumerate(content) if line.startswith(PROMPT)]
    if content[: starts[0]] and any(line.strip() for line in content[: starts[0]]):
        raise ExtractionError(f"{path}:{first_line}: output before the first command")
    for position, start in enumerate(starts):
        end = starts[position + 1] if position + 1 < len(starts) else len(content)
        output = content[start + 1 : end]
        while output and not output[-1].strip():
            output.pop()
        status = 0
        if output and (exit_line := _EXIT.match(output[-1].strip())):
            status = int(exit_line[1])
            output.pop()
        example = Example(path, first_line + start, content[start][len(PROMPT) :], tuple(output), status, numbers_vary)
        if any(_EXIT.match(line.strip()) for line in output):
            raise ExtractionError(f"{example.where}: '[exit N]' must end the example's output")
        if example.background and (output or status):
            raise ExtractionError(f"{example.where}: a background command shows no output and no exit status")
        examples.append(example)
    return examples


# ---- comparing -------------------------------------------------------------------------------


def _line_pattern(expected: str, numbers_vary: bool) -> re.Pattern[str]:
    parts = []
    for piece in re.split(f"({ELLIPSIS})", expected):
        if piece == ELLIPSIS:
            parts.append(".*")
        elif numbers_vary:
            parts.append(_NUMBER.sub("\0", re.escape(piece)).replace("\0", _NUMBER.pattern))
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


def matches(expected: Sequence[str], actual: Sequence[str], *, numbers_vary: bool = False) -> bool:
    """Whether ``actual`` output lines fit ``expected`` under the normalisations of this module."""
    want = [line.rstrip() for line in expected]
    got = [line.rstrip() for line in actual]
    while want and not want[-1]:
        want.pop()
    while got and not got[-1]:
        got.pop()
    patterns = [None if line.strip() == ELLIPSIS else _line_pattern(line, numbers_vary) for line in want]
    # reachable[j]: the expected lines so far can account for the first j actual lines.
    reachable = [True] + [False] * len(got)
    for pattern in patterns:
        if pattern is None:
            for j in range(1, len(got) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
        else:
            reachable = [False] + [reachable[j] and pattern.fullmatch(got[j]) is not None for j in range(len(got))]
    return reachable[len(got)]


# ---- running ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    output: list[str]
    status: int | None  # None: did not finish in time
    #: The shell's own messages meanwhile (a background job that ended), shown in reports only.
    shell: list[str] = field(default_factory=list)


@dataclass
class Session:
    """One bash process that runs a document's commands one after another.

    Every command's output goes to a file of its own (so a background job keeps
    writing to its own file, never into a later command's output); after each
    command the shell reports its exit status, current directory and last
    background pid on its standard output.
    """

    scratch: Path
    logs: Path
    process: subprocess.Popen[str] = field(init=False)
    background: list[tuple[int, Path]] = field(default_factory=list)
    jobs: set[int] = field(default_factory=set)
    _lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    _reader: threading.Thread | None = None
    _count: int = 0

    def __post_init__(self) -> None:
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=self.scratch,
            env=_session_environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def run(self, command: str, timeout: float = COMMAND_TIMEOUT) -> tuple[Outcome, str, int | None]:
        """Run ``command`` (its ``/tmp`` mapped to the scratch directory): outcome, directory, ``$!``."""
        assert self.process.stdin is not None
        self._count += 1
        log = self.logs / f"{self._count:03d}.out"
        marker = f"__docs_examples_{self._count}__"
        command = _TMP.sub(str(self.scratch), command)
        self.process.stdin.write(
            f'(exit "${{__docs_status:-0}}")\n{{\n{command}\n}} > {log} 2>&1 < /dev/null\n'
            f'__docs_status=$?\nprintf "\\n{marker} %s %s %s\\n" "$__docs_status" "${{!:-}}" "$PWD"\n'
        )
        self.process.stdin.flush()
        shell: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                return Outcome(self.read_log(log), None, shell), "", None
            if line.startswith(marker + " "):
                status, pid, directory = line[len(marker) + 1 :].split(" ", 2)
                if pid:
                    self.jobs.add(int(pid))
                output: list[str] = []
                shell = [text for text in shell if text]  # the newline before the marker
                for text in self.read_log(log):
                    notice = _JOB_NOTICE.match(text)
                    (shell if notice and int(notice[1]) in self.jobs else output).append(text)
                return Outcome(output, int(status), shell), directory, int(pid) if pid else None
            shell.append(line.replace(str(self.scratch), "/tmp"))

    def read_log(self, log: Path) -> list[str]:
        if not log.exists():
            return []
        text = log.read_bytes().decode("utf-8", errors="replace").replace(str(self.scratch), "/tmp")
        return [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.removesuffix("\n").split("\n")] if text else []

    def write(self, block: FileBlock) -> Outcome:
        """Save a file block in the session's current directory."""
        delimiter = "__docs_examples_end_of_file__"
        outcome, _, _ = self.run(f"cat > '{block.name}' <<'{delimiter}'\n{block.text}{delimiter}")
        return outcome

    def started(self, pid: int, directory: str, log: Path) -> str | None:
        """Wait for the training ``pid`` to write its control address; a problem, or None."""
        self.background.append((pid, log))
        info = Path(directory) / ".deepleaps" / "control.json"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not _alive(pid):
                return "the background command ended before its control server came up"
            with contextlib.suppress(OSError, ValueError):
                server = json.loads(info.read_text(encoding="utf-8")).get("pid")
                if pid in (server, parent_pid(server)):  # the training, or a rank it launched
                    return None
            time.sleep(0.1)
        return f"the background command's control server did not come up within {START_TIMEOUT:.0f} s"

    def last_log(self) -> Path:
        return self.logs / f"{self._count:03d}.out"

    def close(self) -> list[str]:
        """Stop the background jobs (SIGTERM, then SIGKILL after a bounded wait) and the shell.

        Returns what each job that had to be killed printed last, for the report.
        """
        stubborn: list[str] = []
        for pid, _ in self.background:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for pid, log in self.background:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                tail = "\n".join(self.read_log(log)[-5:])
                stubborn.append(
                    f"background job {pid} did not stop in {STOP_TIMEOUT:.0f} s; killed. Its output:\n{tail}"
                )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)
        assert self.process.stdin is not None and self.process.stdout is not None and self._reader is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()
        self._reader.join(timeout=STOP_TIMEOUT)
        self.process.stdout.close()
        return stubborn


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (exited, not yet reaped by the shell) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _session_environment() -> dict[str, str]:
    """The environment a reader's terminal has: ``deepleaps`` and this ``python`` on the PATH.

    Standard output is unbuffered, so that it interleaves with standard error as
    on a terminal, and lines are wrapped for 80 columns (``--help``).
    """
    env = environment()
    env["PATH"] = os.pathsep.join([str(Path(deepleaps_command()[0]).parent), env.get("PATH", "")])
    env["COLUMNS"] = "80"
    env["LC_ALL"] = "C.UTF-8"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


# ---- a document -------------------------------------------------------------------------------


def run_document(path: Path, workdir: Path) -> list[str]:
    """Run every step of ``path`` in one session; a report for each example that did not match."""
    problems: list[str] = []
    session = Session(workdir / "tmp", workdir / "output")
    try:
        for step in extract(path):
            if isinstance(step, FileBlock):
                outcome = session.write(step)
                if outcome.status != 0:
                    problems.append(f"{shown(path)}:{step.line}: cannot write {step.name}: {outcome.output}")
                continue
            outcome, directory, pid = session.run(step.command)
            if outcome.status is None:
                problems.append(_report(step, outcome, f"did not finish within {COMMAND_TIMEOUT:.0f} s"))
                break
            if step.starts_training:
                trouble = session.started(pid, directory, session.last_log()) if pid else "no background job"
                if trouble:
                    problems.append(_report(step, Outcome(session.read_log(session.last_log()), 0), trouble))
                    break
                continue
            fits = matches(step.expected, outcome.output, numbers_vary=step.numbers_vary)
            if not fits or outcome.status != step.status:
                problems.append(_report(step, outcome))
    finally:
        problems.extend(session.close())
    return problems


def _report(example: Example, outcome: Outcome, trouble: str = "") -> str:
    expected = [*example.expected, *([f"[exit {example.status}]"] if example.status else [])]
    actual = [*outcome.output, *([f"[exit {outcome.status}]"] if outcome.status else [])]
    diff = difflib.unified_diff(expected, actual, "expected (the document)", "actual", lineterm="", n=3)
    head = f"{example.where}: $ {example.command}"
    if trouble:
        head += f"\n{trouble}"
    if outcome.shell:
        head += "\nthe shell said meanwhile:\n" + "\n".join(outcome.shell)
    return head + "\n" + "\n".join(diff)
