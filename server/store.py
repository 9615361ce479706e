"""The durable latent store: SQLite in WAL mode with ``synchronous=FULL`` (or NORMAL, by choice).

Why this shape: one upload = one row of the ``uploads`` table holding its packed latents exactly as
they came over the wire (plus scale/zero-point and the int32 labels), inserted in ONE transaction
after every chunk arrived and the CRC matched. So an upload is either wholly present or absent, a
committed transaction survives ``kill -9`` and power loss (FULL fsyncs the WAL at commit; with
``sync="normal"`` it survives ``kill -9`` of the server but not an OS crash, and saves the fsync), and
``UNIQUE(client_id, upload_id)`` makes the database itself refuse a second copy of a retried upload.
Reads dequantize on the fly and re-check each upload's CRC, so silent disk corruption is detected.

Anchor uploads (``anchors = 1``: latents of the public anchor images, whose int32 column holds each
anchor's index instead of a label) live in the same table, so they get the same atomicity and
duplicate handling, but every read of training rows (``latents``, ``count``, ``summary``) filters
them out: they only ever reach the classifier through ``anchor_latents``, as alignment data.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from common.errors import AnalogEdgeError
from protos import codec
from protos import latent_service_pb2 as pb

DB_NAME = "latents.sqlite3"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clients (
    client_id     TEXT PRIMARY KEY,
    latent_dim    INTEGER NOT NULL CHECK (latent_dim >= 1),
    dtype         INTEGER NOT NULL,
    label_set     TEXT NOT NULL,
    registered_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL REFERENCES clients(client_id),
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id     TEXT NOT NULL REFERENCES clients(client_id),
    upload_id     TEXT NOT NULL,
    num_rows      INTEGER NOT NULL CHECK (num_rows >= 1),
    latent_dim    INTEGER NOT NULL,
    dtype         INTEGER NOT NULL,
    scale         BLOB NOT NULL,
    zero_point    BLOB NOT NULL,
    latents       BLOB NOT NULL,
    labels        BLOB NOT NULL,
    payload_crc32 INTEGER NOT NULL,
    payload_bytes INTEGER NOT NULL,
    committed_at  TEXT NOT NULL,
    anchors       INTEGER NOT NULL DEFAULT 0,
    UNIQUE (client_id, upload_id)
);
CREATE INDEX IF NOT EXISTS uploads_by_client ON uploads(client_id);
CREATE INDEX IF NOT EXISTS tokens_by_client ON tokens(client_id, created_at);
-- covering index: a client's row total (checked in every commit's transaction) reads only index pages
CREATE INDEX IF NOT EXISTS uploads_rows_by_client ON uploads(client_id, num_rows);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class StoreError(AnalogEdgeError, RuntimeError):
    """The store is inconsistent with a request (unknown client, registration conflict, corruption)."""


class QuotaExceeded(StoreError):
    """Committing would exceed the client's row quota."""


class NotAuthorized(StoreError):
    """Re-registering or revoking an existing client without one of its tokens or the admin token."""


class ConflictError(StoreError):
    """A registration that contradicts the store (another latent_dim, dtype or label set)."""


def tokens_equal_hash(token: str, token_hashes: list[str]) -> bool:
    """Constant-time check of a presented token against stored hashes (every hash is compared)."""
    digest = hash_token(token)
    found = False
    for stored in token_hashes:
        found |= hmac.compare_digest(digest, stored)
    return found


@dataclass(frozen=True)
class ClientInfo:
    client_id: str
    latent_dim: int
    dtype: int
    label_set: tuple[int, ...]


@dataclass(frozen=True)
class CommitResult:
    upload_id: str
    rows_stored: int
    duplicate: bool
    client_total_rows: int
    payload_crc32: int


