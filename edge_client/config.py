"""EdgeConfig: everything one edge device needs to train, encode and upload, validated on construction.

One table per concern, as in the TOML (`[edge.data]`, `[edge.model]`, `[edge.training]`, `[edge.init]`,
`[edge.public]`, `[edge.wire]`, `[edge.link]`, `[edge.defense]`, `[edge.analog]`), each a frozen dataclass
that validates itself; `EdgeConfig` holds them, the device's `seed`, and checks what spans tables.
Loadable from a TOML file (`[edge]` table or top-level keys) or a dict; CLI flags override fields
with `EdgeConfig.replace({"model.latent_dim": 16})`, which re-runs validation. A flat key of the
earlier layout (`latent_dim = 16` directly in `[edge]`) fails with one line naming its table. The
`analog` field is a TileConfig dict (the shape `analog.presets.from_dict` accepts: a preset name
and/or sections) or None for the digital reference.
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.validation import ConfigError, check_int, check_number

BUILTIN_DATASETS = ("mnist5k", "digits")   # loaded by name in edge_client.data

AUTOENCODERS = ("auto", "conv", "mlp")
BITS = (32, 16, 8, 4)
OPTIMIZERS = ("sgd", "adam")
MIN_ANCHORS, MAX_ANCHORS = 50, 1000
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def check_client_id(client_id: str) -> str:
    if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
        raise ConfigError(f"client_id: got {client_id!r}, must be 1..64 characters of [A-Za-z0-9._-]")
    return client_id


@dataclass(frozen=True)
class DefenseConfig:
    """`[edge.defense]`: what the device does so that its released latents say less about its images.

    Every key defaults to 0, which is the undefended pipeline bit for bit. docs/privacy.md, "Defenses",
    has the measured accuracy/privacy trade-off of each; edge_client/defense.py and objectives.py
    implement them.
    """

    noise_multiplier: float = 0.0   # Gaussian noise std = noise_multiplier * clip_norm on every released row
    clip_norm: float = 0.0          # per-row L2 clip of each latent row before the noise (0 = no clip)
    nopeek_weight: float = 0.0      # weight of dCor(x, z) in the AE's training loss (NoPeek)
    label_weight: float = 0.0       # weight of a supervised head's cross-entropy on z (label-aware bottleneck)
    prototype_weight: float = 0.0   # weight of the squared distance of z to its class's public prototype
    prototype_radius: float = 10.0  # the prototypes' L2 norm (used only with prototype_weight > 0)

    def __post_init__(self) -> None:
        for name in ("noise_multiplier", "clip_norm", "nopeek_weight", "label_weight", "prototype_weight"):
            object.__setattr__(self, name, check_number(f"defense.{name}", getattr(self, name), 0.0))
        object.__setattr__(self, "prototype_radius",
                           check_number("defense.prototype_radius", self.prototype_radius, 0.0, lo_open=True))
        if self.noise_multiplier > 0 and self.clip_norm == 0:
            raise ConfigError(f"defense.clip_norm: got 0, must be > 0 when defense.noise_multiplier is set "
                              f"(got {self.noise_multiplier}): the noise std is noise_multiplier * clip_norm")

    @classmethod
    def from_dict(cls, data: Any) -> "DefenseConfig":
        if isinstance(data, DefenseConfig):
            return data
        if not isinstance(data, dict):
            raise ConfigError(f"defense: got {data!r}, must be a table with keys "
                              f"{', '.join(f.name for f in dataclasses.fields(cls))}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"defense.{unknown[0]}: unknown key; allowed keys are {', '.join(known)}")
        return cls(**data)

    @property
    def active(self) -> bool:
        """True when any defense changes what the device trains or releases."""
        return any((self.noise_multiplier, self.clip_norm, self.nopeek_weight, self.label_weight,
                    self.prototype_weight))

    @property
    def trains(self) -> bool:
        """True when the autoencoder's training loss changes (NoPeek, the label head or the prototypes)."""
        return bool(self.nopeek_weight or self.label_weight or self.prototype_weight)

    @property
    def uses_labels(self) -> bool:
        """True when the training loss needs the device's labels (the label head or the prototypes)."""
        return bool(self.label_weight or self.prototype_weight)


def _none(value: Any) -> Any:
    """TOML has no null: "none" (or an empty string) stands for an unset optional value."""
    return None if value in ("none", "None", "") else value


