"""What the dashboard reads, asks and accepts, without a browser: file tails, the data of
STATUS, the preview of a fragment (``DIFF ADD``), the feed's events, settings."""

from __future__ import annotations

import asyncio
import json

import pytest
from control_fixtures import InProcess

from deepleaps.dashboard.feed import Feed
from deepleaps.dashboard.link import ControllerLink
from deepleaps.dashboard.settings import DashboardSettings
from deepleaps.dashboard.tail import CsvTail, JournalTail
from deepleaps.lang import ProgramError


def test_a_csv_tail_reads_complete_rows_once_and_starts_over_when_the_header_widens(tmp_path):
    path = tmp_path / "metrics.csv"
    tail = CsvTail(path)
    assert tail.read() == (False, [])  # not written yet
    path.write_text("step,total_step,loss\n1,1,0.5\n2,2,0.4\n3,3,0.")
    assert tail.read() == (True, [[1.0, 1.0, 0.5], [2.0, 2.0, 0.4]])  # the torn last row waits
    assert tail.columns == ["step", "total_step", "loss"]
    with path.open("a") as file:
        file.write("3\n")
    assert tail.read() == (False, [[3.0, 3.0, 0.3]])
    assert tail.read() == (False, [])
    # LogMetricsCommand rewrites the file with a wider header when a metric appears.
    path.write_text("step,total_step,loss,valid_accuracy\n1,1,0.5,\n2,2,0.4,0.75\n")
    assert tail.read() == (True, [[1.0, 1.0, 0.5, None], [2.0, 2.0, 0.4, 0.75]])
    assert tail.columns[-1] == "valid_accuracy"


def test_a_journal_tail_reads_each_entry_once(tmp_path):
    path = tmp_path / "journal.jsonl"
    tail = JournalTail(path)
    assert tail.read() == []
    path.write_text(json.dumps({"id": 1}) + "\n" + '{"id": ')
    assert tail.read() == [{"id": 1}]
    with path.open("a") as file:
        file.write("2}\n")
    assert tail.read() == [{"id": 2}]
    assert tail.read() == []


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"host": "0.0.0.0"},
            "the dashboard serves loopback addresses only, not '0.0.0.0'; set DASHBOARD.allow_remote",
        ),
        (
            {"intervall": 2},
            "unknown DASHBOARD setting intervall; settings are allow_remote, host, interval, max_points, port",
        ),
        ({"interval": 0}, "DASHBOARD.interval must be above 0 and DASHBOARD.max_points at least 1"),
    ],
)
def test_settings_are_checked_and_each_limit_names_its_setting(section, message):
    with pytest.raises(ProgramError) as refused:
        DashboardSettings.from_section(section)
    assert message in str(refused.value)


def test_a_remote_address_needs_allow_remote():
    assert DashboardSettings.from_section({"host": "0.0.0.0", "allow_remote": True}).host == "0.0.0.0"
    assert DashboardSettings.from_section(None, port=8123).port == 8123


def test_diff_add_previews_a_fragment_as_add_would_apply_it_and_changes_nothing(tmp_path):
    board = InProcess(tmp_path, {"name": "SGD", "lr": 0.1})
    fragment = '$root( *PrintCommand[content="y"] )'
    preview = board.send("DIFF", f"ADD {fragment}")
    assert preview["ok"] and preview["diff"] == ["+ PrintCommand_1 (PrintCommand) in root"]
    assert (preview["version"], board.journaled()) == (1, [])
    applied = board.send("ADD", fragment)
    assert applied["diff"] == preview["diff"] and applied["version"] == 2
    broken = board.send("DIFF", "ADD $root( *PrintCommand[content= )")
    assert not broken["ok"] and broken["errors"][0]["file"] == "<ADD>" and broken["line"] == 1


def test_status_gives_each_nodes_counters_and_what_changed_it_live(tmp_path):
    board = InProcess(tmp_path, {"name": "SGD", "lr": 0.1})
    added = board.send("ADD", '$root( *PrintCommand[content="y"] )')
    data = board.send("STATUS")["data"]
    assert set(data["nodes"]) == {"root", "PrintCommand", "PrintCommand_1"}
    assert data["nodes"]["root"] == {"step": 0, "total_step": 0, "epoch": 0, "finished": False}
    assert data["added_by"] == {"PrintCommand_1": added["patch_id"]}
    assert (data["failed"], data["run_dir"]) == ([], None)


def test_the_feed_sends_what_changed_and_nothing_when_nothing_did(tmp_path):
    board = InProcess(tmp_path, {"name": "SGD", "lr": 0.1})
    feed = Feed(ControllerLink(board.controller), interval=1.0, max_points=10)

    async def updates() -> list:
        page = feed.subscribe()
        await feed.update()  # the first: the status and the picture
        await feed.update()  # nothing moved
        board.send("ADD", '$root( *PrintCommand[content="y"] )')
        await feed.update()  # a new version: a new picture
        feed.close("the training has ended")
        return [page.get_nowait() for _ in range(page.qsize())]

    snapshot, first, changed, ended, end = asyncio.run(updates())
    assert snapshot["connected"] is False and snapshot["journal_reset"]
    assert first["connected"] and first["status"]["version"] == 1 and "<title>PrintCommand</title>" in first["svg"]
    assert changed["status"]["version"] == 2 and "<title>PrintCommand_1</title>" in changed["svg"]
    assert "connected" not in changed  # only what changed
    assert ended == {"connected": False, "error": "the training has ended"} and end is None
