"""Fleet configuration: one TOML file describes a whole fleet run (clients, server, baseline).

The edge client's and the server classifier's own settings live in the `[edge]` and `[classifier]`
tables (kept as written, for the round trip) and are resolved once, with the fleet-wide settings
filled in, into the typed `FleetConfig.edge_config` (`edge_client.config.EdgeConfig`) and
`FleetConfig.classifier_config` (`server.config.ClassifierConfig`), which validate them. This module
owns only what ties them together: fleet size, partitioning, the latent alignment (`[alignment]`),
the shared analog tile config, the Flower backend and the phases' tables (`[fedavg]`, `[privacy]`,
`[inference]`, `[energy]`). Every config is frozen and validated on construction, and errors name the
field (`fleet.num_clients: got 0, must be in [1, 1024]`); a key of an earlier layout names its new
place (`MOVED`).
"""
from __future__ import annotations

import copy
import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.validation import ConfigError, check_bool, check_choice, check_int, check_keys, check_number
from edge_client.config import MOVED as EDGE_MOVED
from edge_client.config import EdgeConfig, moved_key
from server.config import ClassifierConfig

#: [alignment]: the choices of each key (docs/fleet.md, "Latent alignment")
INITS = ("none", "shared_init", "pretrained")
CONDITIONINGS = ("none", "embedding", "adapter")
MODES = ("latent", "fedavg", "both")
BACKENDS = ("ray", "local")
SERVER_MODES = ("auto", "inprocess", "subprocess")
PARTITIONERS = ("iid", "dirichlet")   # Flower Datasets' IidPartitioner / DirichletPartitioner
#: the TOML tables beside [fleet]
SECTIONS = ("alignment", "analog", "edge", "classifier", "fedavg", "privacy", "inference", "energy")
#: fleet/energy/radio.py's links (named here so that loading a config does not import torch)
RADIO_NAMES = ("ble", "802.15.4", "wifi", "lora_sf7", "lora_sf12")
ENERGY_MODES = ("lumped", "component")
DEFAULT_CONFIG = "configs/quickstart.toml"
#: [edge] keys the fleet sets for every client ((table, key); None = [edge] itself)
FLEET_SET_EDGE_KEYS = ((None, "seed"), ("data", "dataset"), ("init", "seed"), ("init", "weights"),
                       ("public", "size"), ("public", "upload"))
#: tables and keys of earlier layouts -> where they live now (a one-line error says so at load)
MOVED = {
    "fleet.alignment": "the [alignment] table holds init = none|shared_init|pretrained, anchors = true|false, "
                       "conditioning = none|embedding|adapter",
    "fleet.anchors": "the public set's size is alignment.public_set (50..1000; 0 = none)",
    "fleet.pretrain_epochs": "the public set's pretraining is alignment.pretrain_epochs",
    "deploy": "the inference-chip table is now [inference] with keys times (e.g. [\"1h\", \"1d\"]) and seed "
              "(`analog-edge deploy` is Flower's deployment engine)",
}


def _set(config: Any, name: str, value: Any) -> None:
    """Store a normalized value on a frozen config while it validates itself (__post_init__)."""
    object.__setattr__(config, name, value)


def _moved(old: str, value: Any = None) -> str:
    """The one-line error for a key of an earlier layout; an old compact alignment is spelled out."""
    text = f"{old}: moved; {MOVED[old]}"
    if old == "fleet.alignment" and isinstance(value, str):
        try:
            new = AlignmentConfig(public_set=50).parse(value, old)
            text += f' ("{value}" is init = "{new.init}", anchors = {str(new.anchors).lower()}, ' \
                    f'conditioning = "{new.conditioning}")'
        except ConfigError:
            pass
    return text


def resolve_config_path(path: str | Path) -> Path:
    """`path` as given, or, when it is relative and missing, the same path under the source tree
    (so `configs/quickstart.toml` works from any working directory)."""
    p = Path(path)
    if not p.exists() and not p.is_absolute():
        alt = Path(__file__).resolve().parents[1] / p
        if alt.exists():
            return alt
    return p


