"""Every run gets a folder of its own (nothing is overwritten); `runs/demo/latest` names the newest."""
import os

from fleet.cli.common import link_latest
from fleet.names import new_run_dir


def test_runs_started_in_the_same_second_get_distinct_folders(tmp_path):
    first, second = new_run_dir(tmp_path, "demo"), new_run_dir(tmp_path, "demo")
    assert first != second and first.is_dir() and second.is_dir()
    assert second.name.startswith(first.name) and second.name.endswith("-2")
    (first / "report.json").write_text("first")
    assert (first / "report.json").read_text() == "first"          # the second run took nothing of it


def test_latest_link_follows_the_newest_run_and_is_relative(tmp_path):
    runs = tmp_path / "runs" / "demo"
    a = new_run_dir(runs, "demo")
    link_latest(a, runs / "latest")
    b = new_run_dir(runs, "demo")
    (b / "table.txt").write_text("b")
    link_latest(b, runs / "latest")
    assert (runs / "latest").resolve() == b.resolve() and (runs / "latest" / "table.txt").read_text() == "b"
    assert not os.path.isabs(os.readlink(runs / "latest"))          # survives moving the runs folder
    assert a.is_dir() and sorted(p.name for p in runs.iterdir()) == sorted([a.name, b.name, "latest"])
