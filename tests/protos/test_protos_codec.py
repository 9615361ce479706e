"""Byte layout of latents on the wire: round trips, INT4 nibble order, CRC, chunking, validation."""
import zlib

import numpy as np
import pytest

from protos import codec
from protos import latent_service_pb2 as pb


@pytest.mark.parametrize("dtype,lo,hi", [(pb.INT8, -128, 127), (pb.INT4, -8, 7)])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 3), (16, 32)])
def test_integer_round_trip(dtype, lo, hi, shape):
    rng = np.random.default_rng(0)
    v = rng.integers(lo, hi + 1, size=shape)
    data = codec.pack_latents(v, dtype)
    assert len(data) == codec.latent_nbytes(*shape, dtype)
    np.testing.assert_array_equal(codec.unpack_latents(data, *shape, dtype), v)


@pytest.mark.parametrize("dtype,np_dtype", [(pb.FLOAT32, np.float32), (pb.FLOAT16, np.float16)])
def test_float_round_trip(dtype, np_dtype):
    v = np.random.default_rng(1).normal(size=(9, 4)).astype(np_dtype)
    out = codec.unpack_latents(codec.pack_latents(v, dtype), 9, 4, dtype)
    np.testing.assert_array_equal(out, v)


def test_int4_low_nibble_first_twos_complement_and_padding():
    # values 1, -1, 7 -> nibbles 0x1, 0xF, 0x7 (+ zero pad): bytes 0xF1, 0x07
    assert codec.pack_latents(np.array([[1, -1, 7]]), pb.INT4) == bytes([0xF1, 0x07])


def test_pack_rejects_out_of_range_and_float_values():
    with pytest.raises(codec.CodecError, match="latents: values outside"):
        codec.pack_latents(np.array([[8]]), pb.INT4)
    with pytest.raises(codec.CodecError, match="must be integers"):
        codec.pack_latents(np.array([[0.5]]), pb.INT8)
    with pytest.raises(codec.CodecError, match="dtype: got 0"):
        codec.pack_latents(np.zeros((1, 1)), pb.DTYPE_UNSPECIFIED)


def test_dequantize_per_feature_scale_and_zero_point():
    raw = np.array([[2, 4], [-2, 0]], dtype=np.int8)
    q = pb.Quantization(dtype=pb.INT8, scale=[0.5, 2.0], zero_point=[0.0, 1.0])
    np.testing.assert_allclose(codec.dequantize(raw, q), [[1.0, 6.0], [-1.0, -2.0]])


@pytest.mark.parametrize("q,match", [
    (pb.Quantization(dtype=pb.INT8), "scale: got 0 values"),
    (pb.Quantization(dtype=pb.INT8, scale=[1.0, 1.0, 1.0]), "must be 1 or latent_dim"),
    (pb.Quantization(dtype=pb.INT8, scale=[0.0]), "finite and > 0"),
    (pb.Quantization(dtype=pb.INT8, scale=[1.0], zero_point=[1.0, 2.0]), "zero_point"),
    (pb.Quantization(dtype=pb.FLOAT32, scale=[1.0]), "must be empty"),
])
def test_check_quantization_names_the_field(q, match):
    with pytest.raises(codec.CodecError, match=match):
        codec.check_quantization(q, latent_dim=2)


def test_payload_split_crc_and_chunks():
    v = np.arange(12).reshape(4, 3) - 6
    labels = np.array([0, 3, 1, 2])
    payload = codec.build_payload(codec.pack_latents(v, pb.INT4), labels)
    assert len(payload) == codec.payload_nbytes(4, 3, pb.INT4)
    lat, lab = codec.split_payload(payload, 4, 3, pb.INT4)
    np.testing.assert_array_equal(lab, labels)
    np.testing.assert_array_equal(codec.unpack_latents(lat, 4, 3, pb.INT4), v)
    assert codec.crc32(payload) == zlib.crc32(payload)
    chunks = list(codec.iter_chunks(payload, 5))
    assert len(chunks) == codec.num_chunks(len(payload), 5) and b"".join(chunks) == payload
    with pytest.raises(codec.CodecError, match="payload_bytes: got"):
        codec.split_payload(payload[:-1], 4, 3, pb.INT4)