@dataclass(frozen=True)
class AlignmentConfig:
    """`[alignment]`: how the clients' latent spaces are made comparable (docs/fleet.md, "Latent alignment").

    Three independent choices, any combination: where every autoencoder starts (`init`), whether the
    server maps each client onto one space with the public anchors' latents (`anchors`), and the
    classifier's per-client conditioning (`conditioning`). The public set is images no client owns,
    held out of every partition; anchors and pretraining need it.
    """

    init: str = "shared_init"      # none | shared_init (one seed for every client) | pretrained (weights the
    #                                server pretrained digitally on the public set, programmed onto each chip)
    anchors: bool = False          # upload the public images' latents; the server maps each client onto one space
    conditioning: str = "none"     # none | embedding (learned per-client vector) | adapter (per-client affine head)
    public_set: int = 0            # size of the public set (50..1000 images; 0 = none)
    pretrain_epochs: int = 20      # the server's digital pretraining of the AE on the public set (init "pretrained")

    def __post_init__(self) -> None:
        check_choice("alignment.init", self.init, INITS)
        check_bool("alignment.anchors", self.anchors)
        check_choice("alignment.conditioning", self.conditioning, CONDITIONINGS)
        if self.public_set:
            check_int("alignment.public_set", self.public_set, 50, 1000)
        check_int("alignment.pretrain_epochs", self.pretrain_epochs, 1, 10_000)
        needs = [n for n, on in (("anchors = true", self.anchors), ("init = 'pretrained'", self.pretrained)) if on]
        if needs and not self.public_set:
            raise ConfigError(f"alignment.public_set: 0, but alignment {' and '.join(needs)} needs the public set; "
                              "set public_set to its size (50..1000)")

    @property
    def shared_init(self) -> bool:
        """Every client starts from the same weights: a shared seed, or the pretrained weights."""
        return self.init != "none"

    @property
    def pretrained(self) -> bool:
        return self.init == "pretrained"

    @property
    def label(self) -> str:
        """The compact form, e.g. "pretrained+anchors" ("none" when nothing aligns): reports and tables."""
        parts = [p for p, on in ((self.init, self.init != "none"), ("anchors", self.anchors),
                                 (self.conditioning, self.conditioning != "none")) if on]
        return "+".join(parts) or "none"

    def parse(self, text: Any, name: str = "alignment") -> "AlignmentConfig":
        """This table with init/anchors/conditioning set from the compact form that `--alignment`, the
        alignment comparison and sweeps accept: "none" or parts joined by "+" in this order, at most one
        of each: shared_init | pretrained, anchors, embedding | adapter. The one place that form is read."""
        parts = text.split("+") if isinstance(text, str) and text else [None]
        groups = [next((i for i, g in enumerate(_COMPACT) if p in g), None) for p in parts]
        if text != "none" and (None in groups or groups != sorted(set(groups))):
            raise ConfigError(f"{name}: got {text!r}, must be none or parts joined by '+' in this order, at most "
                              "one of each: shared_init | pretrained, anchors, embedding | adapter "
                              "(e.g. pretrained+anchors)")
        on = set(parts)
        return dataclasses.replace(self, init=next((i for i in INITS[1:] if i in on), "none"), anchors="anchors" in on,
                                   conditioning=next((c for c in CONDITIONINGS[1:] if c in on), "none"))


#: the compact alignment form's groups, in order (AlignmentConfig.parse)
_COMPACT = (INITS[1:], ("anchors",), CONDITIONINGS[1:])


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
    public_images: int = 500           # the attacker's public set when the fleet has none (alignment.public_set = 0)
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


#: duration units of inference.times (a month is 30 days, a year 365)
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
class InferenceConfig:
    """`[inference]`, the optional inference-chip phase (fleet/inference.py): after training, the edge
    encoders and the server classifier are programmed once onto PCM-like inference chips
    (analog.inference.PCMLike, one chip per device, seeded from `seed`) and the fleet is evaluated at
    each of `times` after programming, with and without global drift compensation. Empty `times`: off.
    (Not to be confused with `analog-edge deploy`, Flower's deployment engine.)"""

    times: tuple[str, ...] = ()   # durations after programming, e.g. ["1h", "1d", "1y"]
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.times, (list, tuple)):
            raise ConfigError(f"inference.times: got {self.times!r}, must be a list like [\"1h\", \"1d\"]")
        _set(self, "times", tuple(str(t) for t in self.times))
        for t in self.times:
            parse_duration("inference.times", t)
        check_int("inference.seed", self.seed, 0)

    @property
    def enabled(self) -> bool:
        return bool(self.times)

    @property
    def seconds(self) -> list[float]:
        return [parse_duration("inference.times", t) for t in self.times]


