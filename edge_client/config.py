"""EdgeConfig: everything one edge device needs to train, encode and upload, validated on construction.

Loadable from a TOML file (`[edge]` table or top-level keys) or a dict; CLI flags override fields
with `dataclasses.replace`, which re-runs validation. The `analog` field is a TileConfig dict (the
shape `analog.presets.from_dict` accepts: a preset name and/or sections) or None for the digital reference.
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


@dataclass(frozen=True)
class EdgeConfig:
    """One edge device: data, autoencoder, training, wire format and upload policy."""

    # data
    dataset: str = "mnist5k"            # built-in name (mnist5k, digits) or a path (idx, CIFAR batch, .npz)
    data_path: str | None = None        # overrides `dataset` when set (a file or directory)
    test_fraction: float = 0.2          # of this client's partition, kept local for honest accuracy
    max_samples: int = 0                # 0 = all; otherwise cap this client's partition (quick runs)
    # autoencoder
    autoencoder: str = "auto"           # conv | mlp | auto (conv for >= 16x16 images, else mlp)
    latent_dim: int = 32
    conv_channels: tuple[int, int] = (8, 16)
    mlp_hidden: int = 128
    # training
    epochs: int = 10
    batch_size: int = 8
    lr: float = 0.01
    optimizer: str = "sgd"              # sgd (what analog tiles do) | adam (digital only)
    seed: int = 0                       # data split, shuffling, tile noise and d2d variation
    init_seed: int | None = None        # shared-init option (a): same AE initial weights on every client
    analog: dict | None = field(default_factory=lambda: {"preset": "default"})
    #                                     TileConfig dict ({"preset": name} or device/algorithm/forward/...
    #                                     tables), or None = plain torch (the digital reference)
    # alignment (public data no client owns)
    anchors: int = 0                    # public anchor set size: 0 = none, else 50..1000 images whose
    #                                     latents are uploaded as anchors (never as training rows)
    upload_anchors: bool = True         # upload the anchors' latents (false: only hold the slice out)
    anchor_path: str | None = None      # the public images (a dataset file or directory); unset = a fixed
    #                                     slice of the dataset held out of every partition (see data.py)
    init_weights: str | None = None     # pretrained AE weights (a torch state-dict file) to program onto
    #                                     the tiles instead of a seeded initialization
    init_programming: dict = field(default_factory=lambda: {"type": "weight_noise", "eta": 0.05})
    #                                     how init_weights are written onto analog tiles: a noise model
    #                                     of analog.inference (weight_noise: std eta x std(W) per tile; pcm)
    # wire
    bits: int = 8                       # 32 float, 16 half, 8 / 4 integer with scale
    per_feature_scale: bool = False     # one scale per latent column instead of per tensor
    chunk_bytes: int = 1 << 20          # upload chunk size, < 4 MB gRPC limit
    rows_per_upload: int = 0            # 0 = one upload for all rows; else split into several uploads
    # upload policy
    max_attempts: int = 6               # per upload/RPC, including the first
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    backoff_multiplier: float = 2.0
    rpc_timeout_s: float = 30.0
    # security
    tls_ca: str | None = None           # PEM root certificate: enables TLS
    tls_cert: str | None = None         # PEM client certificate (mutual TLS), with tls_key
    tls_key: str | None = None
    tls_server_name: str | None = None  # override the name checked against the server certificate
    enrollment_secret: str | None = None
    token: str | None = None            # an already issued token: skip Register
    # privacy defenses (the [edge.defense] table; all 0 = none)
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError(f"dataset: got {self.dataset!r}, must be a non-empty name or path")
        if self.data_path is not None and (not isinstance(self.data_path, str) or not self.data_path):
            raise ConfigError(f"data_path: got {self.data_path!r}, must be a non-empty path or unset")
        check_number("test_fraction", self.test_fraction, 0.0, 0.9, hi_open=False)
        check_int("max_samples", self.max_samples, 0)
        if self.autoencoder not in AUTOENCODERS:
            raise ConfigError(f"autoencoder: got {self.autoencoder!r}, must be one of {', '.join(AUTOENCODERS)}")
        check_int("latent_dim", self.latent_dim, 1, 4096)
        chans = tuple(self.conv_channels) if isinstance(self.conv_channels, (list, tuple)) else None
        if chans is None or len(chans) != 2:
            raise ConfigError(f"conv_channels: got {self.conv_channels!r}, must be two integers")
        for i, c in enumerate(chans):
            check_int(f"conv_channels[{i}]", c, 1, 1024)
        object.__setattr__(self, "conv_channels", chans)
        check_int("mlp_hidden", self.mlp_hidden, 1, 65536)
        check_int("epochs", self.epochs, 0, 100000)
        check_int("batch_size", self.batch_size, 1, 1 << 20)
        check_number("lr", self.lr, 0.0, lo_open=True)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer: got {self.optimizer!r}, must be one of {', '.join(OPTIMIZERS)}")
        if self.optimizer == "adam" and self.analog is not None:
            raise ConfigError("optimizer: 'adam' is digital only; analog tiles train with pulsed SGD "
                              "(set optimizer = 'sgd' or analog = none)")
        check_int("seed", self.seed, 0, 2**63 - 1)
        if self.init_seed is not None:
            check_int("init_seed", self.init_seed, 0, 2**63 - 1)
        if self.analog is not None and not isinstance(self.analog, dict):
            raise ConfigError(f"analog: got {type(self.analog).__name__}, must be a TileConfig table or unset")
        if self.analog is not None:
            self.tile_config()  # validate now: the error names the analog field
        if self.anchors != 0:
            check_int("anchors", self.anchors, MIN_ANCHORS, MAX_ANCHORS)
        for name in ("anchor_path", "init_weights"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"{name}: got {value!r}, must be a non-empty path or unset")
        if not isinstance(self.upload_anchors, bool):
            raise ConfigError(f"upload_anchors: got {self.upload_anchors!r}, must be true or false")
        if self.anchor_path is not None and self.anchors == 0:
            raise ConfigError("anchor_path: set, but anchors is 0; set anchors to the anchor set size (50..1000)")
        if not isinstance(self.init_programming, dict):
            raise ConfigError(f"init_programming: got {self.init_programming!r}, must be a noise-model table")
        self.programming_model()  # validate now: the error names the field
        if self.bits not in BITS:
            raise ConfigError(f"bits: got {self.bits!r}, must be one of {', '.join(map(str, BITS))}")
        if not isinstance(self.per_feature_scale, bool):
            raise ConfigError(f"per_feature_scale: got {self.per_feature_scale!r}, must be true or false")
        check_int("chunk_bytes", self.chunk_bytes, 1, 4 * 1024 * 1024 - 64 * 1024)
        check_int("rows_per_upload", self.rows_per_upload, 0)
        check_int("max_attempts", self.max_attempts, 1, 100)
        check_number("backoff_initial_s", self.backoff_initial_s, 0.0)
        check_number("backoff_max_s", self.backoff_max_s, 0.0)
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError(f"backoff_max_s: got {self.backoff_max_s}, must be >= backoff_initial_s "
                              f"({self.backoff_initial_s})")
        check_number("backoff_multiplier", self.backoff_multiplier, 1.0)
        check_number("rpc_timeout_s", self.rpc_timeout_s, 0.0, lo_open=True)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert/tls_key: mutual TLS needs both a certificate and a key")
        if self.tls_cert is not None and self.tls_ca is None:
            raise ConfigError("tls_ca: required when tls_cert is set (mutual TLS needs TLS)")
        object.__setattr__(self, "defense", DefenseConfig.from_dict(self.defense))
        if self.extra:
            raise ConfigError(f"unknown keys: {', '.join(sorted(self.extra))}")

    # ----------------------------------------------------------------- loading / saving
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EdgeConfig":
        """Build from a TOML-shaped dict; an `[edge]` table is used if present, unknown keys are errors."""
        if not isinstance(data, dict):
            raise ConfigError(f"config: got {type(data).__name__}, must be a table")
        if "edge" in data and isinstance(data["edge"], dict):
            data = data["edge"]
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        unknown = {k: v for k, v in data.items() if k not in known}
        if "conv_channels" in kwargs and isinstance(kwargs["conv_channels"], list):
            kwargs["conv_channels"] = tuple(kwargs["conv_channels"])
        for key in ("analog", "init_seed", "data_path", "anchor_path", "init_weights", "tls_ca", "tls_cert", "tls_key",
                    "tls_server_name", "enrollment_secret", "token"):
            if kwargs.get(key) in ("none", "None", ""):  # TOML has no null
                kwargs[key] = None
        return cls(**kwargs, extra=unknown)

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
        """A TOML-writable dict (None values dropped, tuples as lists), round-trips via from_dict."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            if v is None:
                if f.name == "analog":  # not the default: TOML has no null, so say it
                    out[f.name] = "none"
                continue
            if isinstance(v, DefenseConfig):
                v = dataclasses.asdict(v)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        for secret in ("enrollment_secret", "token"):
            out.pop(secret, None)  # never written to reports
        return out

    def replace(self, **changes: Any) -> "EdgeConfig":
        """A copy with some fields changed (validated again); None values in `changes` are ignored."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **changes) if changes else self

    @property
    def data_source(self) -> str:
        return self.data_path or self.dataset

    def check_data_source(self, field_name: str | None = None) -> None:
        """Raise ConfigError unless the data source is a built-in name or an existing path: checked
        before any work starts, so a typo costs one line instead of a failure inside every client.
        ``field_name`` names the setting in the caller's terms (default: data_path or dataset)."""
        src = self.data_source
        if src in BUILTIN_DATASETS or Path(src).expanduser().exists():
            return
        name = field_name or ("data_path" if self.data_path else "dataset")
        raise ConfigError(f"{name}: got {src!r}, neither a built-in dataset ({', '.join(BUILTIN_DATASETS)}) "
                          f"nor an existing file or folder")

    def programming_model(self):
        """The analog.inference noise model that writes init_weights onto the tiles."""
        from analog.inference import noise_model_from_dict  # on use (start-up time): torch

        try:
            return noise_model_from_dict(self.init_programming, "init_programming.")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def tile_config(self):
        """The analog TileConfig this edge trains on, or None for the digital reference."""
        if self.analog is None:
            return None
        import analog  # on use (start-up time): torch, which a config check need not load

        try:
            return analog.presets.from_dict(self.analog)
        except Exception as exc:  # noqa: BLE001 - re-raise with the field named
            raise ConfigError(f"analog: invalid TileConfig ({exc})") from exc
