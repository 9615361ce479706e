"""Fleet configuration: one TOML file describes a whole fleet run (clients, server, baseline).

The edge client's and the server classifier's own settings live in the `[edge]` and `[classifier]`
tables (kept as written, for the round trip) and are resolved once, with the fleet-wide settings
filled in, into the typed `FleetConfig.edge_config` (`edge_client.config.EdgeConfig`) and
`FleetConfig.classifier_config` (`server.config.ClassifierConfig`), which validate them. This module owns only what ties them
together: fleet size, partitioning, latent alignment, the shared analog tile config, the Flower
backend and the FedAvg baseline. Every field is validated on construction and errors name the
field (`fleet.num_clients: got 0, must be >= 1`).
"""
from __future__ import annotations

import copy
import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.validation import ConfigError, check_bool, check_choice, check_int, check_keys, check_number
from edge_client.config import EdgeConfig
from server.config import ClassifierConfig

# fleet.alignment is "none" or "+"-joined parts, at most one of each group, in this order:
#   initialization  shared_init (a seed) | pretrained (weights pretrained on the public set)
#   latent map      anchors (per-client maps fitted on the public anchors' latents)
#   classifier      embedding | adapter (per-client conditioning)
ALIGNMENT_PARTS = (("shared_init", "pretrained"), ("anchors",), ("embedding", "adapter"))
ALIGNMENTS = ("none", "shared_init", "embedding", "shared_init+embedding", "adapter", "shared_init+adapter",
              "anchors", "shared_init+anchors", "pretrained", "pretrained+anchors", "pretrained+adapter",
              "shared_init+anchors+adapter", "pretrained+anchors+adapter")
MODES = ("latent", "fedavg", "both")
BACKENDS = ("ray", "local")
SERVER_MODES = ("auto", "inprocess", "subprocess")
PARTITIONERS = ("iid", "dirichlet")   # Flower Datasets' IidPartitioner / DirichletPartitioner
SECTIONS = ("analog", "edge", "classifier", "fedavg", "privacy", "deploy", "energy")   # TOML tables beside [fleet]
#: fleet/energy/radio.py's links (named here so that loading a config does not import torch)
RADIO_NAMES = ("ble", "802.15.4", "wifi", "lora_sf7", "lora_sf12")
ENERGY_MODES = ("lumped", "component")
DEFAULT_CONFIG = "configs/quickstart.toml"


def _set(config: Any, name: str, value: Any) -> None:
    """Store a normalized value on a frozen config while it validates itself (__post_init__)."""
    object.__setattr__(config, name, value)


def resolve_config_path(path: str | Path) -> Path:
    """`path` as given, or, when it is relative and missing, the same path under the source tree
    (so `configs/quickstart.toml` works from any working directory)."""
    p = Path(path)
    if not p.exists() and not p.is_absolute():
        alt = Path(__file__).resolve().parents[1] / p
        if alt.exists():
            return alt
    return p


def _alignment(value: Any) -> str:
    """"none" or parts joined by "+", one per group of ALIGNMENT_PARTS at most, in group order."""
    parts = value.split("+") if isinstance(value, str) and value else None
    if value == "none":
        return value
    groups = [next((i for i, g in enumerate(ALIGNMENT_PARTS) if p in g), None) for p in parts or [None]]
    if parts is None or None in groups or groups != sorted(set(groups)):
        raise ConfigError(f"fleet.alignment: got {value!r}, must be none or parts joined by '+' in this order, at "
                          "most one of each: shared_init | pretrained, anchors, embedding | adapter "
                          "(e.g. pretrained+anchors)")
    return value


@dataclass(frozen=True)
class FedAvgConfig:
    """The FedAvg baseline: the server's classifier architecture trained end to end on raw pixels.

    `rounds = 0` means "match the latent pipeline's budget": rounds * local_epochs equals the edge
    autoencoder's epochs, so every client spends the same number of passes over its local data.
    """

    rounds: int = 0
    local_epochs: int = 1
    lr: float = 0.05
    batch_size: int = 32
    analog: bool = True          # train on the same analog tiles as the classifier side
    fraction_train: float = 1.0

    def __post_init__(self) -> None:
        s = "fedavg"
        check_int(f"{s}.rounds", self.rounds, 0)
        check_int(f"{s}.local_epochs", self.local_epochs, 1)
        _set(self, "lr", check_number(f"{s}.lr", self.lr, 0.0, lo_open=True))
        check_int(f"{s}.batch_size", self.batch_size, 1)
        check_bool("fedavg.analog", self.analog)
        _set(self, "fraction_train", check_number(f"{s}.fraction_train", self.fraction_train, 0, 1, lo_open=True))


