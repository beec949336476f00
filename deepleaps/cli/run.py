"""``deepleaps init`` and ``deepleaps run``."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from deepleaps.cli.common import reporting
from deepleaps.distributed.launch import Launch
from deepleaps.lang import ProgramError
from deepleaps.lang.diagnostics import describe


@click.command()
@click.argument("directory", type=click.Path(file_okay=False), default=".")
def init(directory: str) -> None:
    """Create the example workspace in DIRECTORY (existing files are kept)."""
    from deepleaps.workspace import make_workspace

    path = make_workspace(Path(directory))
    click.echo(f"workspace ready in {path}; now: cd {directory} && deepleaps run")


@click.command()
@click.option("--config", "-c", default="resource/configs/default.yaml", show_default=True, help="The command file.")
@click.option("--mode", type=click.Choice(["new", "resume", "finetuning"]), help="Overrides RUN.mode.")
@click.option(
    "--from", "source", type=click.Path(file_okay=False), help="The run directory to resume or finetune from."
)
@click.option("--name", help="Overrides RUN.name (the folder of the runs).")
@click.option("--seed", type=int, help="Overrides the trainer container's seed.")
@click.option("--device", help="cpu, cuda, cuda:1 … (default: cuda when present).")
@click.option("--port", type=int, help="Overrides COMMAND_CONTROLLER.ipc_port (0: any free port).")
@click.option("--no-server", is_flag=True, help="Do not open the control socket.")
@click.option("--replay", type=click.Path(dir_okay=False, exists=True), help="Re-apply a run's journal.jsonl.")
@click.option("--watch-code", is_flag=True, help="Reload a workspace module when its file is saved (RELOAD_MODULE).")
@click.option("--dashboard", is_flag=True, help="Serve the live page from this process (its URL is printed).")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NODE.ARGUMENT=VALUE",
    help="Override a DEFINE entry for this run, e.g. TRAINING_LOADER.repeat=200 (repeatable).",
)
@click.option(
    "--collective-timeout", type=float, help="Overrides RUN.collective_timeout: seconds a rank waits for the others."
)
@click.option("--nproc-per-node", type=click.IntRange(min=1), help="Train on N processes (torch.distributed).")
@click.option("--nnodes", default="1", show_default=True, help="Nodes (or MIN:MAX), with --nproc-per-node.")
@click.option("--node-rank", type=int, help="This node's rank, with --nnodes.")
@click.option("--rdzv-endpoint", help="HOST:PORT where the nodes meet, with --nnodes.")
@click.option("--rdzv-id", help="The job's id at the rendezvous, with --nnodes.")
def run(
    config,
    mode,
    source,
    name,
    seed,
    device,
    port,
    no_server,
    replay,
    watch_code,
    dashboard,
    sets,
    collective_timeout,
    nproc_per_node,
    nnodes,
    node_rank,
    rdzv_endpoint,
    rdzv_id,
):
    """Run the DEFAULT program of a workspace's command file."""
    if not Path(config).is_file():
        raise click.UsageError(f"no command file '{config}' (run in a workspace, or give --config)")
    if nproc_per_node is not None:
        _launch(Launch(nproc_per_node, nnodes, node_rank, rdzv_endpoint, rdzv_id))
    from deepleaps.app.app import App
    from deepleaps.dashboard.link import ControllerLink

    with reporting():
        app = App(
            config,
            serve=not no_server,
            port=port,
            replay=replay,
            sets=sets,
            watch_code=watch_code,
            mode=mode,
            source=source,
            name=name,
            seed=seed,
            device=device,
            collective_timeout=collective_timeout,
        )
        # Launched on several processes, rank 0 alone serves the page (the launcher sets RANK).
        served = dashboard and os.environ.get("RANK", "0") == "0"
        board = _dashboard(app.program_file.settings.get("DASHBOARD")) if served else None
        try:
            app.prepare()
        except ProgramError:
            raise
        except Exception as problem:  # already in the run's log, with its traceback
            click.echo(f"error: the run could not start: {describe(problem)}", err=True)
            sys.exit(1)
        assert app.experiment is not None  # prepare() opened it
        if app.world.is_main:
            click.echo(f"run directory: {app.experiment.directory}", err=True)
        if board is not None:
            assert app.controller is not None  # prepare() made it
            board.start(ControllerLink(app.controller))
            click.echo(f"dashboard: {board.url}", err=True)
        try:
            status = app.run()
        finally:
            if board is not None:
                board.close("the training has ended")
    sys.exit(status)


def _dashboard(settings: Mapping[str, Any] | None):
    """The live page's server, bound (a taken port stops the run before it starts); it serves
    from a thread of the training's process once the run is prepared."""
    from deepleaps.dashboard.serve import Dashboard
    from deepleaps.dashboard.settings import DashboardSettings

    return Dashboard(DashboardSettings.from_section(settings))


#: The options that are the launcher's, not the run's.
_LAUNCHER = {"nproc_per_node", "nnodes", "node_rank", "rdzv_endpoint", "rdzv_id"}


def _launch(launch: Launch) -> None:
    """Start the run on ``launch``'s processes, with every other option as given (never returns)."""
    context = click.get_current_context()
    arguments: list[str] = []
    for parameter in context.command.params:
        value = context.params.get(parameter.name or "")
        if parameter.name in _LAUNCHER or value is None or value is False or not isinstance(parameter, click.Option):
            continue
        option = parameter.opts[0]
        if parameter.is_flag:
            arguments.append(option)
        else:
            arguments += [item for each in (value if parameter.multiple else [value]) for item in (option, str(each))]
    try:
        launch.exec(arguments)
    except ValueError as problem:
        raise click.UsageError(str(problem)) from None
