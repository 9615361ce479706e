"""Config validation / TOML loading and store-level guarantees, without a network."""
import sqlite3

import numpy as np
import pytest

from protos import codec
from protos import latent_service_pb2 as pb
from server.config import ClassifierConfig, ConfigError, ServerConfig
from server.store import LatentStore, NotAuthorized, QuotaExceeded, StoreError


@pytest.mark.parametrize("kw,match", [
    ({"port": 70000}, "port: got 70000"),
    ({"max_workers": 0}, "max_workers: got 0"),
    ({"torch_threads": -1}, "torch_threads: got -1"),
    ({"store_sync": "off"}, "store_sync: got 'off'"),
    ({"log_level": "LOUD"}, "log_level"),
    ({"tls_cert": "/nonexistent.pem"}, "tls_cert/tls_key: set both"),
    ({"admin_token": "has space"}, "admin_token"),
    ({"classifier": {"epochs": 0}}, "classifier.epochs: got 0"),
    ({"classifier": {"client_conditioning": "magic"}}, "classifier.client_conditioning"),
    ({"classifier": {"held_out_fraction": 1.0}}, "classifier.held_out_fraction"),
    ({"classifier": {"hidden": [32, 0]}}, r"classifier.hidden\[1\]"),
    ({"classifier": {"wat": 1}}, "classifier.wat: unknown key"),
    ({"bogus": 1}, "bogus: unknown key"),
])
def test_server_config_errors_name_the_field(kw, match):
    with pytest.raises(ConfigError, match=match):
        ServerConfig.from_dict(kw)


def test_server_config_from_toml_and_overrides(tmp_path):
    f = tmp_path / "server.toml"
    f.write_text('[server]\nport = 0\nstore = "s"\nmax_upload_bytes = 1024\n'
                 '[classifier]\nhidden = [16, 8]\nclient_conditioning = "embedding"\n')
    cfg = ServerConfig.from_toml(f)
    assert (cfg.port, cfg.max_upload_bytes, cfg.classifier.hidden) == (0, 1024, (16, 8))
    assert cfg.classifier.client_conditioning == "embedding"
    over = cfg.replace(port=123, host=None)
    assert (over.port, over.host, over.store) == (123, "127.0.0.1", "s")
    with pytest.raises(ConfigError, match="port"):
        cfg.replace(port=-1)
    assert ClassifierConfig.from_toml(f).hidden == (16, 8)
    assert ClassifierConfig.from_dict(cfg.classifier.to_dict()) == cfg.classifier


def _commit(s, cid, uid, rows=5, seed=0, quota=0):
    z = np.random.default_rng(seed).normal(size=(rows, 3)).astype(np.float32)
    lat = codec.pack_latents(z, pb.FLOAT32)
    y = np.zeros(rows, np.int32)
    return s.commit_upload(cid, uid, num_rows=rows, latent_dim=3, quantization=pb.Quantization(dtype=pb.FLOAT32),
                           latent_bytes=lat, labels=y, payload_crc32=codec.crc32(codec.build_payload(lat, y)),
                           max_rows_per_client=quota), z


def test_store_pragmas_uniqueness_and_tokens(tmp_path):
    with LatentStore(tmp_path) as s:
        assert s._query("PRAGMA journal_mode")[0][0] == "wal"
        assert s._query("PRAGMA synchronous")[0][0] == 2  # FULL
        t1 = s.register("a", 3, pb.FLOAT32, [0, 1])
        with pytest.raises(NotAuthorized, match="token"):   # re-registration needs proof
            s.register("a", 3, pb.FLOAT32, [1, 0])
        t2 = s.register("a", 3, pb.FLOAT32, [1, 0], token=t1)  # with proof: new token, old one valid
        assert t1 != t2 and s.check_token("a", t1) and s.check_token("a", t2) and not s.check_token("a", "x")
        with pytest.raises(StoreError, match="latent_dim: client 'a' is registered with 3"):
            s.register("a", 4, pb.FLOAT32, [0, 1], token=t1)
        r1, z = _commit(s, "a", "u1")
        r2, _ = _commit(s, "a", "u1")
        assert (r1.duplicate, r2.duplicate, r2.rows_stored, s.count("a")) == (False, True, 5, 5)
        np.testing.assert_array_equal(s.upload("a", "u1")[0], z)
        with pytest.raises(QuotaExceeded, match="max_rows_per_client"):
            _commit(s, "a", "u2", rows=6, quota=10)
        assert s.count() == 5
    # the database itself refuses a second copy, whoever writes
    conn = sqlite3.connect(tmp_path / "latents.sqlite3")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO uploads (client_id, upload_id, num_rows, latent_dim, dtype, scale, zero_point,"
                     " latents, labels, payload_crc32, payload_bytes, committed_at)"
                     " SELECT client_id, upload_id, num_rows, latent_dim, dtype, scale, zero_point, latents, labels,"
                     " payload_crc32, payload_bytes, committed_at FROM uploads")
    # silent corruption on disk is detected at read time
    conn.execute("UPDATE uploads SET latents = zeroblob(length(latents))")
    conn.commit()
    conn.close()
    with LatentStore(tmp_path) as s, pytest.raises(StoreError, match="fails its CRC"):
        s.latents()


@pytest.mark.parametrize("sync,level", [("full", 2), ("normal", 1)])
def test_store_sync_mode_reaches_sqlite(tmp_path, sync, level):
    with LatentStore(tmp_path / "s", sync=sync) as store:
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == level
    with pytest.raises(StoreError, match="sync: got 'off'"):
        LatentStore(tmp_path / "t", sync="off")


def test_store_training_rows_do_not_depend_on_upload_arrival_order(tmp_path):
    """Clients upload concurrently: the rows a classifier trains on must not follow the arrival order."""
    reads = []
    for name, order in (("ab", ["a", "b", "a"]), ("ba", ["b", "a", "a"])):
        with LatentStore(tmp_path / name) as s:
            for cid in ("a", "b"):
                s.register(cid, 3, pb.FLOAT32, [0])
            seen = {"a": 0, "b": 0}
            for cid in order:              # the same uploads per client, interleaved differently
                seen[cid] += 1
                _commit(s, cid, f"u{seen[cid]}", seed=10 * ord(cid) + seen[cid])
            reads.append(s.latents())
    (z1, y1, ids1), (z2, y2, ids2) = reads
    assert ids1 == ids2 == ["a"] * 10 + ["b"] * 5
    np.testing.assert_array_equal(z1, z2)
    np.testing.assert_array_equal(y1, y2)


def test_the_classifier_tile_table_is_resolved_once_at_load():
    import analog

    clf = ClassifierConfig(analog={"preset": "hwa"})
    assert clf.tile_config() is clf.tile_config() and clf.tile_config() == analog.presets.from_dict({"preset": "hwa"})
    assert ClassifierConfig().tile_config() is None
