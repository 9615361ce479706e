"""scripts/figures.py (`make figures`): the plumbing, on tiny digits stand-ins. It runs each figure's
command once per seed, reads the numbers back from the runs' own outputs and states their spread."""
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "figures.py"


def _run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), FLWR_TELEMETRY_ENABLED="0", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_plan_lists_every_readme_figure_once_per_seed(tmp_path):
    proc = _run("--plan", "--seeds", "3", "4", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    for cmd in ("fleet --config configs/quickstart.toml --seed",
                "fleet --config configs/quickstart.toml --digital --seed",
                "fleet --config configs/quickstart.toml --backend local --privacy --seed",
                "sweep --config configs/sweep_mnist.toml --latent-dims 4,8,16,32,64 --bits 32,8,4 --fedavg --seed"):
        assert sum(cmd in line for line in lines) == 2, cmd          # seeds 3 and 4
    assert sum("study response-functions --seeds 0 1 2" in line for line in lines) == 1
    assert sum("study robustness --out" in line for line in lines) == 1
    bad = _run("--plan", "--only", "nope")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "scripts/figures.py: --only: got 'nope', must be one of quickstart, quickstart-digital, privacy, "
        "privacy-digital, sweep, study, robustness"]


def test_quick_run_states_per_seed_values_and_their_spread(tmp_path):
    out = tmp_path / "fig"
    proc = _run("--quick", "--seeds", "0", "1", "--out", str(out), "--no-docs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "figures.json").read_text())
    assert summary["seeds"] == [0, 1]
    fleet = summary["figures"]["fleet"]
    assert sorted(fleet["per_seed"]) == ["seed0", "seed1"] and not fleet["errors"]
    measured = [100 * json.loads((out / "fleet" / s / "report.json").read_text())["latent"]["accuracy"]
                for s in ("seed0", "seed1")]
    assert [fleet["per_seed"][s]["accuracy_pct"] for s in ("seed0", "seed1")] == measured
    sp = fleet["spread"]["accuracy_pct"]
    assert sp == {"mean": statistics.fmean(measured), "min": min(measured), "max": max(measured), "n": 2}
    for s in (0, 1):
        assert any(c.endswith(f"--seed {s} --out {out / 'fleet' / f'seed{s}'}") for c in fleet["commands"])
    sweep = summary["figures"]["sweep"]
    assert sorted(sweep["per_seed"]) == ["seed0", "seed1"] and not sweep["errors"]
    md = (out / "figures.md").read_text()
    assert "| accuracy_pct |" in md and f"{sp['min']:.2f}..{sp['max']:.2f}" in md
    assert (out / "sweep.png").stat().st_size > 5000
    assert "seeds" in (out / "sweep.csv").read_text().splitlines()[0]
