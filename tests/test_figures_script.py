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
    for cmd in ("fleet --config configs/quickstart.toml --clients 2 --backend local --inference-times 1h,1d,1y --seed",
                "fleet --config configs/deploy_hwa.toml --clients 2 --backend local --seed"):
        assert sum(cmd in line for line in lines) == 2, cmd          # the fleet on inference chips, per seed
    bad = _run("--plan", "--only", "nope")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "scripts/figures.py: --only: got 'nope', must be one of quickstart, quickstart-digital, privacy, "
        "privacy-digital, sweep, study, robustness, deploy, deploy-hwa"]


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


def test_docs_figures_come_from_files_their_commands_write():
    """Each figure copied into docs/ is a file its command writes, under the name README/docs show."""
    import importlib.util
    import inspect

    from analog.studies import robustness_report
    from fleet import deployment

    spec = importlib.util.spec_from_file_location("figures_script", SCRIPT)
    figures = importlib.util.module_from_spec(spec)
    sys.modules["figures_script"] = figures             # its dataclasses look their module up there
    try:
        spec.loader.exec_module(figures)
        jobs = figures.jobs(False, ROOT)
    finally:
        del sys.modules["figures_script"]
    writers = {"robustness": inspect.getsource(robustness_report.plots),
               "deploy": inspect.getsource(deployment.plot_deploy),
               "deploy-hwa": inspect.getsource(deployment.plot_deploy)}
    shown = (ROOT / "README.md").read_text() + (ROOT / "docs" / "fleet.md").read_text()
    pairs = [(job.name, src, dst) for job in jobs for src, dst in job.docs_files]
    assert {name for name, _, _ in pairs} == set(writers)
    for name, src, dst in pairs:
        assert f'"{src}"' in writers[name], (name, src)
        assert dst in shown, dst
