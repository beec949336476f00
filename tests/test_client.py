"""Where ``Client`` finds the training: arguments, the server's info file, the workspace config."""

from __future__ import annotations

import json

from deepleaps.control.client import Client


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


def test_nothing_known_means_the_seeds_defaults(tmp_path):
    client = Client(workspace=tmp_path)
    assert (client.host, client.port, client.token) == ("127.0.0.1", 1568, None)
