"""Where ``Client`` finds the training (arguments, the server's info file, the workspace config),
and what it says when no training runs there."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from control_fixtures import run_cli

from deepleaps.control.client import INFO, Client, ControlError
from deepleaps.workspace import make_workspace


def info_file(workspace: Path) -> Path:
    """The file a running training's server writes, as errors name it."""
    return workspace.absolute() / INFO


def test_the_command_file_gives_host_port_and_token_before_a_server_runs(tmp_path):
    configs = tmp_path / "resource" / "configs"
    configs.mkdir(parents=True)
    (configs / "default.yaml").write_text(
        "COMMAND_CONTROLLER: {ipc_host: 127.0.0.2, ipc_port: 4242, token_file: secret.token}\n"
    )
    (tmp_path / "secret.token").write_text("abc\n")
    client = Client(workspace=tmp_path)
    assert (client.host, client.port, client.token) == ("127.0.0.2", 4242, "abc")


def test_the_running_servers_info_wins_and_arguments_win_over_both(tmp_path):
    (tmp_path / ".deepleaps").mkdir()
    (tmp_path / ".deepleaps" / "token").write_text("xyz")
    info = {"host": "127.0.0.1", "port": 5555, "token_file": str(tmp_path / ".deepleaps" / "token")}
    (tmp_path / ".deepleaps" / "control.json").write_text(json.dumps(info))
    assert (Client(workspace=tmp_path).port, Client(workspace=tmp_path).token) == (5555, "xyz")
    client = Client("localhost", 7, "given", workspace=tmp_path)
    assert (client.host, client.port, client.token) == ("localhost", 7, "given")


def test_the_servers_info_is_found_beside_the_token_file_the_command_file_names(tmp_path):
    configs = tmp_path / "resource" / "configs"
    configs.mkdir(parents=True)
    (configs / "default.yaml").write_text("COMMAND_CONTROLLER: {ipc_port: 1568, token_file: secrets/ctl.token}\n")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "ctl.token").write_text("tok\n")
    info = {"host": "127.0.0.1", "port": 4711, "token_file": str(tmp_path / "secrets" / "ctl.token")}
    (tmp_path / "secrets" / "control.json").write_text(json.dumps(info))
    client = Client(workspace=tmp_path)
    assert (client.port, client.token) == (4711, "tok")


def test_a_token_file_it_may_not_read_is_named(tmp_path, monkeypatch):
    write_stale_info(tmp_path, 9)
    token = tmp_path / ".deepleaps" / "control.token"
    real = Path.read_text

    def read_text(path, *args, **kwargs):
        if path == token:
            raise PermissionError(13, "Permission denied")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(ControlError) as raised:
        Client(workspace=tmp_path).connect()
    assert str(raised.value) == f"cannot read the token file {token}: Permission denied"


def test_nothing_known_means_the_seeds_defaults(tmp_path):
    client = Client(workspace=tmp_path)
    assert (client.host, client.port, client.token) == ("127.0.0.1", 1568, None)


# ---- no training running ---------------------------------------------------------------------


@pytest.fixture
def refusing_port():
    """A port that refuses connections: bound, not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def write_stale_info(workspace: Path, port: int) -> Path:
    """What a killed training leaves behind: its address and token files."""
    (workspace / ".deepleaps").mkdir(exist_ok=True)
    token = workspace / ".deepleaps" / "control.token"
    token.write_text("stale\n")
    info = workspace / ".deepleaps" / "control.json"
    info.write_text(json.dumps({"host": "127.0.0.1", "port": port, "pid": 1, "token_file": str(token)}))
    return info


def test_no_training_names_the_file_it_looked_for(tmp_path):
    make_workspace(tmp_path)
    with pytest.raises(ControlError) as raised:
        Client(workspace=tmp_path).connect()
    assert str(raised.value) == f"no training is running in this workspace (looked for {info_file(tmp_path)})"


def test_a_stale_address_names_where_nothing_answers(tmp_path, refusing_port):
    info = write_stale_info(make_workspace(tmp_path), refusing_port)
    with pytest.raises(ControlError) as raised:
        Client(workspace=tmp_path).connect()
    assert str(raised.value) == (
        f"no training is running in this workspace "
        f"(nothing answers at 127.0.0.1:{refusing_port}, the address in {info})"
    )


def test_an_address_given_that_refuses_is_not_blamed_on_the_workspace(tmp_path, refusing_port):
    with pytest.raises(ControlError, match=f"cannot reach the training at 127.0.0.1:{refusing_port}: .*refused"):
        Client(port=refusing_port, token="x", workspace=tmp_path).connect()


@pytest.mark.parametrize("command", [["send", "PING"], ["status"], ["client"]])
def test_cli_without_a_training_says_so_and_exits_1(tmp_path, refusing_port, command):
    workspace = make_workspace(tmp_path / "workspace")
    result = run_cli(workspace, *command)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"error: no training is running in this workspace (looked for {info_file(workspace)})\n"

    info = write_stale_info(workspace, refusing_port)
    result = run_cli(workspace, *command)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"error: no training is running in this workspace "
        f"(nothing answers at 127.0.0.1:{refusing_port}, the address in {info})\n"
    )