def _optional_path(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{name}: got {value!r}, must be a non-empty path or unset")


def _optional_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: got {value!r}, must be true or false")


def _table(cls: type, name: str, data: Any) -> Any:
    """One sub-table of [edge]: an instance as is, or a dict of its keys (unknown keys are errors)."""
    if isinstance(data, cls):
        return data
    keys = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: got {data!r}, must be a table with keys {', '.join(keys)}")
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: unknown key; allowed keys are {', '.join(keys)}")
    optional = {f.name for f in dataclasses.fields(cls) if f.default is None}
    return cls(**{k: (_none(v) if k in optional else v) for k, v in data.items()})


@dataclass(frozen=True)
class DataConfig:
    """`[edge.data]`: where this device's images come from and how much of them it keeps for testing."""

    dataset: str = "mnist5k"            # built-in name (mnist5k, digits) or a path (idx, CIFAR batch, .npz)
    path: str | None = None             # overrides `dataset` when set (a file or directory)
    test_fraction: float = 0.2          # of this client's partition, kept local for honest accuracy
    max_samples: int = 0                # 0 = all; otherwise cap this client's partition (quick runs)

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError(f"data.dataset: got {self.dataset!r}, must be a non-empty name or path")
        _optional_path("data.path", self.path)
        check_number("data.test_fraction", self.test_fraction, 0.0, 0.9, hi_open=False)
        check_int("data.max_samples", self.max_samples, 0)

    @property
    def source(self) -> str:
        """What the device loads: `path` when set, else `dataset`."""
        return self.path or self.dataset

    def check_source(self, field_name: str | None = None) -> None:
        """Raise ConfigError unless the data source is a built-in name or an existing path: checked
        before any work starts, so a typo costs one line instead of a failure inside every client.
        ``field_name`` names the setting in the caller's terms (default: data.path or data.dataset)."""
        src = self.source
        if src in BUILTIN_DATASETS or Path(src).expanduser().exists():
            return
        name = field_name or ("data.path" if self.path else "data.dataset")
        raise ConfigError(f"{name}: got {src!r}, neither a built-in dataset ({', '.join(BUILTIN_DATASETS)}) "
                          f"nor an existing file or folder")


@dataclass(frozen=True)
class ModelConfig:
    """`[edge.model]`: the autoencoder's architecture."""

    autoencoder: str = "auto"           # conv | mlp | auto (conv for >= 16x16 images, else mlp)
    latent_dim: int = 32
    conv_channels: tuple[int, int] = (8, 16)
    mlp_hidden: int = 128

    def __post_init__(self) -> None:
        if self.autoencoder not in AUTOENCODERS:
            raise ConfigError(f"model.autoencoder: got {self.autoencoder!r}, must be one of {', '.join(AUTOENCODERS)}")
        check_int("model.latent_dim", self.latent_dim, 1, 4096)
        chans = tuple(self.conv_channels) if isinstance(self.conv_channels, (list, tuple)) else None
        if chans is None or len(chans) != 2:
            raise ConfigError(f"model.conv_channels: got {self.conv_channels!r}, must be two integers")
        for i, c in enumerate(chans):
            check_int(f"model.conv_channels[{i}]", c, 1, 1024)
        object.__setattr__(self, "conv_channels", chans)
        check_int("model.mlp_hidden", self.mlp_hidden, 1, 65536)


@dataclass(frozen=True)
class TrainingConfig:
    """`[edge.training]`: the autoencoder's local training."""

    epochs: int = 10
    batch_size: int = 8
    lr: float = 0.01
    optimizer: str = "sgd"              # sgd (what analog tiles do) | adam (digital only)

    def __post_init__(self) -> None:
        check_int("training.epochs", self.epochs, 0, 100000)
        check_int("training.batch_size", self.batch_size, 1, 1 << 20)
        check_number("training.lr", self.lr, 0.0, lo_open=True)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"training.optimizer: got {self.optimizer!r}, must be one of {', '.join(OPTIMIZERS)}")


@dataclass(frozen=True)
class InitConfig:
    """`[edge.init]`: where the autoencoder starts. A fleet sets `seed` and `weights` from its
    `[alignment]` table (shared_init: one seed for every client; pretrained: the server's weights)."""

    seed: int | None = None             # same AE initial weights on every client that shares it; unset = own
    weights: str | None = None          # pretrained AE weights (a torch state-dict file) to program onto
    #                                     the tiles instead of a seeded initialization
    programming: dict = field(default_factory=lambda: {"type": "weight_noise", "eta": 0.05})
    #                                     how `weights` are written onto analog tiles: a noise model
    #                                     of analog.inference (weight_noise: std eta x std(W) per tile; pcm)

    def __post_init__(self) -> None:
        if self.seed is not None:
            check_int("init.seed", self.seed, 0, 2**63 - 1)
        _optional_path("init.weights", self.weights)
        if not isinstance(self.programming, dict):
            raise ConfigError(f"init.programming: got {self.programming!r}, must be a noise-model table")
        self.programming_model()  # validate now: the error names the field

    def programming_model(self):
        """The analog.inference noise model that writes `weights` onto the tiles."""
        from analog.inference import noise_model_from_dict  # on use (start-up time): torch

        try:
            return noise_model_from_dict(self.programming, "init.programming.")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class PublicConfig:
    """`[edge.public]`: the public anchor set, images no client owns (a fleet sets `size` and `upload`
    from `[alignment]`)."""

    size: int = 0                       # 0 = none, else 50..1000 images whose latents may be uploaded
    #                                     as anchors (never as training rows); held out of the partitions
    path: str | None = None             # the public images (a dataset file or directory); unset = a fixed
    #                                     slice of the dataset held out of every partition (see data.py)
    upload: bool = True                 # upload the anchors' latents (false: only hold the slice out)

    def __post_init__(self) -> None:
        if self.size != 0:
            check_int("public.size", self.size, MIN_ANCHORS, MAX_ANCHORS)
        _optional_path("public.path", self.path)
        _optional_bool("public.upload", self.upload)
        if self.path is not None and self.size == 0:
            raise ConfigError(f"public.path: set, but public.size is 0; set size to the public set's size "
                              f"({MIN_ANCHORS}..{MAX_ANCHORS})")


