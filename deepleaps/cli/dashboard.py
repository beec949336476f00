"""``deepleaps dashboard``: the live page of a training that runs in this workspace."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from deepleaps.cli.common import reporting
from deepleaps.cli.control import connection_options
from deepleaps.control.client import COMMAND_FILE, Client


def dashboard_section(config: Path) -> dict | None:
    """The ``DASHBOARD`` section of a command file, if it has one."""
    try:
        return (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("DASHBOARD")
    except (OSError, yaml.YAMLError, AttributeError):
        return None


@click.command()
@click.option("--http-host", help="The address the page is served at (default: DASHBOARD.host, 127.0.0.1).")
@click.option("--http-port", type=int, help="Its port (default: DASHBOARD.port; 0: any free port).")
@connection_options
def dashboard(http_host, http_port, host, port, token, cafile, workspace):
    """Serve the live page of the training running in this workspace, over its control channel.

    Prints the page's URL, with the token every request needs; serves until Ctrl-C.
    """
    from deepleaps.dashboard.link import ClientLink
    from deepleaps.dashboard.serve import Dashboard
    from deepleaps.dashboard.settings import DashboardSettings

    with reporting():
        settings = DashboardSettings.from_section(
            dashboard_section(Path(workspace) / COMMAND_FILE), host=http_host, port=http_port
        )
        board = Dashboard(settings)
    click.echo(f"dashboard: {board.url}")
    board.serve(ClientLink(lambda: Client(host, port, token, workspace=workspace, cafile=cafile)))
