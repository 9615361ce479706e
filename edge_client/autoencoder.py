"""The edge autoencoders: one architecture, built digital (plain torch) or on analog tiles.

* ``conv`` (images whose sides divide by 4, e.g. 28x28 MNIST or 32x32x3 CIFAR): two stride-2 3x3
  convolutions and a linear map to z; the decoder mirrors it with a linear layer, nearest-neighbour
  upsampling and 3x3 convolutions (upsample + conv instead of transposed convolution, because the
  analog layer set is Linear/Conv2d, and it avoids checkerboard artefacts).
* ``mlp`` (small images, e.g. 8x8 digits): pixels -> hidden -> z -> hidden -> pixels.

z is linear (no activation), the reconstruction goes through a sigmoid (pixels are in [0, 1]).
The analog version is the digital model passed through `analog.convert_to_analog` with the edge's
TileConfig, so both share the architecture and, with the same seed, the initial weights.
"""
from __future__ import annotations

import torch
from torch import nn

import analog
from common.validation import ConfigError


class Autoencoder(nn.Module):
    """encoder(x) = z (B, latent_dim); decoder(z) = x_hat (B, C, H, W)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, kind: str,
                 image_shape: tuple[int, int, int], latent_dim: int):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.kind = kind
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    @property
    def pixels(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    @property
    def compression_ratio(self) -> float:
        """The paper's definition: input values per latent value."""
        return self.pixels / self.latent_dim


def resolve_kind(kind: str, image_shape: tuple[int, int, int]) -> str:
    """`auto` picks conv for images >= 16x16 whose sides divide by 4, mlp otherwise."""
    _, h, w = image_shape
    conv_ok = h % 4 == 0 and w % 4 == 0 and h >= 8 and w >= 8
    if kind == "auto":
        return "conv" if conv_ok and min(h, w) >= 16 else "mlp"
    if kind == "conv" and not conv_ok:
        raise ConfigError(f"autoencoder: 'conv' needs image sides divisible by 4 (>= 8), got {h}x{w}; "
                         f"use 'mlp' or 'auto'")
    if kind not in ("conv", "mlp"):
        raise ConfigError(f"autoencoder: got {kind!r}, must be conv, mlp or auto")
    return kind


def _conv_ae(image_shape: tuple[int, int, int], latent_dim: int, channels: tuple[int, int]):
    c, h, w = image_shape
    c1, c2 = channels
    h4, w4 = h // 4, w // 4
    encoder = nn.Sequential(
        nn.Conv2d(c, c1, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(c2 * h4 * w4, latent_dim),
    )
    decoder = nn.Sequential(
        nn.Linear(latent_dim, c2 * h4 * w4), nn.ReLU(),
        nn.Unflatten(1, (c2, h4, w4)),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(c2, c1, 3, padding=1), nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(c1, c, 3, padding=1), nn.Sigmoid(),
    )
    return encoder, decoder


def _mlp_ae(image_shape: tuple[int, int, int], latent_dim: int, hidden: int):
    pixels = image_shape[0] * image_shape[1] * image_shape[2]
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, latent_dim))
    decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, pixels),
                            nn.Sigmoid(), nn.Unflatten(1, tuple(image_shape)))
    return encoder, decoder


def build_autoencoder(image_shape: tuple[int, int, int], latent_dim: int, kind: str = "auto",
                      tile_config=None, conv_channels: tuple[int, int] = (8, 16),
                      mlp_hidden: int = 128, init_seed: int | None = None) -> Autoencoder:
    """Build the AE; with `tile_config` every Linear/Conv2d becomes an analog layer on that config.

    `init_seed` fixes the initial weights independently of the global RNG (shared-init option (a):
    every client passing the same init_seed starts from identical weights). Analog tiles draw their
    device-to-device variation from the global torch seed at conversion time, so two clients with
    the same init_seed but different seeds still are two different chips.
    """
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ConfigError(f"image_shape: got {image_shape}, must be (C, H, W) with sizes >= 1")
    if latent_dim < 1:
        raise ConfigError(f"latent_dim: got {latent_dim}, must be >= 1")
    kind = resolve_kind(kind, image_shape)

    def make():
        if kind == "conv":
            return _conv_ae(image_shape, latent_dim, tuple(conv_channels))
        return _mlp_ae(image_shape, latent_dim, mlp_hidden)

    if init_seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            encoder, decoder = make()
    else:
        encoder, decoder = make()
    model = Autoencoder(encoder, decoder, kind, image_shape, latent_dim)
    if tile_config is not None:
        analog_model = analog.convert_to_analog(model, tile_config)
        # keep the metadata attributes (convert deep-copies the module, attributes included)
        for attr in ("kind", "image_shape", "latent_dim"):
            if not hasattr(analog_model, attr):
                setattr(analog_model, attr, getattr(model, attr))
        return analog_model
    return model


def is_analog(model: nn.Module) -> bool:
    """True if any sub-module is an analog layer (trained with AnalogOptimizer)."""
    return any(isinstance(m, (analog.AnalogLinear, analog.AnalogConv2d)) for m in model.modules())
