"""Latents on the wire: quantize encoder outputs to `bits` with unbiased stochastic rounding.

32 bits = float32 as is; 16 = IEEE half, stochastically rounded to one of its two neighbouring
half-precision values; 8 / 4 = symmetric signed integers q in [-qmax, qmax] (qmax 127 / 7) with
one scale per tensor or per latent column (scale = max|z| / qmax, so nothing is clipped and the
rounding stays unbiased: E[scale * q] = z). The scale travels in the protobuf `Quantization` so the
server dequantizes with `protos.codec.dequantize`; byte layout lives in `protos.codec` only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from analog.rounding import stochastic_round
from protos import codec as wire
from protos import latent_service_pb2 as pb

QMAX = {8: 127, 4: 7}


def _stochastic_half(z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Round float32 to float16, to the upper or lower neighbour with probability by distance."""
    z = z.astype(np.float32)
    with np.errstate(over="ignore"):
        near = z.astype(np.float16)
    near32 = near.astype(np.float32)
    lower = np.where(near32 > z, np.nextafter(near, np.float16(-np.inf)), near)
    upper = np.where(near32 > z, near, np.nextafter(near, np.float16(np.inf)))
    lo32, up32 = lower.astype(np.float32), upper.astype(np.float32)
    gap = up32 - lo32
    with np.errstate(invalid="ignore", divide="ignore"):
        p_up = np.where(gap > 0, (z - lo32) / gap, 0.0)
    exact = near32 == z
    out = np.where(rng.random(z.shape) < p_up, upper, lower)
    return np.where(exact, near, out).astype(np.float16)


@dataclass(frozen=True)
class QuantizedLatents:
    """Wire-ready latents: raw values (ints for INT8/INT4, floats otherwise) and their Quantization."""

    values: np.ndarray
    quantization: pb.Quantization
    bits: int

    @property
    def num_rows(self) -> int:
        return int(self.values.shape[0])

    @property
    def latent_dim(self) -> int:
        return int(self.values.shape[1])

    @property
    def dtype(self) -> int:
        return self.quantization.dtype

    def pack(self) -> bytes:
        return wire.pack_latents(self.values, self.dtype)

    def rows(self, index: slice) -> "QuantizedLatents":
        """These rows only, same quantization (uploads and Classify calls go in pieces)."""
        return QuantizedLatents(self.values[index], self.quantization, self.bits)

    def dequantize(self) -> np.ndarray:
        """What the server will see (float32), via the shared codec."""
        return wire.dequantize(self.values, self.quantization)

    def scale_list(self) -> list[float]:
        return [float(s) for s in self.quantization.scale]


def choose_scale(z: np.ndarray, bits: int, per_feature: bool) -> np.ndarray:
    """max|z| / qmax per tensor (shape (1,)) or per column (shape (D,)); 1.0 where z is all zero."""
    qmax = QMAX[bits]
    amax = np.abs(z).max(axis=0) if per_feature else np.array([np.abs(z).max()])
    amax = amax.astype(np.float64)
    scale = np.where(amax > 0, amax / qmax, 1.0)
    return scale.astype(np.float32)


def quantize_latents(z: np.ndarray | torch.Tensor, bits: int, per_feature: bool = False,
                     scale: np.ndarray | list[float] | None = None, seed: int = 0) -> QuantizedLatents:
    """Quantize a (rows, latent_dim) float matrix; `scale` reuses a known one (values beyond it clip).

    Seeded: the same (z, bits, scale, seed) always gives the same bytes.
    """
    z = z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 1:
        raise wire.CodecError(f"latents: got shape {z.shape}, must be (rows >= 1, latent_dim >= 1)")
    if not np.all(np.isfinite(z)):
        raise wire.CodecError("latents: contain NaN or infinite values (did training diverge?)")
    if bits not in wire.BITS_TO_DTYPE:
        raise wire.CodecError(f"bits: got {bits}, must be one of 32, 16, 8, 4")
    z = z.astype(np.float32)
    dtype = wire.BITS_TO_DTYPE[bits]
    if bits == 32:
        return QuantizedLatents(z.copy(), pb.Quantization(dtype=dtype), bits)
    if bits == 16:
        if np.abs(z).max() > 65504:
            raise wire.CodecError("latents: values beyond float16 range (65504); use bits = 32 or 8")
        half = _stochastic_half(z, np.random.default_rng(seed))
        return QuantizedLatents(half, pb.Quantization(dtype=dtype), bits)
    qmax = QMAX[bits]
    if scale is None:
        scale = choose_scale(z, bits, per_feature)
    scale = np.asarray(scale, dtype=np.float32).reshape(-1)
    if scale.size not in (1, z.shape[1]) or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise wire.CodecError(f"scale: got {scale.size} values, must be 1 or latent_dim ({z.shape[1]}), finite, > 0")
    gen = torch.Generator().manual_seed(int(seed))
    scaled = torch.from_numpy(z.astype(np.float64) / scale.astype(np.float64))
    q = stochastic_round(scaled, generator=gen).clamp_(-qmax, qmax)
    values = q.numpy().astype(np.int8)
    quant = pb.Quantization(dtype=dtype, scale=[float(s) for s in scale])
    return QuantizedLatents(values, quant, bits)


def wire_report(num_rows: int, latent_dim: int, bits: int, pixels: int,
                wire_bytes: int | None = None) -> dict:
    """Bytes accounting: payload (latents + int32 labels) vs raw 8-bit images + labels.

    `compression_pixels` is the paper's `pixels / latent_dim`; `compression_bytes` is raw bytes over
    payload bytes (what the network pays); `wire_bytes` (if given) adds protobuf framing.
    """
    dtype = wire.BITS_TO_DTYPE[bits]
    payload = wire.payload_nbytes(num_rows, latent_dim, dtype)
    raw = num_rows * (pixels + 4)  # uint8 pixels + the same int32 label
    out = {
        "rows": num_rows,
        "latent_dim": latent_dim,
        "bits": bits,
        "pixels": pixels,
        "payload_bytes": payload,
        "bytes_per_sample": payload / num_rows,
        "raw_bytes": raw,
        "compression_pixels": pixels / latent_dim,
        "compression_bytes": raw / payload,
    }
    if wire_bytes is not None:
        out["wire_bytes"] = wire_bytes
        out["compression_wire"] = raw / wire_bytes
    return out
