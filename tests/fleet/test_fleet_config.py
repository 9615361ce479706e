"""Fleet config: TOML round trip, per-client derivation, and errors that name the bad key or value."""
import tomllib
from pathlib import Path

import pytest

from fleet.config import ConfigError, FleetConfig

ROOT = Path(__file__).resolve().parents[2]


def _quickstart() -> dict:
    with (ROOT / "configs" / "quickstart.toml").open("rb") as fh:
        return tomllib.load(fh)


def test_quickstart_loads_with_the_issue_settings():
    fleet = FleetConfig.from_toml(ROOT / "configs" / "quickstart.toml")
    assert (fleet.dataset, fleet.num_clients, fleet.partitioner) == ("mnist5k", 8, "iid")
    edge = fleet.edge_config
    assert (edge.model.latent_dim, edge.wire.bits, edge.training.epochs) == (32, 8, 5)
    cls = fleet.classifier_config
    assert edge.analog["algorithm"] == {"type": "MixedPrecision", "threshold": 4.0}   # [edge.analog]
    assert cls.analog["algorithm"] == {"type": "MixedPrecision"}                     # [analog]
    assert edge.tile_config().device == cls.tile_config().device      # one device, both sides
    assert edge.tile_config().forward == cls.tile_config().forward


def test_tiki_taka_config_is_the_quickstart_with_residual_learning_on_both_sides():
    """configs/tiki_taka.toml differs from the quickstart only in the two sides' algorithms (so its
    --digital twin is the quickstart's), which name presets that resolve to the Tiki-Taka family."""
    from analog import algorithms

    tt = FleetConfig.from_toml(ROOT / "configs" / "tiki_taka.toml")
    qs = FleetConfig.from_toml(ROOT / "configs" / "quickstart.toml")
    assert tt.with_overrides(name="quickstart", analog=qs.analog, edge=qs.edge) == qs
    assert tt.edge == {**qs.edge, "analog": {**qs.edge["analog"], "algorithm": {"preset": "agad-edge"}}}
    assert isinstance(tt.edge_config.tile_config().algorithm, algorithms.AGAD)
    server = tt.classifier_config.tile_config().algorithm
    assert type(server) is algorithms.TTv2 and server.gamma == 1.0


def test_round_trip_through_toml_dict(tmp_path):
    import tomli_w

    fleet = FleetConfig.from_toml(ROOT / "configs" / "quickstart.toml").with_overrides(
        num_clients=3, partitioner="dirichlet", alpha=0.3, alignment="embedding")
    path = tmp_path / "f.toml"
    path.write_text(tomli_w.dumps(fleet.to_dict()))
    again = FleetConfig.from_toml(path)
    assert again == fleet
    assert again.alpha_or_none == 0.3 and again.classifier_config.client_conditioning == "embedding"


def test_fleet_settings_resolve_into_typed_side_configs():
    fleet = FleetConfig.from_dict(_quickstart())
    edge = fleet.edge_config
    assert (edge.data.dataset, edge.seed) == (fleet.dataset, fleet.seed)   # one partition seed: disjoint partitions
    assert edge.init.seed == fleet.seed                                 # shared init (option a)
    none = fleet.with_overrides(alignment="none", seed=5)
    assert none.edge_config.init.seed is None and none.edge_config.seed == 5
    assert none.classifier_config.client_conditioning == "none"
    digital = fleet.with_overrides(digital=True)
    assert digital.edge_config.analog is None and digital.classifier_config.analog is None
    assert digital.edge_config.tile_config() is None
    # the tables stay as written: the round trip does not bake the derived values in
    assert "seed" not in fleet.to_dict()["edge"] and "client_conditioning" not in fleet.to_dict()["classifier"]
    assert fleet.with_overrides(partitioner="iid").alpha_or_none is None


@pytest.mark.parametrize("alignment,init,conditioning", [
    ("none", False, "none"), ("shared_init", True, "none"), ("embedding", False, "embedding"),
    ("shared_init+embedding", True, "embedding"), ("adapter", False, "adapter"),
    ("shared_init+adapter", True, "adapter"),
])
def test_alignment_options_map_to_init_and_classifier_conditioning(alignment, init, conditioning):
    fleet = FleetConfig.from_dict(_quickstart()).with_overrides(alignment=alignment)
    assert (fleet.edge_config.init.seed is not None) == init
    assert fleet.classifier_config.client_conditioning == conditioning


