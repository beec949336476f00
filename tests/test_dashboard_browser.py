"""The dashboard in a real browser (Chromium, driven by Playwright) against real trainings.

One training serves the page from its own process (``deepleaps run --dashboard``) and is
shared by the tests in order, the last of which stops it from the page; another is
watched by ``deepleaps dashboard``, a process of its own on the control channel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from control_fixtures import Training, environment, make_control_workspace, run_cli, wait_for
from workspace_fixtures import deepleaps_command

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Milliseconds a page may take to show what a test waits for.
WAIT_MS = 30_000
BROKEN = "$TRAINING_BATCH( *PrintCommand[content= )"

pytestmark = pytest.mark.slow


def with_definitions(training: Training) -> Training:
    """Its command file LOADs the example's further definitions (IMAGE_GRID, PRINT_LOSS)."""
    path = training.workspace / training.config
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["LOAD"] = ["resource/configs/command/default_runnable_command.yaml"]
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return training


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed, and CI needs these tests to run (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[Training]:
    workspace = make_control_workspace(tmp_path_factory.mktemp("dashboard"))
    training = with_definitions(Training(workspace, "board", args=["--dashboard"]))
    try:
        yield training.start()
    finally:
        training.kill()


def url_of(text: str) -> str:
    match = re.search(r"^dashboard: (http://\S+/\?token=[0-9a-f]+)$", text, re.MULTILINE)
    return match.group(1) if match else ""


@pytest.fixture(scope="module")
def page(live, browser):
    url = wait_for(lambda: url_of(live.stderr()), "the dashboard's URL", on_fail=live.describe)
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(url)
    tab.url_of_board = url
    yield tab
    assert not errors, errors


def total_step(page, node: str = "TRAINING_BATCH") -> int:
    """TRAINING_BATCH's total_step as the page shows it on the graph, once it shows one."""
    selector = f'g[data-node="{node}"][data-total]'
    page.wait_for_selector(selector, timeout=WAIT_MS)
    return int(page.get_attribute(selector, "data-total"))


def rises(page, since: int, node: str = "TRAINING_BATCH") -> None:
    page.wait_for_function(
        "([node, since]) => +document.querySelector(`g[data-node='${node}']`)?.dataset.total > since",
        arg=[node, since],
        timeout=WAIT_MS,
    )


def output(page) -> str:
    return page.inner_text("#output")


def status(training: Training) -> dict:
    return training.send("STATUS")["data"]


# ---- the token ---------------------------------------------------------------------------


def fetch(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read(200)
    except urllib.error.HTTPError as refusal:
        return refusal.code, dict(refusal.headers), refusal.read()


def test_every_path_needs_the_token(page):
    url = page.url_of_board
    base, token = url.split("?token=")
    for path in ("", "events", "static/main.js", "static/vendor/uplot/uPlot.esm.js"):
        assert fetch(base + path)[0] == 403, path
        assert fetch(f"{base}{path}?token={'0' * len(token)}")[0] == 403, path
    body = b'{"verb": "STOP"}'
    assert fetch(base + "api/request", body, {"Content-Type": "application/json"})[0] == 403
    code, headers, text = fetch(url)
    assert code == 200 and b"<title>deepleaps dashboard</title>" in text
    cookie = headers["set-cookie"].split(";")[0]
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
    assert fetch(base + "static/main.js", headers={"Cookie": cookie})[0] == 200
    assert fetch(base + "static/main.js", headers={"Authorization": f"token {token}"})[0] == 200
    # With the token, the page loaded in the browser, its modules and its event stream with it.
    assert page.title() == "deepleaps dashboard"
    page.wait_for_selector("#connection.live", timeout=WAIT_MS)


# ---- watching ----------------------------------------------------------------------------


def test_counters_rise_and_the_loss_curve_gains_points(page):
    assert page.locator('g[data-node="TRAINING_BATCH"] > title').text_content().startswith("TRAINING_BATCH")
    rises(page, total_step(page))
    curve = '.curve[data-file="metrics.csv"][data-column="loss"]'
    page.wait_for_selector(f"{curve}[data-points]", timeout=WAIT_MS)
    points = int(page.get_attribute(curve, "data-points"))
    page.wait_for_function(
        "([curve, points]) => +document.querySelector(curve).dataset.points > points",
        arg=[curve, points],
        timeout=WAIT_MS,
    )
    assert page.locator(f"{curve} canvas").count() == 1


def test_events_are_gathered_once_an_interval_not_sent_per_step(page, live):
    """The page's stream gets one event a second (DASHBOARD.interval), however fast the steps."""
    before = status(live)["nodes"]["TRAINING_BATCH"]["total_step"]
    started = time.monotonic()
    events = 0
    with urllib.request.urlopen(page.url_of_board.replace("/?", "/events?"), timeout=10) as stream:
        while time.monotonic() - started < 4.0:
            line = stream.readline()
            events += line.startswith(b"data: ")
    steps = status(live)["nodes"]["TRAINING_BATCH"]["total_step"] - before
    assert steps >= 20, f"the training made only {steps} steps"
    assert 2 <= events <= 6, f"{events} events in 4 s ({steps} steps)"


# ---- changing ----------------------------------------------------------------------------


def test_a_fragment_is_previewed_applied_and_undone(page, live):
    page.fill("#patch", "$TRAINING_BATCH( IMAGE_GRID )")
    page.click("#diff")
    page.wait_for_function("document.querySelector('#output').textContent.includes('IMAGE_GRID')", timeout=WAIT_MS)
    assert output(page).splitlines()[0] == "+ IMAGE_GRID (SaveImageGridCommand) in TRAINING_BATCH"
    assert "diff-parent" in page.get_attribute('g[data-node="TRAINING_BATCH"]', "class")
    assert "IMAGE_GRID" not in status(live)["nodes"]  # a preview changes nothing

    page.click("#apply")
    page.wait_for_function("document.querySelector('#output').textContent.includes('applied at')", timeout=WAIT_MS)
    patch_id = int(re.search(r"^patch (\d+) applied at", output(page), re.MULTILINE).group(1))
    assert [entry["verb"] for entry in live.journal() if entry["id"] == patch_id] == ["ADD"]
    row = page.wait_for_selector(f'#journal tr[data-patch-id="{patch_id}"]', timeout=WAIT_MS)
    assert "+ IMAGE_GRID (SaveImageGridCommand) in TRAINING_BATCH" in row.inner_text()
    added = page.wait_for_selector('g[data-node="IMAGE_GRID"]', timeout=WAIT_MS)
    assert "added" in added.get_attribute("class")

    page.click(f'#journal tr[data-patch-id="{patch_id}"] button.undo')
    page.wait_for_selector('#journal tr[data-verb="UNDO"]', timeout=WAIT_MS)
    page.wait_for_selector('g[data-node="IMAGE_GRID"]', state="detached", timeout=WAIT_MS)
    undo = [entry for entry in live.journal() if entry["verb"] == "UNDO"]
    assert [entry["text"] for entry in undo] == [str(patch_id)]
    assert "IMAGE_GRID" not in status(live)["nodes"]


def test_a_broken_fragment_shows_where_and_changes_nothing(page, live):
    before = status(live)["version"], len(live.journal())
    page.fill("#patch", BROKEN)
    page.click("#apply")
    page.wait_for_selector("#output.error", timeout=WAIT_MS)
    shown = output(page)
    cli = run_cli(live.workspace, "send", "--port", str(live.port), "--token", live.token, "ADD", BROKEN)
    assert cli.returncode == 1
    assert shown == cli.stderr.rstrip("\n")  # line, column and caret, exactly as the CLI prints them
    assert re.match(r"<ADD>:1:\d+: error: ", shown)
    assert re.search(r"^ +\^", shown, re.MULTILINE)
    assert (status(live)["version"], len(live.journal())) == before


def test_the_running_program_is_edited_whole_and_applied_only_at_its_version(page, live):
    page.click("#load-program")
    page.wait_for_function("document.querySelector('#patch').value.startsWith('# version')", timeout=WAIT_MS)
    text = page.input_value("#patch")
    version = status(live)["version"]
    assert text.startswith(f"# version {version} of the running program") and "TRAINING_BATCH" in text
    page.click("#apply")  # the program as it runs: nothing to change
    page.wait_for_function("document.querySelector('#output').textContent.includes('no change')", timeout=WAIT_MS)

    assert live.send("ADD", "$TRAINING_BATCH( PRINT_LOSS )")["ok"]  # the program moves on meanwhile
    page.click("#apply")
    page.wait_for_function("document.querySelector('#output').textContent.includes('stale')", timeout=WAIT_MS)
    assert f"made against version {version}, the program is at version {version + 1}" in output(page)
    assert "PRINT_LOSS" in status(live)["nodes"] and status(live)["version"] == version + 1
    assert live.send("REMOVE", "PRINT_LOSS")["ok"]


def test_pause_stops_the_counters_and_resume_restarts_them(page, live):
    page.click('#controls button[data-verb="PAUSE"]')
    page.wait_for_selector("#connection.paused", timeout=WAIT_MS)
    paused_at = total_step(page)
    page.wait_for_timeout(2500)  # more than two updates of the page
    assert total_step(page) == paused_at
    assert status(live)["nodes"]["TRAINING_BATCH"]["total_step"] == paused_at
    page.click('#controls button[data-verb="RESUME"]')
    page.wait_for_selector("#connection.live", timeout=WAIT_MS)
    rises(page, paused_at)


def test_set_changes_the_learning_rate(page, live):
    page.fill("#lr", "0.005")
    page.click("#set-lr")
    page.wait_for_function("document.querySelector('#output').textContent.includes('lr = 0.005')", timeout=WAIT_MS)
    assert [entry["text"] for entry in live.journal() if entry["verb"] == "SET"] == ["optimizer.lr 0.005"]
    assert [entry["origin"] for entry in live.journal() if entry["verb"] == "SET"] == ["dashboard"]


def test_stop_ends_the_run_cleanly(page, live):
    page.click('#controls button[data-verb="STOP"]')
    assert live.wait_exit() == 0
    assert [entry["verb"] for entry in live.journal()][-1] == "STOP"
    page.wait_for_function(
        "document.querySelector('#connection').textContent.includes('the training has ended')", timeout=WAIT_MS
    )


# ---- deepleaps dashboard -------------------------------------------------------------------


def test_a_dashboard_of_its_own_watches_and_steers_over_the_control_channel(tmp_path, browser):
    workspace = make_control_workspace(tmp_path)
    training = with_definitions(Training(workspace, "watched")).start()
    out = tmp_path / "dashboard.out"
    with out.open("wb") as stdout:
        board = subprocess.Popen(
            [*deepleaps_command(), "dashboard", "--port", str(training.port), "--token", training.token],
            cwd=workspace,
            env=environment(),
            stdout=stdout,
            stderr=subprocess.STDOUT,
        )
    try:
        url = wait_for(lambda: url_of(out.read_text()), "the dashboard's URL", on_fail=out.read_text)
        tab = browser.new_page()
        tab.goto(url)
        rises(tab, total_step(tab))
        tab.fill("#patch", "$TRAINING_BATCH( IMAGE_GRID )")
        tab.click("#apply")
        tab.wait_for_selector('g[data-node="IMAGE_GRID"]', timeout=WAIT_MS)
        # Over the control channel, as `deepleaps send` would: the origin is the connection.
        assert [(e["verb"], e["origin"].split(":")[0]) for e in training.journal()] == [("ADD", "127.0.0.1")]
        tab.click('#controls button[data-verb="STOP"]')
        assert training.wait_exit() == 0
        # Once the training is gone, the page says that nothing answers at its address.
        tab.wait_for_function(
            "document.querySelector('#connection.down')?.textContent.includes('cannot reach the training')",
            timeout=WAIT_MS,
        )
        tab.close()
    finally:
        board.terminate()
        board.wait(timeout=30)
        training.kill()