#: the server-side attacks of the privacy suite (fleet/privacy/suite.py), strongest on the default first
SERVER_ATTACKS = ("pretrained_map_tuned", "pretrained_map", "anchor_decoder", "pretrained_raw", "fora")


@dataclass(frozen=True)
class EnergyConfig:
    """The energy and latency report (fleet/energy/costs.py, docs/energy.md): the clients' radio link and
    how the analog MVMs are priced (whole-core per MAC, or per conversion and cell read)."""

    enabled: bool = True
    radio: str = "ble"
    mode: str = "lumped"

    def __post_init__(self) -> None:
        check_bool("energy.enabled", self.enabled)
        check_choice("energy.radio", self.radio, RADIO_NAMES)
        check_choice("energy.mode", self.mode, ENERGY_MODES)


@dataclass(frozen=True)
class PrivacyConfig:
    """The optional privacy phase (fleet/privacy/, docs/privacy.md): the server-side attack suite,
    dCor(X, Z) and a model-inversion attack from leaked pairs.

    The attacker holds `leaked_fraction` of ONE client's (`leaked_client`) training images with the
    latents those images put on the wire, trains its own digital decoder z -> x for `epochs`, and
    reconstructs every other client's images from the latents the server stored.
    """

    enabled: bool = False
    leaked_client: int = 0             # partition id whose (x, z) pairs leaked
    leaked_fraction: float = 0.5       # of that client's training images; the rest is a same-client held-out
    epochs: int = 100                  # attacker decoder epochs over the leaked pairs
    hidden: int = 512                  # attacker MLP width (two hidden layers)
    lr: float = 1e-3                   # Adam
    batch_size: int = 32
    seed: int = 0
    dcor_samples: int = 1000           # dCor is O(n^2) in memory: rows subsampled (seeded) to at most this
    examples: int = 8                  # victims' images shown in privacy_reconstructions.png
    # the server-side attack suite (fleet/privacy/suite.py, docs/privacy.md): no leaked pair
    server_attacks: tuple[str, ...] = ()   # [] = every attack the server's holdings allow
    attack_epochs: int = 20            # epochs of each server-side attacker's training
    attack_lr: float = 1e-3            # Adam
    attack_batch_size: int = 64
    attack_noise: float = 0.1          # latent augmentation: noise std as a fraction of each feature's std
    public_images: int = 500           # the attacker's public set when the fleet has none (fleet.anchors = 0)
    reid_candidates: int = 100         # re-identification: nearest among this many same-class images

    def __post_init__(self) -> None:
        s = "privacy"
        check_bool("privacy.enabled", self.enabled)
        check_int(f"{s}.leaked_client", self.leaked_client, 0)
        _set(self, "leaked_fraction", check_number(f"{s}.leaked_fraction", self.leaked_fraction, 0, 1, lo_open=True))
        check_int(f"{s}.epochs", self.epochs, 1, 100_000)
        check_int(f"{s}.hidden", self.hidden, 1, 65_536)
        _set(self, "lr", check_number(f"{s}.lr", self.lr, 0.0, lo_open=True))
        check_int(f"{s}.batch_size", self.batch_size, 1)
        check_int(f"{s}.seed", self.seed, 0)
        check_int(f"{s}.dcor_samples", self.dcor_samples, 4, 20_000)
        check_int(f"{s}.examples", self.examples, 0, 64)
        if not isinstance(self.server_attacks, (list, tuple)):
            raise ConfigError(f"{s}.server_attacks: got {self.server_attacks!r}, must be a list of "
                              f"{', '.join(SERVER_ATTACKS)} (empty = all the server's holdings allow)")
        for name in self.server_attacks:
            check_choice(f"{s}.server_attacks", name, SERVER_ATTACKS)
        _set(self, "server_attacks", tuple(self.server_attacks))
        check_int(f"{s}.attack_epochs", self.attack_epochs, 1, 100_000)
        _set(self, "attack_lr", check_number(f"{s}.attack_lr", self.attack_lr, 0.0, lo_open=True))
        check_int(f"{s}.attack_batch_size", self.attack_batch_size, 1)
        _set(self, "attack_noise", check_number(f"{s}.attack_noise", self.attack_noise, 0.0))
        check_int(f"{s}.public_images", self.public_images, 10, 100_000)
        check_int(f"{s}.reid_candidates", self.reid_candidates, 2, 10_000)