@pytest.mark.parametrize("alignment,pretrained,upload,amap,conditioning", [
    ("shared_init+anchors", False, True, "lstsq", "none"), ("pretrained", True, False, "none", "none"),
    ("pretrained+anchors", True, True, "lstsq", "none"), ("pretrained+anchors+adapter", True, True, "lstsq", "adapter"),
])
def test_public_set_alignments(alignment, pretrained, upload, amap, conditioning):
    """The public set is held out (edge.public.size) whenever it is named; anchors are uploaded and the
    classifier maps them only with 'anchors'; 'pretrained' also shares the initialization."""
    data = _quickstart()
    data["alignment"]["public_set"] = 200
    fleet = FleetConfig.from_dict(data).with_overrides(alignment=alignment)
    edge = fleet.edge_config
    assert (edge.public.size, edge.public.upload, fleet.alignment.pretrained) == (200, upload, pretrained)
    assert fleet.classifier_config.anchor_map == amap and fleet.classifier_config.client_conditioning == conditioning
    assert edge.init.seed == fleet.seed
    plain = fleet.with_overrides(alignment="shared_init+adapter", classifier={"anchor_map": "ridge"})
    assert plain.edge_config.public.size == 200 and not plain.edge_config.public.upload   # same partitions
    assert plain.classifier_config.anchor_map == "none"                 # the map method waits for 'anchors'
    assert fleet.with_overrides(classifier={"anchor_map": "ridge"}).classifier_config.anchor_map == (
        "ridge" if fleet.alignment.anchors else "none")


@pytest.mark.parametrize("changes,needle", [
    ({"alignment": "anchors+shared_init"}, "alignment: got 'anchors+shared_init', must be none or parts"),
    ({"alignment": "shared_init+pretrained"}, "alignment: got 'shared_init+pretrained'"),
    ({"alignment": {"init": "pretrained", "anchors": True, "public_set": 0}},
     "alignment.public_set: 0, but alignment anchors = true and init = 'pretrained' needs the public set"),
    ({"alignment": {"anchors": True, "public_set": 10}}, "alignment.public_set: got 10, must be in [50, 1000]"),
    ({"alignment": {"init": "seeded"}}, "alignment.init: got 'seeded', must be one of none, shared_init, pretrained"),
    ({"alignment": {"anchors": "yes"}}, "alignment.anchors: got 'yes', must be true or false"),
    ({"alignment": {"conditioning": "film"}}, "alignment.conditioning: got 'film', must be one of none, embedding"),
    ({"alignment": {"anchors": True, "public_set": 100}, "classifier": {"anchor_map": "none"}},
     "classifier.anchor_map: got 'none', but alignment.anchors is true"),
])
def test_public_set_alignment_errors_name_the_field(changes, needle):
    data = _quickstart()
    for table, value in changes.items():
        data[table] = value if isinstance(value, dict) else data[table]
    with pytest.raises(ConfigError) as exc:
        fleet = FleetConfig.from_dict(data)
        fleet.with_overrides(**{k: v for k, v in changes.items() if isinstance(v, str)})
    assert needle in str(exc.value)


@pytest.mark.parametrize("old,needle", [
    ({"fleet": {"alignment": "shared_init+adapter"}},
     'fleet.alignment: moved; the [alignment] table holds init = none|shared_init|pretrained, anchors = true|false, '
     'conditioning = none|embedding|adapter ("shared_init+adapter" is init = "shared_init", anchors = false, '
     'conditioning = "adapter")'),
    ({"fleet": {"anchors": 500}}, "fleet.anchors: moved; the public set's size is alignment.public_set"),
    ({"fleet": {"pretrain_epochs": 5}}, "fleet.pretrain_epochs: moved; the public set's pretraining is "
                                        "alignment.pretrain_epochs"),
    ({"deploy": {"inference_times": ["1h"]}}, "deploy: moved; the inference-chip table is now [inference]"),
])
def test_a_key_of_the_earlier_layout_names_its_new_place(old, needle):
    with pytest.raises(ConfigError) as exc:
        FleetConfig.from_dict(old)
    assert str(exc.value).startswith(needle) and "\n" not in str(exc.value)


