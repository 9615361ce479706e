"""Server and classifier configuration: dataclasses validated on construction, loadable from TOML.

A server TOML looks like::

    host = "127.0.0.1"
    port = 50051
    store = "runs/server"
    max_upload_bytes = 67108864
    [classifier]
    hidden = [128]
    epochs = 20
    client_conditioning = "embedding"
    [classifier.analog]            # omit for a digital (plain torch) classifier
    device = { type = "SoftBounds", dw_min = 0.001 }
    algorithm = { type = "TikiTaka" }

CLI flags override file values (see ``server/cli.py``). Errors name the field and the reason.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.validation import ConfigError, check_int, check_keys, check_number

CONDITIONING = ("none", "embedding", "adapter")
ANCHOR_MAPS = ("none", "lstsq", "ridge", "procrustes")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: file {str(path)!r} does not exist")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid TOML: {exc}") from exc


def _check_keys(cls: type, data: dict[str, Any], prefix: str) -> None:
    check_keys(prefix.rstrip("."), data, {f.name for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class ClassifierConfig:
    """The server's classifier: an MLP over latents, analog tiles when ``analog`` is a TileConfig dict."""

    hidden: tuple[int, ...] = (128,)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    seed: int = 0
    held_out_fraction: float = 0.2
    analog: dict[str, Any] | None = None       # analog.TileConfig.to_dict() shape; None = digital
    client_conditioning: str = "none"           # "embedding": learned per-client vector beside z;
                                                # "adapter": per-client affine map z -> A_c z + b_c before the trunk
    embedding_dim: int = 8
    adapter_rank: int = 0                       # 0: full A_c (d*d + d parameters per client);
                                                # r >= 1: A_c = I + U_c V_c^T (2*d*r + d per client)
    adapter_lr_scale: float = 1.0               # adapter lr = lr * this * n_clients (each head sees 1/n of a batch)
    anchor_map: str = "none"                    # map each client's latents onto a reference space fitted on
                                                # its public anchor latents: lstsq | ridge | procrustes
    anchor_ridge: float = 0.01                  # ridge penalty (x number of anchors) on standardized latents
    standardize: bool = True                    # z-score latents with train-split statistics
    min_rows: int = 10

    def __post_init__(self) -> None:
        p = "classifier."
        if not isinstance(self.hidden, (list, tuple)):
            raise ConfigError(f"{p}hidden: got {self.hidden!r}, must be a list of layer widths")
        object.__setattr__(self, "hidden", tuple(self.hidden))
        for i, h in enumerate(self.hidden):
            check_int(f"{p}hidden[{i}]", h, 1, 65536)
        check_int(f"{p}epochs", self.epochs, 1, 100000)
        check_int(f"{p}batch_size", self.batch_size, 1, 1 << 20)
        check_number(f"{p}lr", self.lr, 0.0, 100.0, lo_open=True)
        check_int(f"{p}seed", self.seed, 0)
        check_number(f"{p}held_out_fraction", self.held_out_fraction, 0.0, 1.0, lo_open=True, hi_open=True)
        if self.client_conditioning not in CONDITIONING:
            raise ConfigError(f"{p}client_conditioning: got {self.client_conditioning!r}, "
                              f"must be one of {', '.join(CONDITIONING)}")
        check_int(f"{p}embedding_dim", self.embedding_dim, 1, 4096)
        check_int(f"{p}adapter_rank", self.adapter_rank, 0, 4096)
        check_number(f"{p}adapter_lr_scale", self.adapter_lr_scale, 0.0, 1e4, lo_open=True)
        if self.anchor_map not in ANCHOR_MAPS:
            raise ConfigError(f"{p}anchor_map: got {self.anchor_map!r}, must be one of {', '.join(ANCHOR_MAPS)}")
        check_number(f"{p}anchor_ridge", self.anchor_ridge, 0.0, 1e6, lo_open=True)
        if not isinstance(self.standardize, bool):
            raise ConfigError(f"{p}standardize: got {self.standardize!r}, must be true or false")
        check_int(f"{p}min_rows", self.min_rows, 2)
        if self.analog is not None:
            if not isinstance(self.analog, dict):
                raise ConfigError(f"{p}analog: got {type(self.analog).__name__}, must be a TileConfig table")
        # resolved once, here (the error names the field); `analog` stays the written table
        object.__setattr__(self, "_tile", self._resolve_tile())

    def tile_config(self):
        """The analog.TileConfig of the classifier's layers (resolved at load), or None for digital."""
        return self._tile

    def _resolve_tile(self):
        if self.analog is None:
            return None
        import analog  # on use (start-up time): torch, which the service loads only to classify

        try:
            return analog.presets.from_dict(self.analog)
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"classifier.analog: {exc}") from exc

    @property
    def mode(self) -> str:
        return "digital" if self.analog is None else "analog"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClassifierConfig":
        _check_keys(cls, data, "classifier.")
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | Path) -> "ClassifierConfig":
        """A classifier TOML: either the keys at top level or inside a ``[classifier]`` table."""
        data = _load_toml(path)
        return cls.from_dict(data.get("classifier", data))

    @classmethod
    def from_toml_text(cls, text: str) -> "ClassifierConfig":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config_toml: not valid TOML: {exc}") from exc
        return cls.from_dict(data.get("classifier", data))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        if d["analog"] is None:
            del d["analog"]  # TOML has no null
        return d