@dataclass(frozen=True)
class FleetConfig:
    """Everything one `analog-edge fleet` run needs; see configs/quickstart.toml for a commented example."""

    name: str = "fleet"
    dataset: str = "mnist5k"
    num_clients: int = 8
    partitioner: str = "iid"
    alpha: float = 0.5                 # Dirichlet concentration, used when partitioner = "dirichlet"
    seed: int = 0
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)   # the [alignment] table
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
    inference: InferenceConfig = field(default_factory=InferenceConfig)
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
        for name, cls in SECTION_CONFIGS.items():
            if not isinstance(getattr(self, name), cls):
                _set(self, name, section_from_dict(name, getattr(self, name)))
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
        for key in d:
            if key in EDGE_MOVED:
                raise ConfigError(f"edge.{moved_key(key)}")
        for table, key in FLEET_SET_EDGE_KEYS:
            sub = d if table is None else d.get(table)
            if isinstance(sub, dict) and key in sub:
                raise ConfigError(f"edge.{table + '.' if table else ''}{key}: set by the fleet, from [fleet] (dataset, "
                                  "seed) or [alignment] (init, anchors, public_set), for every client")
        # One seed for the whole fleet: the edge client partitions with it (so partitions are disjoint)
        # and derives each device's own streams (split, shuffling, d2d variation) from (seed, partition).
        d["seed"] = self.seed
        tables = {name: d.get(name, {}) for name in ("data", "init", "public")}
        if not all(isinstance(t, dict) for t in tables.values()):
            bad = next(n for n, t in tables.items() if not isinstance(t, dict))
            raise ConfigError(f"edge.{bad}: got {tables[bad]!r}, must be a table")
        d["data"] = {**tables["data"], "dataset": self.dataset}
        d["init"] = {**tables["init"], **({"seed": self.seed} if self.alignment.shared_init else {})}
        # the public slice is held out whenever it is named; its latents go up only with anchors = true
        d["public"] = {**tables["public"], "size": self.alignment.public_set, "upload": self.alignment.anchors}
        d["analog"] = self._side_analog(self.edge)
        return _build_with(EdgeConfig, "edge", d)

    def _resolve_classifier(self) -> ClassifierConfig:
        """The server classifier's config: the [classifier] table plus alignment and tiles."""
        d = copy.deepcopy(self.classifier)
        if "client_conditioning" in d:
            raise ConfigError("classifier.client_conditioning: set alignment.conditioning instead "
                              "(none, embedding or adapter)")
        d["client_conditioning"] = self.alignment.conditioning
        # [classifier] anchor_map is how the anchors are mapped when alignment.anchors is true
        # (lstsq by default); without anchors the classifier maps nothing.
        d["anchor_map"] = d.get("anchor_map", "lstsq") if self.alignment.anchors else "none"
        if self.alignment.anchors and d["anchor_map"] == "none":
            raise ConfigError("classifier.anchor_map: got 'none', but alignment.anchors is true; "
                              "use lstsq, ridge or procrustes")
        d["analog"] = self._side_analog(self.classifier)
        return _build_with(ClassifierConfig, "classifier", d)

    def fedavg_rounds(self, edge_epochs: int) -> int:
        return self.fedavg.rounds or max(1, -(-edge_epochs // self.fedavg.local_epochs))

    def with_overrides(self, **changes: Any) -> "FleetConfig":
        """A validated copy with some top-level fields replaced (CLI flags, sweep points); None values are
        ignored. `alignment` may be the compact form ("pretrained+anchors"), which keeps the public set."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if isinstance(changes.get("alignment"), str):
            changes["alignment"] = self.alignment.parse(changes["alignment"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A TOML-shaped dict (None values dropped, since TOML has no null) that from_dict reads back."""
        top = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in SECTIONS and f.init}
        out: dict[str, Any] = {"fleet": top, "edge": _drop_none(self.edge),
                               "classifier": _drop_none(self.classifier),
                               "fedavg": dataclasses.asdict(self.fedavg),
                               "privacy": _lists(dataclasses.asdict(self.privacy)),
                               "alignment": dataclasses.asdict(self.alignment),
                               "inference": _lists(dataclasses.asdict(self.inference)),
                               "energy": dataclasses.asdict(self.energy)}
        if self.analog is not None:
            out["analog"] = _drop_none(self.analog)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FleetConfig":
        top = data.get("fleet", {}) if isinstance(data, dict) else {}
        for old in sorted(set(data if isinstance(data, dict) else ()) | set(f"fleet.{k}" for k in top)):
            if old in MOVED:
                raise ConfigError(_moved(old, top.get("alignment") if old == "fleet.alignment" else None))
        check_keys("config", data, {"fleet", *SECTIONS})
        top_fields = {f.name for f in dataclasses.fields(cls) if f.init} - set(SECTIONS)
        check_keys("fleet", top, top_fields)
        return cls(**top, analog=copy.deepcopy(data.get("analog")),
                   edge=copy.deepcopy(data.get("edge", {})),
                   classifier=copy.deepcopy(data.get("classifier", {})),
                   **{name: data.get(name, {}) for name in SECTION_CONFIGS})     # __post_init__ resolves them

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


#: the [fleet]-level tables that are frozen configs of their own (edge, classifier and analog stay
#: tables: they are resolved into EdgeConfig / ClassifierConfig / TileConfig)
SECTION_CONFIGS: dict[str, type] = {"alignment": AlignmentConfig, "fedavg": FedAvgConfig, "privacy": PrivacyConfig,
                                    "inference": InferenceConfig, "energy": EnergyConfig}


def section_from_dict(name: str, data: Any) -> Any:
    """The [name] table as its frozen config (SECTION_CONFIGS); not a table, or an unknown key, fails
    naming the table and the keys it takes."""
    cls = SECTION_CONFIGS[name]
    keys = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: got {data!r}, must be a table ({', '.join(keys)})")
    check_keys(name, data, keys)
    return cls(**data)


def _lists(table: dict[str, Any]) -> dict[str, Any]:
    """Tuples as lists: the shape a TOML or JSON reader gives back."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in table.items()}


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
        known = {f.name for f in dataclasses.fields(cls)}
        check_keys(section, data, known)
    try:
        return cls.from_dict(copy.deepcopy(data))
    except (ValueError, TypeError, KeyError) as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(section) else f"{section}.{msg}") from None