@dataclass(frozen=True)
class WireConfig:
    """`[edge.wire]`: how latents travel: quantization and upload sizes."""

    bits: int = 8                       # 32 float, 16 half, 8 / 4 integer with scale
    per_feature_scale: bool = False     # one scale per latent column instead of per tensor
    chunk_bytes: int = 1 << 20          # upload chunk size, < 4 MB gRPC limit
    rows_per_upload: int = 0            # 0 = one upload for all rows; else split into several uploads

    def __post_init__(self) -> None:
        if self.bits not in BITS:
            raise ConfigError(f"wire.bits: got {self.bits!r}, must be one of {', '.join(map(str, BITS))}")
        _optional_bool("wire.per_feature_scale", self.per_feature_scale)
        check_int("wire.chunk_bytes", self.chunk_bytes, 1, 4 * 1024 * 1024 - 64 * 1024)
        check_int("wire.rows_per_upload", self.rows_per_upload, 0)


@dataclass(frozen=True)
class LinkConfig:
    """`[edge.link]`: reaching the latent service: retries, timeouts, TLS and credentials."""

    max_attempts: int = 6               # per upload/RPC, including the first
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    backoff_multiplier: float = 2.0
    rpc_timeout_s: float = 30.0
    tls_ca: str | None = None           # PEM root certificate: enables TLS
    tls_cert: str | None = None         # PEM client certificate (mutual TLS), with tls_key
    tls_key: str | None = None
    tls_server_name: str | None = None  # override the name checked against the server certificate
    enrollment_secret: str | None = None
    token: str | None = None            # an already issued token: skip Register

    def __post_init__(self) -> None:
        check_int("link.max_attempts", self.max_attempts, 1, 100)
        check_number("link.backoff_initial_s", self.backoff_initial_s, 0.0)
        check_number("link.backoff_max_s", self.backoff_max_s, 0.0)
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError(f"link.backoff_max_s: got {self.backoff_max_s}, must be >= link.backoff_initial_s "
                              f"({self.backoff_initial_s})")
        check_number("link.backoff_multiplier", self.backoff_multiplier, 1.0)
        check_number("link.rpc_timeout_s", self.rpc_timeout_s, 0.0, lo_open=True)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("link.tls_cert/link.tls_key: mutual TLS needs both a certificate and a key")
        if self.tls_cert is not None and self.tls_ca is None:
            raise ConfigError("link.tls_ca: required when link.tls_cert is set (mutual TLS needs TLS)")


#: EdgeConfig's tables: TOML name -> class
TABLES = {"data": DataConfig, "model": ModelConfig, "training": TrainingConfig, "init": InitConfig,
          "public": PublicConfig, "wire": WireConfig, "link": LinkConfig}

#: the flat keys of the earlier layout -> (table, key): a config that still has one fails naming its place
MOVED = {"dataset": ("data", "dataset"), "data_path": ("data", "path"), "test_fraction": ("data", "test_fraction"),
         "max_samples": ("data", "max_samples"), "autoencoder": ("model", "autoencoder"),
         "latent_dim": ("model", "latent_dim"), "conv_channels": ("model", "conv_channels"),
         "mlp_hidden": ("model", "mlp_hidden"), "epochs": ("training", "epochs"),
         "batch_size": ("training", "batch_size"), "lr": ("training", "lr"), "optimizer": ("training", "optimizer"),
         "init_seed": ("init", "seed"), "init_weights": ("init", "weights"),
         "init_programming": ("init", "programming"), "anchors": ("public", "size"),
         "anchor_path": ("public", "path"), "upload_anchors": ("public", "upload"), "bits": ("wire", "bits"),
         "per_feature_scale": ("wire", "per_feature_scale"), "chunk_bytes": ("wire", "chunk_bytes"),
         "rows_per_upload": ("wire", "rows_per_upload"),
         **{k: ("link", k) for k in ("max_attempts", "backoff_initial_s", "backoff_max_s", "backoff_multiplier",
                                     "rpc_timeout_s", "tls_ca", "tls_cert", "tls_key", "tls_server_name",
                                     "enrollment_secret", "token")}}


