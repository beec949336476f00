"""The control channel turned against the machine, and held (docs/security.md).

Every request an attacker on the same machine was seen to make — a class that
runs a program, a pickle that does, files written and read outside the run,
modules from outside the workspace — sent to a live training, once with the
token and once as the seed's unauthenticated client. Each is refused; no file
outside the run directory is created or changed, no process is spawned (each
would ``touch`` a marker), and the training goes on to finish normally.
Then the connections: waiting ones cannot keep the owner out, fifty clients
at once are all answered, a connection is held to its rate, TLS beyond
loopback; and a seeded fuzz of ten thousand hostile frames.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import random
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
from control_fixtures import (
    Training,
    frame,
    is_closed,
    make_control_workspace,
    read_reply,
    run_cli,
    running,
    wait_for,
)

from deepleaps.control.client import Client
from deepleaps.control.editjson import script_to_data
from deepleaps.control.editscript import AddNode, EditScript, value_to_ast
from deepleaps.control.framing import HEADER
from deepleaps.lang.serialize import to_data
from deepleaps.workspace.confine import CLASSES_SETTING, MODULES_SETTING, READ_SETTING, WRITE_SETTING

pytestmark = pytest.mark.slow

SECRET = "s3cr3t-d0-not-echo"
QUIET = 'run_cycle="TRAINING_BATCH.step:100000"'


class Explosive:
    """A checkpoint that, unpickled, runs ``touch``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return subprocess.call, (["touch", str(self.marker)],)


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A workspace, and beside it a folder of files no request may touch, with the markers a
    spawned process or an unpickled checkpoint would create."""
    root = tmp_path_factory.mktemp("confined")
    workspace = make_control_workspace(root / "ws")
    outside = root / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("precious\n")
    (outside / "secret.txt").write_text(f"{SECRET}\n")
    (outside / "secret.yaml").write_text(f"DEFINE: {{{SECRET}: [\n")
    (workspace / "notes.yaml").write_text(f"{SECRET}: [\n")  # in the workspace, and no command file
    torch.save({"modules": Explosive(outside / "pwned-pickle")}, outside / "evil.pt")
    return root, workspace, outside


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``root`` but the run directories, logs and caches: size, mtime, digest."""
    skipped = ("resource/output", "test-logs", ".deepleaps", "__pycache__")
    files = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not any(part in relative for part in skipped):
            stat = path.stat()
            files[relative] = (stat.st_size, stat.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return files


def corpus(outside: Path, version: int) -> list[tuple[str, str, str]]:
    """(verb, payload, what the refusal says) for each hostile request seen."""
    marker = outside / "pwned"
    popen = f'{{class="subprocess.Popen", args={{args=["touch", "{marker}"]}}}}'
    patch = EditScript(
        [
            AddNode(
                "EVIL",
                "TRAINING_BATCH",
                "TrainerContainerLoaderCommand",
                "leaf",
                {"model": {"class": "subprocess.Popen", "args": {"args": ["touch", str(marker)]}}},
            )
        ],
        version,
    )
    refused_class = "class 'subprocess.Popen' is neither"
    return [
        ("ADD", f"$TRAINING_BATCH( *TrainerContainerLoaderCommand[model={popen}] )", refused_class),
        ("PATCH", json.dumps(script_to_data(patch)), refused_class),
        ("ADD", '$TRAINING_BATCH( *TrainerContainerLoaderCommand[container="os.system"] )', CLASSES_SETTING),
        (
            "ADD",
            f'$TRAINING_BATCH( *ModuleLoadClass[required=["MODEL"], MODEL={{file_name="{outside}/evil.pt"}}] )',
            READ_SETTING,
        ),
        ("ADD", f'$TRAINING_BATCH( *LogMetricsCommand[file="{outside}/victim.txt"] )', WRITE_SETTING),
        ("ADD", '$TRAINING_BATCH( *LogMetricsCommand[file="../../../../outside/victim.txt"] )', WRITE_SETTING),
        ("ADD", f'$TRAINING_BATCH( *SaveImageGridCommand[folder="{outside}"] )', WRITE_SETTING),
        ("ADD", f'$TRAINING_BATCH( *ModuleSaveClass[base_path="{outside}"] )', WRITE_SETTING),
        ("SET", f'LOG_METRICS.file "{outside}/victim.txt"', WRITE_SETTING),
        ("LOAD", "../../../../etc/passwd", "LOAD takes the path of a command file"),
        ("LOAD", f"{outside}/secret.txt", "LOAD takes the path of a command file"),
        ("LOAD", f"{outside}/secret.yaml", READ_SETTING),
        ("LOAD", "notes.yaml", "LOAD: 'notes.yaml' is not a command file (line 2, column 1)"),
        ("IMPORT_MODULE", "os", MODULES_SETTING),
        ("RELOAD_MODULE", "os", MODULES_SETTING),
        ("RELOAD_MODULE", "site", MODULES_SETTING),
        ("IMPORT_MODULE", "this.x", MODULES_SETTING),
        ("ADD_COMMAND_MODULE", "subprocess", MODULES_SETTING),
    ]


def assert_untouched(training: Training, before: dict, root: Path, outside: Path) -> None:
    assert snapshot(root) == before
    assert not (outside / "pwned").exists() and not (outside / "pwned-pickle").exists()
    for path in (outside / "victim.txt", outside / "secret.txt"):
        assert path.read_text().startswith(("precious", SECRET))
    assert "Zen of Python" not in training.stdout()  # `this` was never imported


def stop_and_finish(training: Training, journal_before: int) -> None:
    """The training still trains, stops at STOP and exits normally; nothing refused reached the journal."""
    assert training.process.poll() is None, training.describe()
    training.wait_logged(training.last_logged_step() + 2)
    assert training.send("STOP")["ok"]
    assert training.wait_exit() == 0, training.describe()
    assert [entry["verb"] for entry in training.journal()[journal_before:]] == ["STOP"]


def test_the_hostile_corpus_is_refused_with_the_token(place):
    root, workspace, outside = place
    with running(workspace, "hostile-token", throttle=0.05) as training:
        before = snapshot(root)
        version = training.send("STATUS")["version"]
        journal = len(training.journal())
        for verb, payload, refusal in corpus(outside, version):
            reply = training.send(verb, payload)
            assert reply["ok"] is False, (verb, payload, reply)
            assert refusal in reply["message"], (verb, payload, reply["message"])
            assert SECRET not in json.dumps(reply) and "root:x:0:0" not in json.dumps(reply)
            assert training.send("STATUS")["version"] == version
        if_spanned = training.send("ADD", f'$TRAINING_BATCH( *LogMetricsCommand[file="{outside}/v.txt"] )')
        assert if_spanned["line"] == 1 and if_spanned["column"] > 1 and "^" in if_spanned["message"]
        assert_untouched(training, before, root, outside)
        assert training.send("STATUS")["version"] == version
        stop_and_finish(training, journal)
    assert_untouched(training, before, root, outside)


def send_seed(port: int, text: str) -> bytes:
    """One frame as the seed's client sends it; the byte it gets back (b"" for a reset)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        data = text.encode()
        sock.sendall(frame(data))
        try:
            return sock.recv(1)
        except ConnectionResetError:
            return b""


def test_the_hostile_corpus_is_refused_in_the_seeds_unauthenticated_mode(place):
    root, workspace, outside = place
    controller = {"unauthenticated": True}
    with running(workspace, "hostile-seed", throttle=0.05, controller=controller) as training:
        before = snapshot(root)
        version = training.send("STATUS")["version"]
        journal = len(training.journal())
        items = corpus(outside, version)
        for verb, payload, _ in items:
            assert send_seed(training.port, f"{verb} {payload}") == b"\x00"
        printed = wait_for(
            lambda: (out := training.stdout()).count("rejected:") >= len(items) and out,
            "every request to be refused",
            on_fail=training.describe,
        )
        for verb, _, refusal in items:
            assert f"[control] {verb} rejected:" in printed and refusal in printed
        assert SECRET not in printed and "root:x:0:0" not in printed
        assert_untouched(training, before, root, outside)
        assert training.send("STATUS")["version"] == version
        stop_and_finish(training, journal)
    assert_untouched(training, before, root, outside)


# ---- connections ------------------------------------------------------------------------------

CONNECTIONS = {"auth_timeout": 1, "max_clients": 4, "max_pending": 8, "read_timeout": 2}


def idle_connections(training: Training, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        held.append(training.connect_raw())
    return held


def test_idle_connections_that_never_authenticate_cannot_keep_the_owner_from_stop(place):
    _, workspace, _ = place
    options = {"controller": CONNECTIONS, "private": False}
    with running(workspace, "lockout", **options) as training:
        held = idle_connections(training, 40)
        try:
            started = time.monotonic()
            status = run_cli(workspace, "send", "STATUS")
            assert status.returncode == 0, status.stderr
            stop = run_cli(workspace, "send", "STOP")
            assert stop.returncode == 0, stop.stderr
            assert "stopping" in stop.stdout
            assert time.monotonic() - started < 20
            assert training.wait_exit() == 0, training.describe()
        finally:
            for sock in held:
                sock.close()


@pytest.fixture(scope="module")
def crowded(place):
    _, workspace, _ = place
    controller = {**CONNECTIONS, "max_requests_per_second": 50}
    with running(workspace, "crowded", throttle=0.05, controller=controller) as training:
        yield training


def test_a_connection_that_does_not_authenticate_is_closed_within_the_auth_timeout(crowded):
    with crowded.connect_raw() as sock:
        started = time.monotonic()
        reply = read_reply(sock, timeout=10)
        assert reply == {"ok": False, "message": "not authenticated within 1 s"}
        assert is_closed(sock)
        assert time.monotonic() - started < 3
    with crowded.connect_raw() as sock:  # half a HELLO: closed at the auth timeout, before the read timeout
        started = time.monotonic()
        sock.sendall(HEADER.pack(100) + b"HELLO ")
        reply = read_reply(sock, timeout=10)
        assert reply is not None and reply["ok"] is False and "not complete in time" in reply["message"]
        assert time.monotonic() - started < CONNECTIONS["read_timeout"]


def test_over_max_clients_stop_status_and_ping_are_served_and_the_rest_retried(crowded):
    held = [crowded.client(timeout=30).connect() for _ in range(CONNECTIONS["max_clients"])]
    try:
        with crowded.connect_raw() as extra:
            extra.sendall(frame(f"HELLO {crowded.token}".encode()))
            assert read_reply(extra)["ok"]
            extra.sendall(frame(b"STATUS"))
            assert read_reply(extra)["ok"]
            extra.sendall(frame(f"ADD $TRAINING_BATCH( *PrintCommand[{QUIET}] )".encode()))
            assert read_reply(extra) == {"ok": False, "busy": True, "message": "too many clients; try again later"}
            assert is_closed(extra)
        threading.Timer(1.0, held.pop().close).start()  # a slot comes free in a second
        with crowded.client(timeout=30) as client:
            started = time.monotonic()
            added = client.send("ADD", f"$TRAINING_BATCH( *PrintCommand[{QUIET}] )")
            assert added["ok"], added
            assert time.monotonic() - started >= 0.5  # it was retried until the slot came free
            (op,) = [op for op in added["script"]["operations"] if op["op"] == "add_node"]
            assert client.send("REMOVE", op["name"])["ok"]
    finally:
        for client in held:
            client.close()


def test_fifty_clients_at_once_are_all_answered(crowded):
    replies: list[dict] = []
    problems: list[str] = []
    barrier = threading.Barrier(50, timeout=30)

    def ask() -> None:
        try:
            barrier.wait()
            with crowded.client(timeout=60) as client:
                replies.append(client.send("STATUS"))
                replies.append(client.send("EXPORT", "crowd 1"))
        except Exception as problem:  # reported below
            problems.append(f"{type(problem).__name__}: {problem}")

    threads = [threading.Thread(target=ask, daemon=True) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not problems, problems[:5]
    assert len(replies) == 100 and all(reply["ok"] for reply in replies), [r for r in replies if not r["ok"]][:3]


def test_one_connection_is_held_to_its_request_rate(crowded):
    with crowded.client() as client:
        started = time.monotonic()
        for _ in range(150):
            assert client.send("PING")["ok"]
        elapsed = time.monotonic() - started
    assert elapsed >= 0.8 * (150 - 50) / 50, elapsed


# ---- TLS and remote addresses ---------------------------------------------------------------------


def write_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "deepleaps-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert, key_path = folder / "control.crt", folder / "control.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert, key_path


def test_beyond_loopback_needs_allow_remote_and_tls_and_then_speaks_only_tls(place):
    _, workspace, _ = place
    cert, key = write_certificate(workspace)
    for name, extra, refusal in [
        ("remote-plain", {}, "set COMMAND_CONTROLLER.allow_remote"),
        ("remote-no-tls", {"allow_remote": True}, "set COMMAND_CONTROLLER.tls_cert and tls_key"),
    ]:
        training = Training(workspace, name, controller={"ipc_host": "0.0.0.0", **extra})
        result = run_cli(workspace, "run", "--port", "0", "--config", training.config)
        assert result.returncode == 1 and refusal in result.stderr, result.stderr
    remote = {"ipc_host": "0.0.0.0", "allow_remote": True, "tls_cert": cert.name, "tls_key": key.name}
    with running(workspace, "remote-tls", controller=remote) as training:
        assert training.info["tls_cert"] == str(cert)
        with Client("127.0.0.1", training.port, training.token, cafile=cert) as client:
            assert client.send("PING")["ok"]
        with training.connect_raw() as plain:  # a frame in clear is no TLS handshake
            plain.sendall(frame(f"HELLO {training.token}".encode()))
            assert read_reply(plain, timeout=10) is None
        assert training.send("STOP")["ok"]
        assert training.wait_exit() == 0, training.describe()


# ---- fuzz -------------------------------------------------------------------------------------------

DANGEROUS_CLASSES = [
    "subprocess.Popen",
    "subprocess.run",
    "os.system",
    "os.popen",
    "builtins.exec",
    "builtins.eval",
    "builtins.open",
    "torch.load",
    "torch.hub.load",
    "torch.utils.data.datapipes.iter.Saver",
    "torch.utils.data.datapipes.iter.FileOpener",
    "pickle.loads",
    "shutil.rmtree",
    "importlib.import_module",
    "src.model.SimpleConv.torch.load",
    "deepleaps.app.app.App",
    "this.x",
    "antigravity.fly",
]
MODULES = ["os", "sys", "site", "this", "antigravity", "subprocess", "json", "_io", "torch", "deepleaps.control"]
VERBS = ["IMPORT_MODULE", "RELOAD_MODULE", "ADD_COMMAND_MODULE"]


def hostile_frame(rng: random.Random, outside: Path, version: int) -> str:
    """One request that must be refused, drawn at random."""
    escape = "../" * rng.randint(1, 8) + rng.choice(["victim.txt", "etc/passwd", "x.csv"])
    outside_path = rng.choice([str(outside / "victim.txt"), "/etc/passwd", "/tmp/x", escape, str(outside) + "/"])
    cls = rng.choice(DANGEROUS_CLASSES)
    marker = outside / "pwned"
    args = {"args": ["touch", str(marker)]} if rng.random() < 0.7 else {"args": [rng.random()]}
    spec = {"class": cls, "args": args}
    choice = rng.randrange(9)
    if choice == 0:
        key = rng.choice(["model", "loss", "optimizer"])
        return f"ADD $TRAINING_BATCH( *TrainerContainerLoaderCommand[{key}={_value(spec)}] )"
    if choice == 1:
        node = rng.choice(["LogMetricsCommand[file=", "SaveImageGridCommand[folder=", "ModuleSaveClass[base_path="])
        return f'ADD $TRAINING_BATCH( *{node}"{outside_path}"] )'
    if choice == 2:
        return f'ADD $TRAINING_BATCH( *ModuleLoadClass[MODEL={{file_name="{outside_path}"}}] )'
    if choice == 3:
        return f"{rng.choice(VERBS)} {rng.choice(MODULES)}{rng.choice(['', '.x', '.path', '.a.b'])}"
    if choice == 4:
        return f"LOAD {outside_path}{rng.choice(['', '.yaml', '.yml', '.txt'])}"
    if choice == 5:
        operation = AddNode(f"EVIL{rng.randrange(1000)}", "TRAINING_BATCH", "TrainerContainerLoaderCommand", "leaf")
        data = script_to_data(EditScript([operation], version))
        data["operations"][0]["arguments"] = _patched_arguments(spec, rng)
        return "PATCH " + json.dumps(data)
    if choice == 6:
        return f'SET LOG_METRICS.file "{outside_path}"'
    if choice == 7:  # a refused class with characters replaced at random
        mangled = list(cls)
        for _ in range(rng.randint(1, 3)):
            mangled[rng.randrange(len(mangled))] = rng.choice("\"'[]{}(),=$*\\\n ./:")
        return f"ADD $TRAINING_BATCH( *TrainerContainerLoaderCommand[container={_value(''.join(mangled))}] )"
    return f"ADD $TRAINING_BATCH( *TrainerContainerLoaderCommand[data={{train={{dataset={_value(spec)}}}}}] )"


def _patched_arguments(spec: dict, rng: random.Random) -> dict:
    key = rng.choice(["model", "loss", "container"])
    value = spec["class"] if key == "container" else spec
    return {key: to_data(value_to_ast(value))}


def _value(value) -> str:
    """A Python value written in the language."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    return json.dumps(value)


def test_ten_thousand_seeded_hostile_frames_change_nothing(place):
    root, workspace, outside = place
    connections, per_connection = 20, 500
    # All connections at once, paced together (the default max_clients would have 12 of
    # them retry "busy" while the others' paced work goes on), paced at half the time (at
    # the default 5%, 10,000 requests take four minutes), against a training that
    # outlasts the fuzz.
    controller = {"max_clients": connections, "change_share": 0.5}
    with running(workspace, "fuzz", epochs=10**6, throttle=0.02, controller=controller) as training:
        before = snapshot(root)
        version = training.send("STATUS")["version"]
        journal = len(training.journal())
        failures: list[str] = []
        counted: list[int] = []

        def fuzz(seed: int) -> None:
            rng = random.Random(seed)
            sent = 0
            try:
                with training.client(timeout=60) as client:
                    for index in range(per_connection):
                        text = hostile_frame(rng, outside, version)
                        verb, _, payload = text.partition(" ")
                        reply = client.send(verb, payload)
                        sent += 1
                        if index % 50 == 0:  # the program never moves
                            reply = {**reply, "program": client.send("STATUS")["version"]}
                        if reply["ok"] or reply.get("program", version) != version or "internal" in reply["message"]:
                            failures.append(f"seed {seed}: {text[:300]!r} -> {json.dumps(reply)[:500]}")
                            return
            except Exception as problem:  # reported below
                failures.append(f"seed {seed}: {type(problem).__name__}: {problem}")
            finally:
                counted.append(sent)

        threads = [threading.Thread(target=fuzz, args=(seed,), daemon=True) for seed in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        assert not failures, failures[:5]
        assert sum(counted) == connections * per_connection >= 10_000
        assert training.send("STATUS")["version"] == version
        assert len(training.journal()) == journal
        assert_untouched(training, before, root, outside)
        stop_and_finish(training, journal)
