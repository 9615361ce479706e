"""The response-function study: --quick reproduces the orderings of Wu et al. and Gupta et al."""
from __future__ import annotations

import json

import pytest

from analog.studies.config import StudyConfig
from fleet.cli.entry import main


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    assert main(["study", "response-functions", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out, json.loads((out / "results.json").read_text())


def _ls(results, device, algorithm):
    return next(r for r in results["least_squares"]["summary"]
                if r["device"] == device and r["algorithm"] == algorithm)["final_error_mean"]


def test_quick_study_writes_its_outputs(quick_results):
    out, results = quick_results
    for name in ("results.json", "config.json", "table.txt", "least_squares.png", "mnist.png", "fixed_point.png"):
        assert (out / name).stat().st_size > 0, name
    assert "Least squares" in (out / "table.txt").read_text()
    assert StudyConfig.from_dict(json.loads((out / "config.json").read_text())) == StudyConfig.quick()


def test_analog_sgd_stalls_where_tiki_taka_with_zero_shift_converges(quick_results):
    _, results = quick_results
    digital = _ls(results, "power:3", "digital")
    for device in ("power:3", "asym:0.3"):
        sgd, tt = _ls(results, device, "analog-sgd"), _ls(results, device, "tiki-taka")
        assert sgd > 3.0 * tt, (device, sgd, tt)                    # the implicit penalty's bias
        assert tt < 2.0 * digital, (device, tt, digital)             # digital-level error
        assert _ls(results, device, "rlv2") < 2.5 * digital
        run = next(r for r in results["least_squares"]["runs"]
                   if r["device"] == device and r["algorithm"] == "analog-sgd")
        assert run["final_error"] > 0.8 * run["half_error"]            # more steps do not help Analog SGD
    # symmetric point at c*tau != 0: Tiki-Taka without the reference fails
    assert _ls(results, "asym:0.3", "tiki-taka-no-zs") > 3.0 * _ls(results, "asym:0.3", "tiki-taka")


def test_stochastic_rounding_beats_nearest_at_few_fractional_bits(quick_results):
    _, results = quick_results
    acc = {(r["frac_bits"], r["mode"]): r["accuracy_mean"] for r in results["fixed_point"]["summary"]}
    assert acc[(8, "stochastic")] > acc[(8, "nearest")] + 0.2       # nearest drops the small updates
    assert abs(acc[(14, "nearest")] - acc[(None, "float32")]) < 0.05  # enough bits: all formats train
    assert acc[(8, "stochastic")] > acc[(None, "float32")] - 0.05


def test_mnist_quick_part_trains(quick_results):
    _, results = quick_results
    acc = {r["algorithm"]: r["accuracy_mean"] for r in results["mnist"]["summary"]}
    # one epoch on 1,000 digits is too short to order the algorithms reliably (the full study does);
    # here every variant must learn: well above chance (0.1)
    assert min(acc.values()) > 0.4, acc
    assert any(c["claim"].startswith("MNIST") for c in results["checks"])


def test_study_config_validates_and_loads_toml_dicts():
    cfg = StudyConfig.from_dict({"preset": "quick", "seeds": [1, 2], "mnist": {"gamma_res": [1, 2]}})
    assert cfg.seeds == (1, 2) and cfg.mnist.gamma_res == (1, 2) and cfg.least_squares.steps == 1500
    for data, message in [({"parts": ["nope"]}, "parts: got 'nope'"),
                          ({"least_squares": {"devices": ["power:-1"]}}, "least_squares.devices: got 'power:-1'"),
                          ({"mnist": {"epochs": -1}}, "mnist.epochs: got -1"),
                          ({"fixed_point": {"frac_bits": [16]}}, "fixed_point.frac_bits: got 16"),
                          ({"mnist": {"speed": 1}}, "mnist.speed: unknown key")]:
        with pytest.raises(ValueError, match=message):
            StudyConfig.from_dict(data)


def test_cli_rejects_bad_flags(tmp_path, capsys):
    assert main(["study", "response-functions", "--out", str(tmp_path), "--config", str(tmp_path / "no.toml")]) == 2
    assert "--config" in capsys.readouterr().err


def test_plots_state_what_ran_and_hide_no_data(quick_results):
    from analog.studies.report import FEW_POINTS, build_figure
    from analog.studies.summarize import plot_specs

    _, results = quick_results
    specs = {s["name"]: s for s in plot_specs(results)}
    assert set(specs) == {"least_squares.png", "mnist.png", "fixed_point.png"}
    assert "1500 steps" in specs["least_squares.png"]["suptitle"]
    assert "1000 train / 500 test" in specs["mnist.png"]["suptitle"]
    assert "16-bit fixed point" in specs["fixed_point.png"]["suptitle"]
    for name, spec in specs.items():
        assert "1 seed (0)" in spec["suptitle"], name
        fig = build_figure(spec["panels"], spec["suptitle"], spec["ncols"])
        fig.canvas.draw()
        (legend,) = fig.legends                      # one legend for the figure, none inside a panel
        box, page = legend.get_window_extent(), fig.bbox
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0, name   # nothing cut off
        for ax, panel in zip(fig.axes, spec["panels"]):
            assert ax.get_legend() is None and not box.overlaps(ax.get_window_extent()), name
            for line in ax.get_lines():
                if len(line.get_xdata()) <= FEW_POINTS:
                    assert line.get_marker() not in (None, "None", ""), (name, line.get_label())
            if panel.get("integer_x"):
                lo, hi = ax.get_xlim()
                ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
                assert ticks and all(float(t).is_integer() for t in ticks), (name, ticks)


def test_fixed_point_plot_separates_formats(quick_results):
    from analog.studies.summarize import plot_specs

    _, results = quick_results
    spec = next(s for s in plot_specs(results) if s["name"] == "fixed_point.png")
    by_fl, curves = spec["panels"]
    assert {s["label"] for s in by_fl["series"]} == {"stochastic", "nearest", "float32"}
    assert next(s for s in by_fl["series"] if s["label"] == "nearest")["x"] == [8, 14]
    labels = [s["label"] for s in curves["series"]]
    assert len(labels) == len(set(labels)) == 5 and all("final" in lab for lab in labels)


def test_stall_check_states_its_tolerance(quick_results):
    from analog.studies.summarize import STALL_TOLERANCE

    _, results = quick_results
    stalls = [c for c in results["checks"] if "stalls" in c["claim"]]
    assert stalls and all(f"< {STALL_TOLERANCE:.0%}" in c["claim"] for c in stalls)
    for c in stalls:
        half, end = (float(v) for v in c["value"].split(" (")[0].split(" -> "))
        assert c["holds"] == (end > (1 - STALL_TOLERANCE) * half) and "%)" in c["value"]