def moved_key(key: str) -> str:
    """The one-line error for a flat [edge] key of the earlier layout: its table, its name there, and
    that table's keys."""
    table, name = MOVED[key]
    keys = ", ".join(f.name for f in dataclasses.fields(TABLES[table]))
    return f"{key}: moved to [edge.{table}] as {name} (keys there: {keys})"


@dataclass(frozen=True)
class EdgeConfig:
    """One edge device: its seed, one table per concern, and its tiles (None = the digital reference)."""

    seed: int = 0                       # data split, shuffling, tile noise and d2d variation
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    init: InitConfig = field(default_factory=InitConfig)
    public: PublicConfig = field(default_factory=PublicConfig)
    wire: WireConfig = field(default_factory=WireConfig)
    link: LinkConfig = field(default_factory=LinkConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)   # privacy defenses ([edge.defense]; 0 = none)
    analog: dict | None = field(default_factory=lambda: {"preset": "default"})
    #                                     TileConfig dict ({"preset": name} or device/algorithm/forward/...
    #                                     tables), or None = plain torch (the digital reference)

    def __post_init__(self) -> None:
        check_int("seed", self.seed, 0, 2**63 - 1)
        for name, cls in TABLES.items():
            object.__setattr__(self, name, _table(cls, name, getattr(self, name)))
        object.__setattr__(self, "defense", DefenseConfig.from_dict(self.defense))
        if self.analog is not None and not isinstance(self.analog, dict):
            raise ConfigError(f"analog: got {type(self.analog).__name__}, must be a TileConfig table or unset")
        # resolved once, here (the error names the analog field); `analog` stays the written table,
        # which is what travels to devices and what reports name
        object.__setattr__(self, "_tile", self._resolve_tile())
        if self.training.optimizer == "adam" and self.analog is not None:
            raise ConfigError("training.optimizer: 'adam' is digital only; analog tiles train with pulsed SGD "
                              "(set optimizer = 'sgd' or analog = none)")

    # ----------------------------------------------------------------- loading / saving
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EdgeConfig":
        """Build from a TOML-shaped dict; an `[edge]` table is used if present, unknown keys are errors."""
        if not isinstance(data, dict):
            raise ConfigError(f"config: got {type(data).__name__}, must be a table")
        if "edge" in data and isinstance(data["edge"], dict):
            data = data["edge"]
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key in MOVED:
                raise ConfigError(moved_key(key))
            if key not in known:
                raise ConfigError(f"{key}: unknown key; allowed keys are {', '.join(known)}")
        kwargs = dict(data)
        if "analog" in kwargs:
            kwargs["analog"] = _none(kwargs["analog"])
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | Path) -> "EdgeConfig":
        p = Path(path)
        try:
            with p.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config: {p} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config: {p} is not valid TOML ({exc})") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """A TOML-writable dict (None values dropped, tuples as lists), round-trips via from_dict;
        the link's secrets (enrollment_secret, token) are never written."""
        out: dict[str, Any] = {"seed": self.seed}
        for name in (*TABLES, "defense"):
            table = dataclasses.asdict(getattr(self, name))
            out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in table.items() if v is not None}
        for secret in ("enrollment_secret", "token"):
            out["link"].pop(secret, None)  # never written to reports
        out["analog"] = self.analog if self.analog is not None else "none"   # TOML has no null: say it
        return out

    def replace(self, changes: dict[str, Any] | None = None, **top: Any) -> "EdgeConfig":
        """A copy with some fields changed (validated again), named by table: `{"model.latent_dim": 16,
        "wire.bits": 4}`, or top-level ones as keywords (`seed=3`). None values are ignored."""
        tables: dict[str, dict[str, Any]] = {}
        out: dict[str, Any] = {}
        for key, value in {**(changes or {}), **top}.items():
            if value is None:
                continue
            table, _, name = key.rpartition(".")
            if table:
                tables.setdefault(table, {})[name] = value
            else:
                out[key] = value
        for table, values in tables.items():
            out[table] = dataclasses.replace(getattr(self, table), **values)
        return dataclasses.replace(self, **out) if out else self

    def tile_config(self):
        """The analog TileConfig this edge trains on (resolved at load), or None for the digital reference."""
        return self._tile

    def _resolve_tile(self):
        if self.analog is None:
            return None
        import analog  # only with a tile table: torch, which a digital config need not load

        try:
            return analog.presets.from_dict(self.analog)
        except Exception as exc:  # noqa: BLE001 - re-raise with the field named
            raise ConfigError(f"analog: invalid TileConfig ({exc})") from exc