class _Checkpointer:
    """Copies the WAL back into the database in a background thread, off the upload's ack path.

    Why: SQLite's auto-checkpoint runs inside the COMMIT that crosses its threshold, so every ~64 MB
    one upload's acknowledgement waited for a 64 MB copy plus an fsync of the database.
    The writer connection disables it; this thread runs PASSIVE checkpoints (they never block the
    writer, and synchronous=FULL still fsyncs the database before the WAL is reused). Durability is
    unchanged: a commit is durable once its WAL frames are fsynced, whether checkpointed or not.
    If checkpoints ever fall far behind, the writer runs one itself so the WAL cannot grow unbounded.
    """

    def __init__(self, db: Path, store: "LatentStore", every_bytes: int = 16 << 20,
                 writer_limit_bytes: int = 256 << 20) -> None:
        self.every_bytes = every_bytes
        self.writer_limit_bytes = writer_limit_bytes
        self._store = store
        self._pending = 0
        self._wake = threading.Event()
        self._stopping = False
        store._conn.execute("PRAGMA wal_autocheckpoint = 0")
        store._conn.execute(f"PRAGMA journal_size_limit = {4 * every_bytes}")
        self._conn = sqlite3.connect(str(db), timeout=30.0, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 30000")
        self._conn.execute(f"PRAGMA synchronous = {store.sync.upper()}")
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def wrote(self, nbytes: int) -> None:
        """Called by the writer after each commit (under the store lock)."""
        self._pending += nbytes
        if self._pending >= self.writer_limit_bytes:   # the thread could not keep up: checkpoint inline
            self._store._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._pending = 0
        elif self._pending >= self.every_bytes:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(5.0)
            self._wake.clear()
            if self._stopping:
                return
            try:
                busy, log_frames, done = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error:
                continue
            if not busy and done == log_frames:
                self._pending = 0   # all copied: the next commit restarts the WAL from its beginning

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self._conn.close()


SYNC_MODES = ("full", "normal")


class LatentStore:
    """Thread-safe handle on ``DIR/latents.sqlite3``; several processes may read while one writes."""

    def __init__(self, path: str | Path, *, readonly: bool = False, sync: str = "full") -> None:
        """``sync``: "full" fsyncs the WAL at every commit (an ack survives power loss); "normal" only
        writes it (an ack survives kill -9 of the server, not an OS crash or power loss)."""
        if sync not in SYNC_MODES:
            raise StoreError(f"sync: got {sync!r}, must be one of {', '.join(SYNC_MODES)}")
        self.sync = sync
        root = Path(path)
        if root.suffix in (".sqlite3", ".db"):
            root, db = root.parent, root
        else:
            db = root / DB_NAME
        if readonly and not db.is_file():
            raise StoreError(f"store: no database at {db}")
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.db_path = db
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(db), timeout=30.0, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 30000")
        # 64 KiB pages (only takes effect on a new database): uploads are large blobs, and big pages
        # halve the cost of each commit's WAL write and of the checkpoints that copy it back.
        self._conn.execute("PRAGMA page_size = 65536")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute(f"PRAGMA synchronous = {sync.upper()}")   # full: acknowledged means fsynced
        self._conn.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            self._conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            with self._tx():
                self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                cols = {r[1] for r in self._conn.execute("PRAGMA table_info(uploads)").fetchall()}
                if "anchors" not in cols:   # a store written before anchor uploads existed
                    self._conn.execute("ALTER TABLE uploads ADD COLUMN anchors INTEGER NOT NULL DEFAULT 0")
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or int(row[0]) != SCHEMA_VERSION:
            raise StoreError(f"store: schema_version {row and row[0]} in {db}, this code reads {SCHEMA_VERSION}")
        self._clients: dict[str, ClientInfo] = {}
        self._checkpointer = None if readonly else _Checkpointer(db, self)

    # -- plumbing ------------------------------------------------------------------------------
    class _Tx:
        def __init__(self, store: "LatentStore") -> None:
            self.store = store

        def __enter__(self):
            self.store._lock.acquire()
            try:
                self.store._conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.store._lock.release()
                raise
            return self.store._conn

        def __exit__(self, exc_type, exc, tb):
            conn = self.store._conn
            try:
                if not exc_type:
                    conn.execute("COMMIT")
                elif conn.in_transaction:   # SQLite may have rolled back already (e.g. SQLITE_FULL)
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                if conn.in_transaction:     # a failed COMMIT (disk full): undo, then report the failure
                    conn.execute("ROLLBACK")
                raise
            finally:
                self.store._lock.release()
            return False

    def _tx(self) -> "LatentStore._Tx":
        return LatentStore._Tx(self)

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "LatentStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- clients and tokens -----------------------------------------------------------------------
    def latent_dim(self) -> int:
        """The store's latent_dim, fixed by its first registration (0 = no client yet)."""
        rows = self._query("SELECT value FROM meta WHERE key = 'latent_dim'")
        if rows:
            return int(rows[0][0])
        rows = self._query("SELECT latent_dim FROM clients ORDER BY registered_at, rowid LIMIT 1")
        return int(rows[0][0]) if rows else 0   # a store from before the rule: its first client's

    def register(self, client_id: str, latent_dim: int, dtype: int, label_set: list[int], *,
                 token: str = "", admin: bool = False, max_tokens: int = 8) -> str:
        """Create the client (or re-register an existing one with proof) and return a fresh token.

        Why proof: anyone can learn or guess an id, so re-registering an existing id needs one of its
        current tokens (``token``) or the admin credential (``admin=True``), else NotAuthorized. The
        parameters must match the registration (ConflictError naming the field), and the store's
        latent_dim is fixed by its first registration. Only SHA-256 hashes of tokens are stored; a
        client keeps at most ``max_tokens`` tokens, the oldest is retired first.
        """
        labels = sorted(int(v) for v in label_set)
        new_token = secrets.token_urlsafe(32)
        with self._tx() as conn:
            row = conn.execute("SELECT latent_dim, dtype, label_set FROM clients WHERE client_id = ?",
                               (client_id,)).fetchone()
            if row is None:
                meta = conn.execute("SELECT value FROM meta WHERE key = 'latent_dim'").fetchone()
                first = conn.execute("SELECT latent_dim FROM clients ORDER BY registered_at, rowid LIMIT 1").fetchone()
                store_dim = int(meta[0]) if meta else (int(first[0]) if first else 0)
                if store_dim and store_dim != latent_dim:
                    raise ConflictError(f"latent_dim: got {latent_dim}, this store holds latent_dim {store_dim} "
                                        "(fixed by its first registration; one classifier serves the store)")
                if not meta:
                    conn.execute("INSERT INTO meta VALUES ('latent_dim', ?)", (str(store_dim or latent_dim),))
                conn.execute("INSERT INTO clients VALUES (?, ?, ?, ?, ?)",
                             (client_id, latent_dim, dtype, json.dumps(labels), _now()))
            else:
                if not admin:
                    hashes = [r[0] for r in conn.execute("SELECT token_hash FROM tokens WHERE client_id = ?",
                                                         (client_id,))]
                    if not token or not tokens_equal_hash(token, hashes):
                        raise NotAuthorized(f"token: client {client_id!r} is already registered; re-registering "
                                            "it needs one of its current tokens (or the admin token)")
                old_dim, old_dtype, old_labels = row[0], row[1], json.loads(row[2])
                if old_dim != latent_dim:
                    raise ConflictError(f"latent_dim: client {client_id!r} is registered with {old_dim}, "
                                        f"got {latent_dim}")
                if old_dtype != dtype:
                    raise ConflictError(f"dtype: client {client_id!r} is registered with "
                                        f"{pb.DType.Name(old_dtype)}, got {pb.DType.Name(dtype)}")
                if old_labels != labels:
                    raise ConflictError(f"label_set: client {client_id!r} is registered with {old_labels}, "
                                        f"got {labels}")
            conn.execute("INSERT INTO tokens VALUES (?, ?, ?)", (hash_token(new_token), client_id, _now()))
            conn.execute("DELETE FROM tokens WHERE client_id = ? AND rowid NOT IN (SELECT rowid FROM tokens "
                         "WHERE client_id = ? ORDER BY rowid DESC LIMIT ?)", (client_id, client_id, max_tokens))
        self._clients.pop(client_id, None)
        return new_token

    def revoke_tokens(self, client_id: str, token: str = "", *, admin: bool = False, all_tokens: bool = False) -> int:
        """Withdraw ``token`` (or, with ``all_tokens``, every token) of a client; returns how many.

        The caller proves the right with ``token`` itself or ``admin=True`` (NotAuthorized otherwise).
        """
        with self._tx() as conn:
            hashes = [r[0] for r in conn.execute("SELECT token_hash FROM tokens WHERE client_id = ?", (client_id,))]
            presented = bool(token) and tokens_equal_hash(token, hashes)
            if not admin and not presented:
                raise NotAuthorized(f"token: not valid for client {client_id!r}")
            if all_tokens:
                cur = conn.execute("DELETE FROM tokens WHERE client_id = ?", (client_id,))
            elif presented:
                cur = conn.execute("DELETE FROM tokens WHERE token_hash = ?", (hash_token(token),))
            else:
                raise NotAuthorized("token: name the token to revoke, or set all = true")
            return int(cur.rowcount)

    def token_count(self, client_id: str) -> int:
        return int(self._query("SELECT COUNT(*) FROM tokens WHERE client_id = ?", (client_id,))[0][0])

    def client(self, client_id: str) -> ClientInfo | None:
        info = self._clients.get(client_id)
        if info is None:
            rows = self._query("SELECT latent_dim, dtype, label_set FROM clients WHERE client_id = ?", (client_id,))
            if not rows:
                return None
            dim, dtype, labels = rows[0]
            info = ClientInfo(client_id, int(dim), int(dtype), tuple(json.loads(labels)))
            self._clients[client_id] = info
        return info

    def clients(self) -> list[ClientInfo]:
        rows = self._query("SELECT client_id FROM clients ORDER BY client_id")
        return [self.client(r[0]) for r in rows]  # type: ignore[misc]

    def check_token(self, client_id: str, token: str) -> bool:
        """Whether ``token`` is a current token of the client (hashed, compared in constant time)."""
        if not token:
            return False
        rows = self._query("SELECT token_hash FROM tokens WHERE client_id = ?", (client_id,))
        return tokens_equal_hash(token, [r[0] for r in rows])

    # -- uploads -----------------------------------------------------------------------------------
    def find_upload(self, client_id: str, upload_id: str) -> CommitResult | None:
        rows = self._query("SELECT num_rows, payload_crc32 FROM uploads WHERE client_id = ? AND upload_id = ?",
                           (client_id, upload_id))
        if not rows:
            return None
        return CommitResult(upload_id, int(rows[0][0]), True, self.count(client_id), int(rows[0][1]))

    def commit_upload(self, client_id: str, upload_id: str, *, num_rows: int, latent_dim: int,
                      quantization: pb.Quantization, latent_bytes: bytes, labels: np.ndarray,
                      payload_crc32: int, max_rows_per_client: int = 0, anchors: bool = False) -> CommitResult:
        """Insert one validated upload in a single fsynced transaction; a committed id is a duplicate.
        ``anchors``: the rows are anchor latents (``labels`` holds anchor indices), kept apart from
        the training rows; they count toward the row quota (they take space) but not toward
        ``client_total_rows``."""
        scale = np.asarray(quantization.scale, dtype="<f4").tobytes()
        zero = np.asarray(quantization.zero_point, dtype="<f4").tobytes()
        label_bytes = np.ascontiguousarray(labels, dtype="<i4").tobytes()
        try:
            with self._tx() as conn:
                total = conn.execute("SELECT COALESCE(SUM(num_rows), 0) FROM uploads WHERE client_id = ?",
                                     (client_id,)).fetchone()[0]
                if max_rows_per_client and total + num_rows > max_rows_per_client:
                    dup = conn.execute("SELECT 1 FROM uploads WHERE client_id = ? AND upload_id = ?",
                                       (client_id, upload_id)).fetchone()
                    if dup is None:
                        raise QuotaExceeded(f"num_rows: client {client_id!r} holds {total} rows, {num_rows} more "
                                            f"would exceed max_rows_per_client ({max_rows_per_client})")
                conn.execute(
                    "INSERT INTO uploads (client_id, upload_id, num_rows, latent_dim, dtype, scale, zero_point,"
                    " latents, labels, payload_crc32, payload_bytes, committed_at, anchors)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (client_id, upload_id, num_rows, latent_dim, int(quantization.dtype), scale, zero,
                     latent_bytes, label_bytes, payload_crc32, len(latent_bytes) + len(label_bytes), _now(),
                     int(bool(anchors))))
                total = conn.execute("SELECT COALESCE(SUM(num_rows), 0) FROM uploads WHERE client_id = ?"
                                     " AND anchors = 0", (client_id,)).fetchone()[0]
            if self._checkpointer is not None:
                self._checkpointer.wrote(len(latent_bytes) + len(label_bytes))
        except sqlite3.IntegrityError:
            found = self.find_upload(client_id, upload_id)
            if found is None:
                raise
            return found
        return CommitResult(upload_id, num_rows, False, int(total), payload_crc32)

    # -- reads -------------------------------------------------------------------------------------
    def count(self, client_id: str | None = None) -> int:
        """Training rows (anchor rows are not counted)."""
        if client_id is None:
            return int(self._query("SELECT COALESCE(SUM(num_rows), 0) FROM uploads WHERE anchors = 0")[0][0])
        return int(self._query("SELECT COALESCE(SUM(num_rows), 0) FROM uploads WHERE client_id = ? AND anchors = 0",
                               (client_id,))[0][0])

    def summary(self) -> list[tuple[ClientInfo, int, int]]:
        """(client, training rows, training uploads) for every registered client, sorted by id."""
        counts = {r[0]: (int(r[1]), int(r[2])) for r in self._query(
            "SELECT client_id, SUM(num_rows), COUNT(*) FROM uploads WHERE anchors = 0 GROUP BY client_id")}
        return [(c, *counts.get(c.client_id, (0, 0))) for c in self.clients()]

    def anchor_counts(self) -> dict[str, int]:
        """Anchor rows stored per client (clients without anchors are absent)."""
        return {r[0]: int(r[1]) for r in self._query(
            "SELECT client_id, SUM(num_rows) FROM uploads WHERE anchors = 1 GROUP BY client_id")}

    def upload_ids(self, client_id: str | None = None) -> list[tuple[str, str, int]]:
        """(client_id, upload_id, num_rows) in commit order."""
        sql = "SELECT client_id, upload_id, num_rows FROM uploads"
        rows = self._query(sql + " ORDER BY seq") if client_id is None else \
            self._query(sql + " WHERE client_id = ? ORDER BY seq", (client_id,))
        return [(a, b, int(c)) for a, b, c in rows]

    def _decode(self, row: tuple) -> tuple[np.ndarray, np.ndarray]:
        client_id, upload_id, n, dim, dtype, scale, zero, lat, lab, crc = row
        if codec.crc32(bytes(lat) + bytes(lab)) != crc:
            raise StoreError(f"store: upload {upload_id!r} of client {client_id!r} fails its CRC (disk corruption)")
        q = pb.Quantization(dtype=dtype, scale=np.frombuffer(scale, "<f4").tolist(),
                            zero_point=np.frombuffer(zero, "<f4").tolist())
        z = codec.dequantize(codec.unpack_latents(bytes(lat), n, dim, dtype), q)
        y = np.frombuffer(lab, dtype="<i4").astype(np.int64)
        return z, y

    def upload(self, client_id: str, upload_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The dequantized (z, y) of one upload, or None if it was never committed."""
        rows = self._query("SELECT client_id, upload_id, num_rows, latent_dim, dtype, scale, zero_point, latents,"
                           " labels, payload_crc32 FROM uploads WHERE client_id = ? AND upload_id = ?",
                           (client_id, upload_id))
        return self._decode(rows[0]) if rows else None

    def latents(self, client_id: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """All stored training rows, by client id and then in commit order: z float32 [N, D], y int64 [N],
        the client id of each row. Anchor rows are never among them (see ``anchor_latents``).

        Grouping by client makes the rows (and so a seeded classifier trained on them) the same whatever
        order the clients' uploads happened to arrive in."""
        sql = ("SELECT client_id, upload_id, num_rows, latent_dim, dtype, scale, zero_point, latents, labels,"
               " payload_crc32 FROM uploads WHERE anchors = 0")
        rows = self._query(sql + " ORDER BY client_id, seq") if client_id is None else \
            self._query(sql + " AND client_id = ? ORDER BY seq", (client_id,))
        if not rows:
            return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), []
        dims = sorted({int(r[3]) for r in rows})
        if len(dims) > 1:
            raise StoreError(f"latent_dim: the store mixes latent dims {dims}; read one client at a time")
        zs, ys, ids = [], [], []
        for row in rows:
            z, y = self._decode(row)
            zs.append(z)
            ys.append(y)
            ids += [row[0]] * len(y)
        return np.concatenate(zs), np.concatenate(ys), ids

    def anchor_latents(self, client_id: str) -> tuple[np.ndarray, np.ndarray]:
        """One client's anchor latents in commit order: z float32 [K, D] and anchor indices int64 [K]
        (an index uploaded twice appears twice; the later row is the current one)."""
        rows = self._query("SELECT client_id, upload_id, num_rows, latent_dim, dtype, scale, zero_point, latents,"
                           " labels, payload_crc32 FROM uploads WHERE anchors = 1 AND client_id = ? ORDER BY seq",
                           (client_id,))
        if not rows:
            return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
        parts = [self._decode(r) for r in rows]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def integrity_check(self) -> str:
        return str(self._query("PRAGMA integrity_check")[0][0])