#: duration units of deploy.inference_times (a month is 30 days, a year 365)
DURATION_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0, "mo": 30 * 86400.0,
                  "y": 365 * 86400.0}


def parse_duration(name: str, text: Any) -> float:
    """'1h' / '30d' / '1y' / '20s' (or a number of seconds) -> seconds >= 0."""
    if isinstance(text, (int, float)) and not isinstance(text, bool) and text >= 0:
        return float(text)
    value = str(text).strip()
    number = value.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = value[len(number):]
    try:
        seconds = float(number) * DURATION_UNITS[unit]
    except (ValueError, KeyError):
        seconds = -1.0
    if not seconds >= 0 or seconds != seconds or seconds == float("inf"):
        raise ConfigError(f"{name}: got {text!r}, must be a duration like 1h, 1d or 1y "
                          f"(units {', '.join(DURATION_UNITS)}; a month is 30 d, a year 365 d)")
    return seconds


@dataclass(frozen=True)
class DeployConfig:
    """The optional deployment phase (fleet/inference.py): after training, the edge encoders and the
    server classifier are programmed once onto PCM-like inference chips (analog.inference.PCMLike,
    one chip per device, seeded from `seed`) and the fleet is evaluated at each of `inference_times`
    after programming, with and without global drift compensation. Empty `inference_times`: off."""

    inference_times: tuple[str, ...] = ()   # e.g. ["1h", "1d", "1y"]
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.inference_times, (list, tuple)):
            raise ConfigError(f"deploy.inference_times: got {self.inference_times!r}, must be a list like [\"1h\", \"1d\"]")
        _set(self, "inference_times", tuple(str(t) for t in self.inference_times))
        for t in self.inference_times:
            parse_duration("deploy.inference_times", t)
        check_int("deploy.seed", self.seed, 0)

    @property
    def enabled(self) -> bool:
        return bool(self.inference_times)

    @property
    def seconds(self) -> list[float]:
        return [parse_duration("deploy.inference_times", t) for t in self.inference_times]