def test_the_compact_alignment_form_parses_into_the_table_and_back():
    from fleet.config import AlignmentConfig

    table = AlignmentConfig(public_set=100)
    for text in ("none", "shared_init", "pretrained+anchors+adapter", "anchors+embedding", "pretrained"):
        assert table.parse(text).label == text
    assert table.parse("pretrained+anchors") == AlignmentConfig(init="pretrained", anchors=True, public_set=100)
    fleet = FleetConfig.from_dict(_quickstart())
    assert fleet.with_overrides(alignment="shared_init").alignment.public_set == 500   # the public set is kept


@pytest.mark.parametrize("section,key,value,needle", [
    ("fleet", "num_clients", 0, "fleet.num_clients: got 0"),
    ("fleet", "bogus", 1, "fleet.bogus: unknown key"),
    ("alignment", "init", "magic", "alignment.init: got 'magic'"),
    ("fleet", "partitioner", "random", "fleet.partitioner: got 'random'"),
    ("fleet", "alpha", 0.0, "fleet.alpha: got 0.0"),
    ("fleet", "backend", "dask", "fleet.backend: got 'dask'"),
    ("fleet", "torch_threads", -1, "fleet.torch_threads: got -1"),
    ("edge", "model", {"latent_dim": 0}, "edge.model.latent_dim: got 0"),
    ("edge", "wire", {"bits": 5}, "edge.wire.bits: got 5"),
    ("edge", "colour", "red", "edge.colour: unknown key"),
    ("edge", "seed", 3, "edge.seed: set by the fleet, from [fleet] (dataset, seed)"),
    ("edge", "public", {"size": 100}, "edge.public.size: set by the fleet, from [fleet] (dataset, seed) or [alignment]"),
    ("edge", "init", {"seed": 1}, "edge.init.seed: set by the fleet"),
    ("edge", "latent_dim", 16, "edge.latent_dim: moved to [edge.model] as latent_dim (keys there: autoencoder,"),
    ("edge", "anchors", 100, "edge.anchors: moved to [edge.public] as size"),
    ("classifier", "hidden", [0], "classifier.hidden[0]: got 0"),
    ("classifier", "client_conditioning", "embedding", "classifier.client_conditioning: set alignment.conditioning"),
    ("classifier", "shape", 1, "classifier.shape: unknown key"),
    ("fedavg", "rounds", -1, "fedavg.rounds: got -1"),
    ("fedavg", "lr", 0, "fedavg.lr: got 0.0"),
    ("fedavg", "optimizer", "adam", "fedavg.optimizer: unknown key"),
])
def test_bad_key_or_value_names_itself(section, key, value, needle):
    data = _quickstart()
    data.setdefault(section, {})[key] = value
    with pytest.raises(ConfigError) as exc:
        FleetConfig.from_dict(data)
    assert needle in str(exc.value)


def test_unknown_section_and_bad_analog_table_are_named(tmp_path):
    data = _quickstart()
    data["extras"] = {}
    with pytest.raises(ConfigError, match=r"config\.extras: unknown key"):
        FleetConfig.from_dict(data)
    data = _quickstart()
    data["analog"]["device"] = {"type": "NoSuchDevice"}
    with pytest.raises(ConfigError, match=r"^analog: .*NoSuchDevice"):
        FleetConfig.from_dict(data)
    bad = tmp_path / "bad.toml"
    bad.write_text("[fleet\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        FleetConfig.from_toml(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        FleetConfig.from_toml(tmp_path / "missing.toml")


def test_partition_layout_mismatch_is_named():
    from fleet.errors import FleetError
    from fleet.run.phases import check_partitions

    from types import SimpleNamespace as Reply      # what check_partitions reads of a train reply

    fleet = FleetConfig.from_dict(_quickstart()).with_overrides(num_clients=3)
    ok = [Reply(client_id=f"client-00{i}", partition_id=i, num_partitions=3) for i in range(3)]
    check_partitions(fleet, ok)
    with pytest.raises(FleetError, match="node_config.num-partitions: got 10"):
        check_partitions(fleet, [Reply(**{**vars(u), "num_partitions": 10}) for u in ok])
    with pytest.raises(FleetError, match=r"node_config.partition-id: got \[0, 1, 1\]"):
        check_partitions(fleet, ok[:2] + [Reply(**{**vars(ok[2]), "partition_id": 1})])
