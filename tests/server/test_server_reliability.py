"""CI-sized runs of benchmarks/reliability.py: the fast fault cases and a bounded fuzz, each against a
real server process. The full budgets (20 rounds each, 500 clients, a minute of fuzzing) run in the
benchmark itself; see the README."""
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import reliability as rel  # noqa: E402


def _assert_all_rounds_pass(result: dict) -> None:
    failed = [r for r in result["records"] if r is not None][: result["rounds"]]
    assert result["rounds"] > 0 and result["passed"] == result["rounds"], failed


@pytest.mark.parametrize("fault,rounds", [("stall", 3), ("client_kill", 3), ("kill9", 2)])
def test_fault_rounds_keep_every_ack_and_store_nothing_partial(tmp_path, fault, rounds):
    _assert_all_rounds_pass(rel.FAULTS[fault](tmp_path, rounds, random.Random(7)))


@pytest.mark.skipif(bool(rel.can_mount()), reason=rel.can_mount() or "")
def test_disk_full_is_resource_exhausted_and_recovers(tmp_path):
    result = rel.fault_disk_full(tmp_path, 1, random.Random(3))
    _assert_all_rounds_pass(result)
    assert result["records"][0]["codes"] == ["RESOURCE_EXHAUSTED"]


@pytest.mark.skipif(bool(rel.can_netns()), reason=rel.can_netns() or "")
def test_a_cut_link_between_namespaces_loses_and_duplicates_nothing(tmp_path):
    result = rel.fault_link_cut(tmp_path, 2, random.Random(5))
    _assert_all_rounds_pass(result)
    assert result["acked"] > 0


def test_bounded_fuzz_every_rpc_answers_a_status_and_changes_nothing(tmp_path):
    result = rel.fuzz_run(tmp_path, seconds=8, seed=11)
    assert result["alive"] and result["store_unchanged"] and result["victim_ok"], result
    assert result["n_bad"] == 0, result["bad"]
    assert result["requests"] >= 50 and len(result["codes"]) >= 3
