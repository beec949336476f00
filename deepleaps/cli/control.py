"""Talking to a running training: ``send``, ``apply``, ``diff``, ``status``, ``client``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from deepleaps.cli.common import PROGRAM_ERROR, is_yaml, reporting
from deepleaps.control.client import Client, ControlError, reply_lines, reply_message
from deepleaps.control.program_text import exported_version


def connection_options(function):
    function = click.option(
        "--workspace",
        "-C",
        default=".",
        type=click.Path(file_okay=False),
        help="The workspace of the training (where .deepleaps/ is).",
    )(function)
    function = click.option("--token", help="The token (default: the workspace's token file).")(function)
    function = click.option(
        "--cafile",
        type=click.Path(dir_okay=False),
        help="The certificate to check a TLS server's against (default: the one the workspace's server names).",
    )(function)
    function = click.option("--port", type=int, help="Default: from the workspace.")(function)
    return click.option("--host", help="Default: from the workspace.")(function)


@contextmanager
def _client(host, port, token, workspace, cafile=None) -> Iterator[Client]:
    """A connected client; an unreachable training is an error message and exit status 1."""
    try:
        client = Client(host, port, token, workspace=workspace, cafile=cafile).connect()
    except ControlError as problem:
        click.echo(f"error: {problem}", err=True)
        sys.exit(PROGRAM_ERROR)
    try:
        yield client
    except ControlError as problem:
        click.echo(f"error: {problem}", err=True)
        sys.exit(PROGRAM_ERROR)
    finally:
        client.close()


def _show(reply: dict, as_json: bool) -> None:
    """Print a reply; exit 1 if it is an error."""
    if as_json:
        click.echo(json.dumps(reply, indent=2))
    else:
        for line, is_error in reply_lines(reply):
            click.echo(line, err=is_error)
    if not reply.get("ok"):
        sys.exit(PROGRAM_ERROR)


def _program_text(path: str) -> str:
    if is_yaml(path):
        from deepleaps.lang.programfile import load_program_file

        with reporting():
            return "\n".join(
                raw for label, raw, _ in load_program_file(path).program_texts if label.startswith("DEFAULT")
            )
    return Path(path).read_text(encoding="utf-8")


#: How a refusal of a request made against an older version begins (``engine.stale``).
STALE = "stale: made against version"

BASE = click.option(
    "--base", type=click.IntRange(min=1), help="The program version this was made against: refused if it moved."
)


@click.command()
@click.argument("verb")
@click.argument("payload", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON reply.")
@BASE
@connection_options
def send(verb, payload, as_json, base, host, port, token, cafile, workspace):
    """Send VERB PAYLOAD to the running training, e.g. `deepleaps send SET optimizer.lr 0.001`."""
    with _client(host, port, token, workspace, cafile) as client:
        _show(client.send(_versioned(verb, base), " ".join(payload)), as_json)


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@BASE
@connection_options
def apply(file, as_json, base, host, port, token, cafile, workspace):
    """Apply a whole edited program (.dl, or a command file's DEFAULT): the server diffs it.

    A file written by `deepleaps program` is applied only if the training is still at the
    version it was written at (its first line says which); --base N says another version."""
    text = _program_text(file)
    exported = exported_version(Path(file).read_text(encoding="utf-8"))
    with _client(host, port, token, workspace, cafile) as client:
        reply = client.send(_versioned("APPLY", base or exported), text)
    if not as_json and base is None and exported is not None and STALE in reply.get("message", ""):
        click.echo(reply_message(reply), err=True)
        click.echo(
            f"note: {file} was written at version {exported}. `deepleaps diff {file}` shows what applying it "
            "now would change, taking back what changed since; `deepleaps program FILE` writes the program "
            f"as it is now; `deepleaps apply --base N {file}` applies it at version N.",
            err=True,
        )
        sys.exit(PROGRAM_ERROR)
    _show(reply, as_json)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, writable=True), required=False)
@connection_options
def program(file, host, port, token, cafile, workspace):
    """Write the running program to FILE (default: print it), headed by the version it is at,
    for an edit that `deepleaps apply FILE` sends back."""
    with _client(host, port, token, workspace, cafile) as client:
        reply = client.send("PROGRAM")
    if not reply.get("ok") or file is None:
        _show(reply, False)
        return
    Path(file).write_text(reply["data"], encoding="utf-8")
    click.echo(f"version {reply['version']} of the running program written to {file}")


def _versioned(verb: str, base: int | None) -> str:
    """``VERB@N``: the server refuses it once the program has moved past version N."""
    return verb if base is None else f"{verb}@{base}"


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the edit script as JSON (for PATCH).")
@connection_options
def diff(file, as_json, host, port, token, cafile, workspace):
    """Show what applying FILE would change in the running training (a dry run)."""
    text = _program_text(file)
    with _client(host, port, token, workspace, cafile) as client:
        reply = client.send("DIFF", text)
    if as_json and reply.get("ok"):
        click.echo(json.dumps(reply["script"], indent=2))
        return
    _show(reply, False)


@click.command()
@click.option("--watch", "-w", is_flag=True, help="Refresh every second until Ctrl-C.")
@connection_options
def status(watch, host, port, token, cafile, workspace):
    """The live program tree with counters, and the last loss."""
    with _client(host, port, token, workspace, cafile) as client:
        while True:
            reply = client.send("STATUS")
            data = reply.get("data") or {}
            text = f"version {data.get('version')}  loss {data.get('last_loss')}  " + (
                "PAUSED" if data.get("paused") else ""
            )
            if watch:
                click.clear()
            click.echo(text.rstrip())
            click.echo(reply.get("message", "").rstrip("\n"))  # the tree, and nodes the runtime removed
            if not watch:
                return
            time.sleep(1)


@click.command("client")
@connection_options
def interactive(host, port, token, cafile, workspace):
    """An interactive prompt: type `VERB payload` lines, as with the seed's client."""
    with _client(host, port, token, workspace, cafile) as client:
        while True:
            try:
                line = input(":")
            except (EOFError, KeyboardInterrupt):
                return
            if not line.strip():
                continue
            verb, _, payload = line.strip().partition(" ")
            try:
                reply = client.send(verb, payload)
            except ControlError as problem:
                click.echo(f"error: {problem}", err=True)
                return
            for entry in reply.get("diff", []):
                click.echo(entry)
            click.echo(reply_message(reply) or ("ok" if reply.get("ok") else "error"))