@dataclass(frozen=True)
class FleetConfig:
    """Everything one `analog-edge fleet` run needs; see configs/quickstart.toml for a commented example."""

    name: str = "fleet"
    dataset: str = "mnist5k"
    num_clients: int = 8
    partitioner: str = "iid"
    alpha: float = 0.5                 # Dirichlet concentration, used when partitioner = "dirichlet"
    seed: int = 0
    alignment: str = "shared_init"
    anchors: int = 0                   # public anchor set size (50..1000; 0 = none): the images no client owns
    pretrain_epochs: int = 20          # digital pretraining of the AE on the public set (alignment "pretrained")
    mode: str = "latent"
    backend: str = "ray"
    server: str = "auto"               # auto: a child process under Ray (keeps the GIL free), else in-process
    digital: bool = False
    cpus: int = 0                      # CPUs Ray may use (0 = all); each virtual client takes one
    torch_threads: int = 1             # intra-op threads of the server side's own compute (0 = torch's default)
    analog: dict[str, Any] | None = None       # TileConfig dict shared by both sides unless overridden
    edge: dict[str, Any] = field(default_factory=dict)
    classifier: dict[str, Any] = field(default_factory=dict)
    fedavg: FedAvgConfig = field(default_factory=FedAvgConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    # resolved from the tables above on construction: what every phase uses
    edge_config: EdgeConfig = field(init=False, repr=False, compare=False)
    classifier_config: ClassifierConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        s = "fleet"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"fleet.name: got {self.name!r}, must be a non-empty string")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError(f"fleet.dataset: got {self.dataset!r}, must be a dataset name or path")
        check_int(f"{s}.num_clients", self.num_clients, 1, 1024)
        check_choice(f"{s}.partitioner", self.partitioner, PARTITIONERS)
        _set(self, "alpha", check_number(f"{s}.alpha", self.alpha, 0.0, lo_open=True))
        check_int(f"{s}.seed", self.seed, 0)
        _set(self, "alignment", _alignment(self.alignment))
        if self.anchors:
            check_int(f"{s}.anchors", self.anchors, 50, 1000)
        check_int(f"{s}.pretrain_epochs", self.pretrain_epochs, 1, 10_000)
        if (self.uses_anchors or self.pretrained) and not self.anchors:
            raise ConfigError(f"fleet.anchors: 0, but fleet.alignment {self.alignment!r} needs the public anchor "
                              "set; set anchors to its size (50..1000)")
        check_choice(f"{s}.mode", self.mode, MODES)
        check_choice(f"{s}.backend", self.backend, BACKENDS)
        check_choice(f"{s}.server", self.server, SERVER_MODES)
        check_bool("fleet.digital", self.digital)
        check_int(f"{s}.cpus", self.cpus, 0)
        check_int(f"{s}.torch_threads", self.torch_threads, 0, 1024)
        if self.analog is not None and not isinstance(self.analog, dict):
            raise ConfigError(f"analog: got {type(self.analog).__name__}, must be a table (a TileConfig)")
        for sec in ("edge", "classifier"):
            if not isinstance(getattr(self, sec), dict):
                raise ConfigError(f"{sec}: got {type(getattr(self, sec)).__name__}, must be a table")
        if isinstance(self.fedavg, dict):
            _set(self, "fedavg", fedavg_from_dict(self.fedavg))
        if isinstance(self.privacy, dict):
            _set(self, "privacy", privacy_from_dict(self.privacy))
        if not isinstance(self.privacy, PrivacyConfig):
            raise ConfigError(f"privacy: got {type(self.privacy).__name__}, must be a table")
        if isinstance(self.deploy, dict):
            _set(self, "deploy", deploy_from_dict(self.deploy))
        if not isinstance(self.deploy, DeployConfig):
            raise ConfigError(f"deploy: got {type(self.deploy).__name__}, must be a table")
        if isinstance(self.energy, dict):
            _set(self, "energy", energy_from_dict(self.energy))
        if not isinstance(self.energy, EnergyConfig):
            raise ConfigError(f"energy: got {type(self.energy).__name__}, must be a table")
        if self.privacy.leaked_client >= self.num_clients:
            raise ConfigError(f"privacy.leaked_client: got {self.privacy.leaked_client}, must be in "
                              f"[0, {self.num_clients - 1}] (fleet.num_clients = {self.num_clients})")
        if self.analog is not None:
            _validate_tile_dict("analog", self.analog)
        for sec in ("edge", "classifier"):
            sub = getattr(self, sec).get("analog")
            if isinstance(sub, dict):
                _validate_tile_dict(f"{sec}.analog", sub)
        _set(self, "edge_config", self._resolve_edge())
        _set(self, "classifier_config", self._resolve_classifier())

    # ---- derived, per-side configs -------------------------------------------------------
    @property
    def alpha_or_none(self) -> float | None:
        """The Dirichlet alpha for `partition_indices`, None for IID."""
        return self.alpha if self.partitioner == "dirichlet" else None

    @property
    def server_mode(self) -> str:
        """Where the latent service runs. Under Ray, Flower's simulation threads share this
        process's GIL and slowed in-process classifier training ~10x in measurement, hence a child."""
        if self.server != "auto":
            return self.server
        return "subprocess" if self.backend == "ray" else "inprocess"

    @property
    def _parts(self) -> list[str]:
        return self.alignment.split("+")

    @property
    def shared_init(self) -> bool:
        """Every client starts from the same weights: a shared seed, or the pretrained weights."""
        return "shared_init" in self._parts or self.pretrained

    @property
    def pretrained(self) -> bool:
        return "pretrained" in self._parts

    @property
    def uses_anchors(self) -> bool:
        return "anchors" in self._parts

    @property
    def conditioning(self) -> str:
        """The classifier's client_conditioning: (b) embedding, (c) per-client adapter head, or none."""
        for cond in ("embedding", "adapter"):
            if cond in self._parts:
                return cond
        return "none"

    def _side_analog(self, side: dict[str, Any]) -> dict[str, Any] | None:
        if self.digital:
            return None
        if "analog" in side:
            return copy.deepcopy(side["analog"]) or None
        return copy.deepcopy(self.analog)

    def _resolve_edge(self) -> EdgeConfig:
        """Every client's EdgeConfig: the [edge] table plus fleet-wide settings (the edge client
        derives each device's own seeds from (seed, partition) itself)."""
        d = copy.deepcopy(self.edge)
        for key in ("dataset", "seed", "init_seed", "anchors", "upload_anchors", "init_weights"):
            if key in d:
                raise ConfigError(f"edge.{key}: set it in [fleet] (dataset, seed, anchors) or via fleet.alignment, "
                                  "the fleet sets it per client")
        d["dataset"] = self.dataset
        # One seed for the whole fleet: the edge client partitions with it (so partitions are disjoint)
        # and derives each device's own streams (split, shuffling, d2d variation) from (seed, partition).
        d["seed"] = self.seed
        d["init_seed"] = self.seed if self.shared_init else None
        d["anchors"] = self.anchors                 # the public slice is held out whenever it is named
        d["upload_anchors"] = self.uses_anchors
        d["analog"] = self._side_analog(self.edge)
        return _build_with(EdgeConfig, "edge", d)

    def _resolve_classifier(self) -> ClassifierConfig:
        """The server classifier's config: the [classifier] table plus alignment and tiles."""
        d = copy.deepcopy(self.classifier)
        if "client_conditioning" in d:
            raise ConfigError("classifier.client_conditioning: set fleet.alignment instead "
                              "(embedding, adapter, or shared_init+ either)")
        d["client_conditioning"] = self.conditioning
        # [classifier] anchor_map is how the anchors are mapped when fleet.alignment uses them
        # (lstsq by default); without 'anchors' in the alignment the classifier maps nothing.
        d["anchor_map"] = d.get("anchor_map", "lstsq") if self.uses_anchors else "none"
        if self.uses_anchors and d["anchor_map"] == "none":
            raise ConfigError(f"classifier.anchor_map: got 'none', but fleet.alignment {self.alignment!r} maps "
                              "anchors; use lstsq, ridge or procrustes")
        d["analog"] = self._side_analog(self.classifier)
        return _build_with(ClassifierConfig, "classifier", d)

    def fedavg_rounds(self, edge_epochs: int) -> int:
        return self.fedavg.rounds or max(1, -(-edge_epochs // self.fedavg.local_epochs))

    def with_overrides(self, **changes: Any) -> "FleetConfig":
        """A validated copy with some top-level fields replaced (CLI flags, sweep points)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """A TOML-shaped dict (None values dropped, since TOML has no null) that from_dict reads back."""
        top = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in SECTIONS and f.init}
        out: dict[str, Any] = {"fleet": top, "edge": _drop_none(self.edge),
                               "classifier": _drop_none(self.classifier),
                               "fedavg": dataclasses.asdict(self.fedavg),
                               "privacy": dataclasses.asdict(self.privacy),
                               "deploy": dataclasses.asdict(self.deploy),
                               "energy": dataclasses.asdict(self.energy)}
        if self.analog is not None:
            out["analog"] = _drop_none(self.analog)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FleetConfig":
        check_keys("config", data, {"fleet", *SECTIONS})
        top = data.get("fleet", {})
        top_fields = {f.name for f in dataclasses.fields(cls) if f.init} - set(SECTIONS)
        check_keys("fleet", top, top_fields)
        return cls(**top, analog=copy.deepcopy(data.get("analog")),
                   edge=copy.deepcopy(data.get("edge", {})),
                   classifier=copy.deepcopy(data.get("classifier", {})),
                   fedavg=fedavg_from_dict(data.get("fedavg", {})),
                   privacy=privacy_from_dict(data.get("privacy", {})),
                   deploy=deploy_from_dict(data.get("deploy", {})),
                   energy=energy_from_dict(data.get("energy", {})))

    @classmethod
    def from_toml(cls, path: str | Path) -> "FleetConfig":
        path = Path(path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config: file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config: {path} is not valid TOML ({exc})") from None
        return cls.from_dict(data)


def fedavg_from_dict(data: dict[str, Any]) -> FedAvgConfig:
    check_keys("fedavg", data, {f.name for f in dataclasses.fields(FedAvgConfig)})
    return FedAvgConfig(**data)


def privacy_from_dict(data: dict[str, Any]) -> PrivacyConfig:
    check_keys("privacy", data, {f.name for f in dataclasses.fields(PrivacyConfig)})
    return PrivacyConfig(**data)


def deploy_from_dict(data: dict[str, Any]) -> DeployConfig:
    check_keys("deploy", data, {f.name for f in dataclasses.fields(DeployConfig)})
    return DeployConfig(**data)


def energy_from_dict(data: dict[str, Any]) -> EnergyConfig:
    check_keys("energy", data, {f.name for f in dataclasses.fields(EnergyConfig)})
    return EnergyConfig(**data)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _validate_tile_dict(section: str, data: dict[str, Any]) -> None:
    """Build the TileConfig so a bad device/algorithm key fails at load time, prefixed by section."""
    from analog import presets  # imported on use: analog loads torch, `analog-edge --help` need not

    try:
        presets.from_dict(copy.deepcopy(data))
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{section}: {exc}") from None


def _build_with(cls: type, section: str, data: dict[str, Any]) -> Any:
    """Build a side's config with the owning package's config class, prefixing its error."""
    if dataclasses.is_dataclass(cls):
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        check_keys(section, data, known)
    try:
        return cls.from_dict(copy.deepcopy(data))
    except (ValueError, TypeError, KeyError) as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(section) else f"{section}.{msg}") from None
