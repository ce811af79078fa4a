"""An embedded vector store for the embedding cache: one SQLite file (WAL mode), float32 blobs keyed by a hash of
the model's identity and the text.

Layout (``PRAGMA application_id`` marks the file as ours, ``PRAGMA user_version`` is the schema version)::

    models(id INTEGER PRIMARY KEY, identity TEXT UNIQUE, dim INTEGER, count INTEGER)
    vectors(id INTEGER PRIMARY KEY, model INTEGER, check_ BLOB, vec BLOB)

A key is the 32-byte SHA-256 of ``identity \\0 text``; its first 8 bytes are the row id (one B-tree search per
lookup, so a lookup costs the same whatever the store holds) and the rest is stored and compared, so two keys
sharing a row id are never confused (the second one is simply not cached). Lookups ask for the keys they need in
batches of ``LOOKUP_BATCH`` (``WHERE id IN (...)``); writes are short ``INSERT OR IGNORE`` transactions, so
several processes may read and write one store at once. A file that is not such a store, or a blob of the wrong
length, is a :class:`CacheError` naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ClassifyError

APPLICATION_ID = 0x636C6173  # "clas"
SCHEMA_VERSION = 1
STORE_NAME = "embeddings.sqlite3"
LOOKUP_BATCH = 500
WRITE_BATCH = 500
BUSY_TIMEOUT_MS = 120_000
PAGE_SIZE = 8192  # 5 vectors of 384 floats a leaf page (4096 holds 2 and wastes a quarter of the file)
CACHE_KIB = 8 * 1024  # per-connection page cache: holds the B-tree's inner pages (up to ~3 million vectors), not the leaves

SCHEMA = [
    "CREATE TABLE models (id INTEGER PRIMARY KEY, identity TEXT NOT NULL UNIQUE, dim INTEGER NOT NULL, "
    "count INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE vectors (id INTEGER PRIMARY KEY, model INTEGER NOT NULL, check_ BLOB NOT NULL, vec BLOB NOT NULL)",
]
COLUMNS = {"models": ["id", "identity", "dim", "count"], "vectors": ["id", "model", "check_", "vec"]}


class CacheError(ClassifyError):
    """A damaged or foreign embedding store."""


def make_key(identity: str, text: str) -> bytes:
    """The store key of a text embedded by the model ``identity``."""
    return hashlib.sha256(f"{identity}\0{text}".encode("utf-8", "replace")).digest()


def _split(key: bytes) -> tuple[int, bytes]:
    return int.from_bytes(key[:8], "big", signed=True), key[8:]


def store_path(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / STORE_NAME


class VectorStore:
    """Vectors of one or more models in one SQLite file; open lazily, safe to share between processes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._models: dict[str, tuple[int, int]] = {}  # identity -> (model id, dim)
        self.rows_read = 0  # vectors fetched from the file (tests: a lookup reads only what it asked for)

    # -- connection -------------------------------------------------------------------------------------------
    def _damaged(self, reason: str) -> CacheError:
        return CacheError(f"{self.path}: damaged embedding cache ({reason}); delete it or run `classify cache clear` "
                          "(its vectors are computed again)")

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                       check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # takes effect only in a new, empty file
                conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
                self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
                conn.execute("PRAGMA synchronous = NORMAL")
                self._init_schema(conn)
            except sqlite3.DatabaseError as err:
                raise self._damaged(f"{type(err).__name__}: {err}") from None
            self._conn = conn
        return self._conn

    @staticmethod
    def _retry(fn, attempts: int = 50):
        """Run ``fn``, retrying while another process holds a lock SQLite's busy handler does not wait on."""
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err) or i == attempts - 1:
                    raise
                time.sleep(0.05 * (i + 1))

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id == 0:
            self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                app_id = conn.execute("PRAGMA application_id").fetchone()[0]
                if app_id == 0:  # still ours to create (another process may have done it meanwhile)
                    tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
                    if tables:
                        raise self._damaged(f"an SQLite file with other tables ({', '.join(t[0] for t in tables)})")
                    for statement in SCHEMA:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    app_id = APPLICATION_ID
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        if app_id != APPLICATION_ID:
            raise self._damaged(f"not a classify embedding store (application id {app_id:#x})")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise self._damaged(f"schema version {version}, this classify reads version {SCHEMA_VERSION}")
        for table, columns in COLUMNS.items():
            found = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            if found != columns:
                raise self._damaged(f"table {table} has columns {found}, expected {columns}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._models.clear()

    def __getstate__(self):  # a store handed to another process reopens the file there
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])

    # -- models -----------------------------------------------------------------------------------------------
    def _model(self, identity: str, dim: int | None = None) -> tuple[int, int] | None:
        """(model id, dim) of ``identity``; registered with ``dim`` when given and new."""
        if identity in self._models:
            found = self._models[identity]
        else:
            found = self._query(lambda c: c.execute("SELECT id, dim FROM models WHERE identity = ?",
                                                    (identity,)).fetchone())
            if found is None and dim is not None:
                self._write(lambda c: c.execute("INSERT OR IGNORE INTO models (identity, dim) VALUES (?, ?)",
                                                (identity, dim)))
                found = self._query(lambda c: c.execute("SELECT id, dim FROM models WHERE identity = ?",
                                                        (identity,)).fetchone())
            if found is None:
                return None
            found = (int(found[0]), int(found[1]))
            if found[1] <= 0:
                raise self._damaged(f"model {identity!r} has dimension {found[1]}")
            self._models[identity] = found
        if dim is not None and dim != found[1]:
            raise CacheError(f"{self.path}: the cache holds {found[1]}-dimensional vectors for model {identity!r}, "
                             f"got {dim}; run `classify cache clear`")
        return found

    def _query(self, fn):
        try:
            return fn(self.conn)
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.OperationalError) and ("locked" in str(err) or "busy" in str(err)):
                raise CacheError(f"{self.path}: embedding cache is locked by another process ({err})") from None
            raise self._damaged(f"{type(err).__name__}: {err}") from None

    def _write(self, fn):
        def transaction(conn):
            self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                result = fn(conn)
                conn.execute("COMMIT")
                return result
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        return self._query(transaction)

    # -- vectors ----------------------------------------------------------------------------------------------
    def get(self, identity: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The stored vectors of ``keys`` (those not stored are absent), read in batches of LOOKUP_BATCH."""
        if not keys or not self.path.exists() and self._conn is None:
            return {}
        model = self._model(identity)
        if model is None:
            return {}
        model_id, dim = model
        wanted = {}
        for key in keys:
            rowid, check = _split(key)
            wanted[rowid] = (key, check)
        ids = list(wanted)
        out: dict[bytes, np.ndarray] = {}
        for start in range(0, len(ids), LOOKUP_BATCH):
            batch = ids[start : start + LOOKUP_BATCH]
            sql = f"SELECT id, model, check_, vec FROM vectors WHERE id IN ({','.join('?' * len(batch))})"
            rows = self._query(lambda c: c.execute(sql, batch).fetchall())
            self.rows_read += len(rows)
            for rowid, model_of_row, check, blob in rows:
                key, want = wanted[rowid]
                if model_of_row != model_id or check != want:
                    continue  # another key with the same row id: not cached
                if not isinstance(blob, bytes) or len(blob) != 4 * dim:
                    raise self._damaged(f"vector of {len(blob) if isinstance(blob, bytes) else type(blob).__name__} "
                                        f"bytes for a {dim}-dimensional model")
                out[key] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put(self, identity: str, keys: Sequence[bytes], vectors: np.ndarray) -> int:
        """Store vectors (a key already stored is left as it is); returns how many rows were added."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys for {len(vectors)} vectors")
        if not len(keys):
            return 0
        model_id, _ = self._model(identity, int(vectors.shape[1]))
        added = 0
        for start in range(0, len(keys), WRITE_BATCH):
            rows = [(*_split(k), v.tobytes()) for k, v in zip(keys[start : start + WRITE_BATCH],
                                                            vectors[start : start + WRITE_BATCH])]

            def insert(conn, rows=rows):
                before = conn.total_changes
                conn.executemany("INSERT OR IGNORE INTO vectors (id, model, check_, vec) VALUES (?, ?, ?, ?)",
                                 [(rowid, model_id, check, blob) for rowid, check, blob in rows])
                n = conn.total_changes - before
                conn.execute("UPDATE models SET count = count + ? WHERE id = ?", (n, model_id))
                return n

            added += self._write(insert)
        return added

    # -- maintenance ------------------------------------------------------------------------------------------
    def info(self, check: bool = True) -> dict:
        """Path, rows, models (identity, dim, rows), size on disk and, with ``check``, ``PRAGMA quick_check`` and
        a check of every vector's length ("ok" when both pass)."""
        files = [self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")]
        size = sum(f.stat().st_size for f in files if f.exists())
        if not self.path.exists():
            return {"path": str(self.path), "exists": False, "rows": 0, "models": [], "size_bytes": 0,
                    "integrity": "ok"}
        models = self._query(lambda c: c.execute("SELECT identity, dim, count FROM models ORDER BY id").fetchall())
        integrity = None
        if check:
            result = self._query(lambda c: c.execute("PRAGMA quick_check").fetchall())
            integrity = "; ".join(r[0] for r in result)
            if integrity == "ok":  # the file is sound: are the vectors?
                bad = self._query(lambda c: c.execute(
                    "SELECT count(*) FROM vectors v LEFT JOIN models m ON v.model = m.id "
                    "WHERE m.id IS NULL OR typeof(v.vec) != 'blob' OR length(v.vec) != 4 * m.dim").fetchone()[0])
                if bad:
                    integrity = f"{bad} vectors of the wrong length or of no known model"
        return {"path": str(self.path), "exists": True, "rows": sum(m[2] for m in models),
                "models": [{"identity": i, "dim": d, "rows": n} for i, d, n in models], "size_bytes": size,
                "integrity": integrity}

    def clear(self) -> int:
        """Delete the store's files (a damaged one too); returns the bytes freed."""
        self.close()
        freed = 0
        for f in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"), Path(f"{self.path}-journal")):
            if f.exists():
                freed += f.stat().st_size
                f.unlink()
        return freed


def fill_random(store: VectorStore, identity: str, n: int, dim: int = 384, seed: int = 0,
                batch: int = 50_000) -> list[bytes]:
    """Store ``n`` random unit vectors under synthetic keys (benchmarks); returns a sample of the keys."""
    rng = np.random.default_rng(seed)
    sample: list[bytes] = []
    for start in range(0, n, batch):
        size = min(batch, n - start)
        keys = [make_key(identity, f"synthetic {i}") for i in range(start, start + size)]
        v = rng.standard_normal((size, dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        store.put(identity, keys, v)
        sample.extend(keys[:: max(1, n // 20_000)])
    return sample
