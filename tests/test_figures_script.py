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
                "fleet --config configs/quickstart.toml --backend local --partitioner dirichlet --seed",
                "fleet --config configs/quickstart.toml --backend local --partitioner dirichlet --digital --seed",
                "fleet --config configs/quickstart.toml --compare-alignment --seed",
                "sweep --config configs/sweep_mnist.toml --latent-dims 4,8,16,32,64 --bits 32,8,4 --fedavg --seed"):
        assert sum(cmd in line for line in lines) == 2, cmd          # seeds 3 and 4
    assert sum("study response-functions --seeds 0 1 2" in line for line in lines) == 1
    assert sum("study robustness --out" in line for line in lines) == 1
    assert sum("study robustness --quick --seed" in line for line in lines) == 2      # per train seed
    for cmd in ("fleet --config configs/quickstart.toml --clients 2 --backend local --inference-times 1h,1d,1y --seed",
                "fleet --config configs/inference_hwa.toml --clients 2 --backend local --seed"):
        assert sum(cmd in line for line in lines) == 2, cmd          # the fleet on inference chips, per seed
    default_out = _run("--plan", "--seeds", "0", "--only", "quickstart").stdout.strip()   # a folder in the checkout:
    assert default_out.startswith("analog-edge fleet ") and " --out runs/figures/figures-" in default_out  # shown relative
    assert str(ROOT) not in default_out
    bad = _run("--plan", "--only", "nope")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "scripts/figures.py: --only: got 'nope', must be one of quickstart, quickstart-digital, privacy, "
        "privacy-digital, private, privacy-front, dirichlet, dirichlet-digital, alignment, sweep, study, robustness, "
        "robustness-quick, deploy, deploy-hwa"]


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
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode == 0:                                     # which code made the figures
        assert f"commit {head.stdout.strip()}" in md.splitlines()[2]
    assert (out / "sweep.png").stat().st_size > 5000
    assert "seeds" in (out / "sweep.csv").read_text().splitlines()[0]

    # the same figures re-read from the run folders alone (as after several `--only` invocations),
    # and a seed folder without its outputs (a run that did not finish) is named, not skipped
    (out / "fleet" / "seed2").mkdir()
    again = _run("--quick", "--aggregate-only", "--seeds", "0", "1", "2", "--out", str(out), "--no-docs")
    assert again.returncode == 1, again.stderr[-3000:]
    reread = json.loads((out / "figures.json").read_text())["figures"]
    assert [reread["fleet"]["per_seed"][s]["accuracy_pct"] for s in ("seed0", "seed1")] == measured
    assert reread["fleet"]["spread"]["accuracy_pct"] == sp
    assert len(reread["fleet"]["errors"]) == 1 and reread["fleet"]["errors"][0].startswith("seed2: reading")
    assert sorted(reread["sweep"]["per_seed"]) == ["seed0", "seed1"] and not reread["sweep"]["errors"]
    assert "- FAILED seed2: reading" in (out / "figures.md").read_text()