_SECRET = re.compile(r"^[\x21-\x7e]*$")


def is_loopback(host: str) -> bool:
    """True for "localhost" and loopback IP literals (127.0.0.0/8, ::1); a name is not resolved."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    """Everything `analog-edge serve` needs; defaults suit a loopback test server."""

    host: str = "127.0.0.1"
    port: int = 50051                  # 0 = pick a free port (written to port_file)
    store: str = "runs/server"         # directory: latents.sqlite3 + classifiers/
    port_file: str | None = None
    max_workers: int = 64              # server threads; each open Upload stream holds one
    max_upload_bytes: int = 64 << 20   # payload limit of one upload (RESOURCE_EXHAUSTED above it)
    max_message_bytes: int = 4 << 20   # gRPC receive limit of one message (a chunk, a Classify), as the .proto states
    max_rows_per_upload: int = 1 << 20
    max_chunks: int = 1 << 16
    max_rows_per_client: int = 0       # 0 = unlimited (else RESOURCE_EXHAUSTED beyond it)
    max_classify_rows: int = 65536
    max_inflight_bytes: int = 256 << 20    # all uploads' payload bytes held in memory at once (server-wide)
    max_pending_streams: int = 256         # Upload streams waiting for their header; the oldest is evicted beyond it
    header_timeout_seconds: float = 10.0   # an Upload stream must send its header within this
    idle_timeout_seconds: float = 30.0     # ... and each chunk within this of the previous message
    max_tokens_per_client: int = 8         # a new token beyond this retires the client's oldest one
    max_classifier_bytes: int = 1 << 30    # estimated training memory of a classifier config (RESOURCE_EXHAUSTED above)
    train_memory_bytes: int = 8 << 30      # address-space limit of the training child process (0 = none)
    insecure: bool = False                 # allow plaintext on a non-loopback address (tokens travel in clear)
    enrollment_secret: str | None = None   # Register needs it when set
    admin_token: str | None = None         # TrainClassifier needs it when set
    tls_cert: str | None = None            # PEM paths; both or neither
    tls_key: str | None = None
    tls_client_ca: str | None = None       # set = require client certificates (mutual TLS)
    grace_seconds: float = 10.0            # SIGTERM: in-flight RPCs get this long to finish
    store_sync: str = "full"               # full: an ack survives power loss (fsync per commit);
                                           # normal: it survives kill -9 of the server, not an OS crash
    torch_threads: int = 1                 # intra-op threads for training/Classify (0 = torch's default);
                                           # on a small shared host more threads spin against each other
    log_level: str = "INFO"
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)

    def __post_init__(self) -> None:
        if isinstance(self.classifier, dict):
            object.__setattr__(self, "classifier", ClassifierConfig.from_dict(self.classifier))
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"host: got {self.host!r}, must be a non-empty host name or address")
        check_int("port", self.port, 0, 65535)
        if not isinstance(self.store, str) or not self.store:
            raise ConfigError(f"store: got {self.store!r}, must be a directory path")
        check_int("max_workers", self.max_workers, 1, 10000)
        check_int("max_upload_bytes", self.max_upload_bytes, 16)
        check_int("max_message_bytes", self.max_message_bytes, 1024, 1 << 31)
        check_int("max_rows_per_upload", self.max_rows_per_upload, 1)
        check_int("max_chunks", self.max_chunks, 1)
        check_int("max_rows_per_client", self.max_rows_per_client, 0)
        check_int("max_classify_rows", self.max_classify_rows, 1)
        check_int("max_inflight_bytes", self.max_inflight_bytes, 16)
        if self.max_inflight_bytes < self.max_upload_bytes:
            raise ConfigError(f"max_inflight_bytes: got {self.max_inflight_bytes}, must be >= max_upload_bytes "
                              f"({self.max_upload_bytes}) or no upload of the maximum size could ever start")
        check_int("max_pending_streams", self.max_pending_streams, 1, 1 << 20)
        check_number("header_timeout_seconds", self.header_timeout_seconds, 0.0, 3600.0, lo_open=True)
        check_number("idle_timeout_seconds", self.idle_timeout_seconds, 0.0, 3600.0, lo_open=True)
        check_int("max_tokens_per_client", self.max_tokens_per_client, 1, 1024)
        check_int("max_classifier_bytes", self.max_classifier_bytes, 1 << 20)
        check_int("train_memory_bytes", self.train_memory_bytes, 0)
        if not isinstance(self.insecure, bool):
            raise ConfigError(f"insecure: got {self.insecure!r}, must be true or false")
        for name in ("enrollment_secret", "admin_token"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value or not _SECRET.match(value)):
                raise ConfigError(f"{name}: must be a non-empty printable ASCII string without spaces")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert/tls_key: set both or neither")
        for name in ("tls_cert", "tls_key", "tls_client_ca"):
            value = getattr(self, name)
            if value is not None and not Path(value).is_file():
                raise ConfigError(f"{name}: file {value!r} does not exist")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError("tls_client_ca: needs tls_cert and tls_key")
        if not self.tls and not self.insecure and not is_loopback(self.host):
            raise ConfigError(f"host: {self.host!r} is not a loopback address and no TLS is configured (tokens "
                              "would travel in clear); set tls_cert/tls_key, or pass --insecure to accept that")
        check_number("grace_seconds", self.grace_seconds, 0.0, 3600.0)
        check_int("torch_threads", self.torch_threads, 0, 1024)
        if self.store_sync not in ("full", "normal"):
            raise ConfigError(f"store_sync: got {self.store_sync!r}, must be 'full' or 'normal'")
        if not isinstance(self.log_level, str) or self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"log_level: got {self.log_level!r}, must be one of {', '.join(LOG_LEVELS)}")
        object.__setattr__(self, "log_level", self.log_level.upper())

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ServerConfig":
        _check_keys(cls, data, "")
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | Path) -> "ServerConfig":
        data = _load_toml(path)
        if "server" in data:  # [server] + optional top-level [classifier]
            merged = dict(data["server"])
            if "classifier" in data:
                merged.setdefault("classifier", data["classifier"])
            data = merged
        return cls.from_dict(data)

    def replace(self, **overrides: Any) -> "ServerConfig":
        """A copy with the given (non-None) fields replaced and validated again."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "classifier"}
        d = {k: v for k, v in d.items() if v is not None}
        d["classifier"] = self.classifier.to_dict()
        return d
