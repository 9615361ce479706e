"""The fleet report labels the classifier's numbers by what they are."""
from fleet.run.report import classifier_summary
from fleet.run.service import classifier_status
from protos import latent_service_pb2 as pb


def test_held_out_accuracy_is_reported_on_the_held_out_rows():
    status = pb.ClassifierStatus(version=3, held_out_accuracy=0.665, trained_rows=3199, held_out_rows=801,
                                 description="analog MLP 32 -> 128 -> 10")
    clf = classifier_status(status)
    assert (clf["trained_rows"], clf["held_out_rows"]) == (3199, 801)
    assert classifier_summary(clf) == ("classifier v3: server-side held-out accuracy 66.5% on 801 held-out rows, "
                                       "trained on 3199 rows (analog MLP 32 -> 128 -> 10)")


def _result(n_clients=5):
    # a Dirichlet fleet: very different partition sizes
    sizes = [(40 + 90 * i, 10 + 20 * i) for i in range(n_clients)]
    clients = [{"partition_id": i, "n_train": tr, "n_test": te, "accuracy": min(1.0, 0.2 + 0.15 * i), "correct": 0}
               for i, (tr, te) in enumerate(sizes)]
    return {"name": "quickstart", "num_clients": n_clients, "dataset": "mnist5k", "partition": "dirichlet(0.5)",
            "alignment": "shared_init+adapter", "seed": 0,
            "edge_side": {"mode": "analog", "device": "ReRAMSoftBounds", "algorithm": "TikiTaka"},
            "server_side": {"mode": "digital"},
            "latent": {"latent_dim": 32, "bits": 8, "accuracy": 0.61, "clients": clients},
            "fedavg": {"accuracy": 0.48, "clients": clients}}


def test_per_client_bars_show_counts_and_the_legend_hides_none():
    from fleet.run.report import per_client_figure

    result = _result()
    fig = per_client_figure(result)
    fig.canvas.draw()
    ax = fig.axes[0]
    title = ax.get_title().replace("\n", " ")
    for part in ("dirichlet(0.5)", "edge TikiTaka on ReRAMSoftBounds", "server digital", "d=32 8-bit", "1 seed (0)"):
        assert part in title, (part, title)
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[4] == "4\n400 train\n90 test"
    (legend,) = fig.legends
    box = legend.get_window_extent()
    assert ax.get_legend() is None
    for bar in ax.patches:                         # no bar, not even a 95% one, behind the legend
        assert not box.overlaps(bar.get_window_extent())
    assert len(ax.patches) == 10 and sum(len(c.datavalues) for c in ax.containers) == 10


def test_fedavg_round_metrics_average_rates_sum_counts_and_drop_partition_ids():
    from flwr.app import MetricRecord, RecordDict

    from fleet.run.fedavg import aggregate_fleet_metrics

    replies = [RecordDict({"metrics": MetricRecord({"num-examples": 100.0, "correct": 90.0, "accuracy": 0.9,
                                                    "partition_id": 0.0})}),
               RecordDict({"metrics": MetricRecord({"num-examples": 300.0, "correct": 150.0, "accuracy": 0.5,
                                                    "partition_id": 7.0})})]
    agg = aggregate_fleet_metrics(replies, "num-examples")
    assert "partition_id" not in agg and "num-examples" not in agg
    assert agg["correct"] == 240.0
    assert abs(agg["accuracy"] - 0.6) < 1e-12          # (90 + 150) / 400, weighted by examples


def test_header_names_the_resolved_device_and_algorithm_of_preset_and_explicit_tiles():
    from fleet.config import FleetConfig
    from fleet.run.phases import describe_tile
    from fleet.run.report import format_table, run_title

    def header(path):
        fleet = FleetConfig.from_toml(path)
        result = {"name": fleet.name, "num_clients": fleet.num_clients, "dataset": fleet.dataset,
                  "partition": fleet.partitioner, "alignment": fleet.alignment.label,
                  "edge_side": describe_tile(fleet.edge_config.analog),
                  "server_side": describe_tile(fleet.classifier_config.analog)}
        return format_table(result).splitlines()[0], run_title(result)

    line, title = header("configs/inference_hwa.toml")           # [analog] preset = "hwa" on both sides
    assert "None" not in line + title
    assert "edge=AnalogSGD on Ideal (preset hwa), server=AnalogSGD on Ideal (preset hwa)" in line, line
    assert "edge AnalogSGD on Ideal (preset hwa)" in title, title
    line, _ = header("configs/quickstart.toml")               # explicit device and algorithm tables
    assert "edge=MixedPrecision on ReRAMSoftBounds, server=MixedPrecision on ReRAMSoftBounds" in line, line
    assert describe_tile({"forward": {"out_noise": 0.02}})["device"] == "ConstantStep"   # TileConfig's default
    assert describe_tile(None) == {"mode": "digital"}