def test_docs_figures_come_from_files_their_commands_write():
    """Each figure copied into docs/ is a file its command writes, under the name README/docs show."""
    import importlib.util
    import inspect

    from analog.studies import robustness_report
    from fleet import inference as deployment
    from fleet.experiments import privacy_front

    spec = importlib.util.spec_from_file_location("figures_script", SCRIPT)
    figures = importlib.util.module_from_spec(spec)
    sys.modules["figures_script"] = figures             # its dataclasses look their module up there
    try:
        spec.loader.exec_module(figures)
        jobs = figures.jobs(False, ROOT)
    finally:
        del sys.modules["figures_script"]
    writers = {"robustness": inspect.getsource(robustness_report.plots),
               "deploy": inspect.getsource(deployment.plot_inference),
               "deploy-hwa": inspect.getsource(deployment.plot_inference),
               "privacy-front": inspect.getsource(privacy_front.write)}
    shown = "".join(page.read_text() for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    pairs = [(job.name, src, dst) for job in jobs for src, dst in job.docs_files]
    assert {name for name, _, _ in pairs} == set(writers)
    for name, src, dst in pairs:
        assert f'"{src}"' in writers[name], (name, src)
        assert dst in shown, dst


def _sweep_json(path: Path, seed: int, dims: list[int], offset: float) -> None:
    rows = []
    for label in ("MixedPrecision on ReRAMSoftBounds", "digital"):
        for d in dims:
            for bits in (32, 8):
                acc = 0.5 + 0.01 * d + offset - (0.02 * seed if label != "digital" else 0)
                rows.append({"label": label, "device": "digital" if label == "digital" else "ReRAMSoftBounds",
                             "algorithm": "MixedPrecision", "latent_dim": d, "bits": bits, "accuracy": acc,
                             "compression_wire": 788 / (d * bits / 8 + 4.5), "compression_pixels": 784 / d,
                             "bytes_per_sample": d * bits / 8 + 4.5, "recon_mse": 0.01 * (seed + 1)})
    path.mkdir(parents=True)
    (path / "sweep.json").write_text(json.dumps({
        "config": {"fleet": {"dataset": "mnist5k", "num_clients": 4, "partitioner": "iid"},
                   "alignment": {"init": "pretrained", "anchors": True, "conditioning": "none"}},
        "rows": rows, "references": {"raw_pixels": {"accuracy": 0.9 + 0.01 * seed}}}))


def test_aggregate_only_states_how_many_seeds_each_point_has(tmp_path):
    # seed 0 ran the whole grid, seeds 1 and 2 only d = 16: each point's mean, bars and "vs digital"
    # gap (paired per seed) must be over the seeds it has, and the figure must say so
    _sweep_json(tmp_path / "sweep" / "seed0", 0, [4, 16], 0.0)
    _sweep_json(tmp_path / "sweep" / "seed1", 1, [16], 0.03)
    _sweep_json(tmp_path / "sweep" / "seed2", 2, [16], -0.03)
    proc = _run("--aggregate-only", "--out", str(tmp_path), "--seeds", "0", "1", "2", "--no-docs")
    assert proc.returncode == 0, proc.stderr
    import csv

    with (tmp_path / "sweep.csv").open() as fh:
        rows = {(r["label"], int(r["latent_dim"]), int(r["bits"])): r for r in csv.DictReader(fh)}
    analog16 = rows[("MixedPrecision on ReRAMSoftBounds", 16, 8)]
    assert int(analog16["seeds"]) == 3
    assert abs(float(analog16["accuracy"]) - statistics.fmean([0.66, 0.67, 0.59])) < 1e-9
    assert abs(float(analog16["vs_digital"]) - statistics.fmean([0.0, -0.02, -0.04])) < 1e-9
    assert abs(float(analog16["seed_min"]) - 0.59) < 1e-9 and abs(float(analog16["seed_max"]) - 0.67) < 1e-9
    assert int(rows[("MixedPrecision on ReRAMSoftBounds", 4, 8)]["seeds"]) == 1
    assert rows[("digital", 16, 8)]["vs_digital"] == ""
    table = (tmp_path / "sweep_table.txt").read_text()
    assert "MixedPrecision on ReRAMSoftBounds | 16 | 8 |" in table and "| 0,1,2 | -2.0 |" in table
    assert "raw-pixel MLP (central, pooled): 91.0% (seeds 0, 1, 2)" in table
    only_two = _run("--aggregate-only", "--out", str(tmp_path), "--seeds", "0", "1", "--no-docs")
    assert only_two.returncode == 0, only_two.stderr
    assert "| 0,1 | -1.0 |" in (tmp_path / "sweep_table.txt").read_text()
    bad = _run("--aggregate-only", "--out", str(tmp_path / "nothing"), "--no-docs")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--out" in bad.stderr


def test_the_seeds_phrase_names_each_group_of_points():
    sys.path.insert(0, str(ROOT / "scripts"))
    from figures import _seeds_phrase

    rows = [{"latent_dim": d, "bits": b, "seed_list": [0, 1, 2] if d >= 16 else [0]} for d in (4, 16, 32)
            for b in (32, 8)]
    assert _seeds_phrase(rows) == ("mean of seeds 0, 1, 2 at d=16, 32 32/8-bit; seed 0 at d=4 32/8-bit; "
                                   "bars min..max")
    assert _seeds_phrase(rows[-2:]) == "mean of 3 seeds (0, 1, 2), bars min..max"
    assert _seeds_phrase(rows[:2]) == "seed 0"


def _load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("figures_script", SCRIPT)
    figures = importlib.util.module_from_spec(spec)
    sys.modules["figures_script"] = figures
    try:
        spec.loader.exec_module(figures)
    finally:
        del sys.modules["figures_script"]
    return figures


def test_fleet_metrics_read_the_strongest_server_attack_and_every_suite_row(tmp_path):
    """The privacy figures come from the suite's `privacy.server_attack`, not only the leaked-pairs attack."""
    rows = [{"attack": "pretrained_map_tuned", "kind": "server", "psnr": 18.3, "ssim": 0.83, "reid": 0.98},
            {"attack": "class_mean", "kind": "baseline", "psnr": 12.8, "ssim": 0.36, "reid": 0.05}]
    report = {"timings_s": {"total": 70.0}, "latent": {"accuracy": 0.9, "accuracy_spread": {"min": 0.8, "max": 0.95}, "bytes_up": 2048,
                         "compression_raw_over_wire": 20.0, "defense": {"epsilon": 284.0}},
              "privacy": {"server_attack": {"rows": rows, "attack": "pretrained_map_tuned", "psnr": 18.3,
                                            "ssim": 0.83, "reid": 0.98, "gain_db": 5.5, "ssim_gain": 0.47}}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    m = _load_script()._fleet_metrics(tmp_path)
    assert m["privacy server_attack gain_db"] == 5.5 and m["privacy server_attack reid"] == 0.98
    assert m["privacy suite class_mean psnr"] == 12.8 and m["privacy suite pretrained_map_tuned ssim"] == 0.83
    assert m["privacy epsilon per row"] == 284.0 and m["accuracy_pct"] == 90.0


def test_front_metrics_name_each_point_by_its_curve_and_value(tmp_path):
    rows = [{"curve": "edge.bits", "value": 4, "accuracy": 0.88, "gain_db": 3.1, "ssim": 0.7, "reid": 0.6},
            {"curve": "mark", "value": "configs/private.toml", "accuracy": 0.84, "gain_db": 1.4, "ssim": None,
             "reid": 0.29}]
    (tmp_path / "front.json").write_text(json.dumps({"rows": rows}))
    m = _load_script()._front_metrics(tmp_path)
    assert m == {"edge.bits=4 accuracy": 0.88, "edge.bits=4 gain_db": 3.1, "edge.bits=4 ssim": 0.7,
                 "edge.bits=4 reid": 0.6, "mark=configs/private.toml accuracy": 0.84,
                 "mark=configs/private.toml gain_db": 1.4, "mark=configs/private.toml reid": 0.29}
