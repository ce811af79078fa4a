"""Encoder backends (classify/backends.py) with the real packaged model: one ONNX export and one small
static distillation per test session, in a temporary cache (about a minute on 2 cores)."""

import logging
import shutil

import numpy as np
import pytest

from classify import backends
from classify.config import load_config
from classify.embed import Embedder, model_identity
from classify.errors import ConfigError

from conftest import ROOT

pytestmark = pytest.mark.slow

TEXTS = [
    "Russian missiles strike Kyiv power grid. Drones and missiles hit energy sites across Ukraine.",
    "Tehran students rally against hijab law",
    "Hunt sets out tax rises in autumn statement. The chancellor told MPs the budget gap must close.",
    "Argentina beat France in World Cup final",
    "The war in the city goes on",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def torch_vectors(cache):
    return Embedder(cache_dir=str(cache), backend="torch", use_cache=False, show_progress=False).encode(TEXTS)


def _unit(v):
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("backend,floor", [("onnx", 0.999), ("onnx-int8", 0.97)])
def test_onnx_backends_agree_with_torch(cache, torch_vectors, backend, floor):
    v = Embedder(cache_dir=str(cache), backend=backend, use_cache=False, show_progress=False).encode(TEXTS)
    assert v.shape == torch_vectors.shape and v.dtype == np.float32
    _unit(v)
    assert (v * torch_vectors).sum(1).min() > floor


def test_export_is_reused(cache, torch_vectors):
    Embedder(cache_dir=str(cache), backend="onnx-int8", use_cache=False, show_progress=False).encode(TEXTS[:1])
    path = next((cache / "onnx").glob("*/model-int8.onnx"))
    exports, mtime = backends.EXPORTS, path.stat().st_mtime_ns
    v = Embedder(cache_dir=str(cache), backend="onnx-int8", use_cache=False, show_progress=False).encode(TEXTS)
    assert backends.EXPORTS == exports and path.stat().st_mtime_ns == mtime
    assert (v * torch_vectors).sum(1).min() > 0.97
    assert not list(path.parent.glob(".*.tmp"))  # no temporary files left behind


def test_corrupt_export_is_rebuilt_and_reported(cache, tmp_path, torch_vectors, caplog):
    shutil.copytree(cache / "onnx", tmp_path / "onnx", ignore=shutil.ignore_patterns("*.lock"))
    path = next((tmp_path / "onnx").glob("*/model-int8.onnx"))
    path.write_bytes(b"not an onnx file")
    with caplog.at_level(logging.WARNING, logger="classify"):
        v = Embedder(cache_dir=str(tmp_path), backend="onnx-int8", use_cache=False, show_progress=False).encode(TEXTS)
    warned = [r.getMessage() for r in caplog.records if r.name == "classify"]
    assert len(warned) == 1 and "damaged ONNX export" in warned[0] and "\n" not in warned[0]
    assert (v * torch_vectors).sum(1).min() > 0.97
    assert path.stat().st_size > 1_000_000


def test_cache_keys_carry_the_backend(cache):
    from classify.store import make_key

    identities = {b: Embedder(cache_dir=str(cache), backend=b).identity for b in backends.BACKENDS}
    keys = {b: make_key(identities[b], "a text") for b in backends.BACKENDS}
    assert len(set(keys.values())) == len(backends.BACKENDS)
    # every identity starts with the model's own (name + weights version)
    assert identities["torch"] == Embedder(cache_dir=str(cache)).identity
    assert all(identities[b].startswith(model_identity("all-MiniLM-L6-v2")) for b in backends.BACKENDS)


def test_backends_never_share_cached_vectors(cache):
    onnx = Embedder(cache_dir=str(cache), backend="onnx", show_progress=False).encode(TEXTS[:2])
    int8 = Embedder(cache_dir=str(cache), backend="onnx-int8", show_progress=False).encode(TEXTS[:2])
    again = Embedder(cache_dir=str(cache), backend="onnx", show_progress=False)
    again._encoder = "not used"  # everything must come from the cache now
    assert not np.array_equal(onnx, int8)
    np.testing.assert_array_equal(again.encode(TEXTS[:2]), onnx)


def test_static_backend(cache, monkeypatch):
    monkeypatch.setattr(backends, "STATIC_LIMIT", 4000)  # a small distillation: the common word pieces only
    v = Embedder(cache_dir=str(cache), backend="static", use_cache=False, show_progress=False).encode(TEXTS)
    assert v.shape == (len(TEXTS), backends.STATIC_DIMS)
    _unit(v)
    distilled = backends.DISTILLATIONS
    w = Embedder(cache_dir=str(cache), backend="static", use_cache=False, show_progress=False).encode(TEXTS)
    assert backends.DISTILLATIONS == distilled  # reused from the cache
    np.testing.assert_allclose(v, w, atol=1e-6)
    sims = v @ v.T
    assert sims[~np.eye(len(TEXTS), dtype=bool)].max() < 0.9  # distinct texts, distinct vectors


def test_static_backend_is_refused_for_stance():
    with pytest.raises(ConfigError, match=r"default.yaml: embedding.backend: static .* stance") as err:
        load_config(ROOT / "configs" / "default.yaml", ["embedding.backend=static"])
    assert "\n" not in str(err.value)
    cfg = load_config(ROOT / "configs" / "default.yaml", ["embedding.backend=static", "stance.enabled=false"])
    assert cfg.embedding.backend == "static"
    with pytest.raises(ConfigError, match="embedding.backend"):
        load_config(ROOT / "configs" / "default.yaml", ["embedding.backend=tensorflow"])
    with pytest.raises(ConfigError, match="embedding.backend"):
        Embedder(backend="tensorflow")


MORE = [
    "Kyiv says Russian drones hit a water plant overnight",  # same token length as other texts below and above
    "Protesters in Zahedan mark the anniversary of Bloody Friday",
    "Sunak names a new home secretary after a week of rows",
    "a b",
    "A much longer sentence about a ceasefire proposal that diplomats in Geneva discussed for three days "
    "without agreeing on who would monitor the line of contact or when prisoners would be exchanged",
]


@pytest.mark.parametrize("backend", ["torch", "onnx", "onnx-int8"])
def test_a_vector_does_not_depend_on_its_batch(cache, backend):
    """Canonical batches: the same bits whether a text is encoded alone, with others, or in another order."""
    texts = TEXTS + MORE
    make = lambda rows=8: Embedder(cache_dir=str(cache), backend=backend, use_cache=False, show_progress=False,  # noqa: E731
                                   batch_size=rows)
    together = make().encode(texts)
    alone = np.stack([make().encode([t])[0] for t in texts])
    shuffled_order = [7, 2, 9, 0, 4, 1, 8, 3, 6, 5]
    shuffled = make().encode([texts[i] for i in shuffled_order])
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(shuffled, together[shuffled_order])
    _unit(together)
    if backend != "onnx-int8":  # int8 batches are one text each, whatever batch_size says
        assert make(3).identity != make(8).identity  # vectors of other batch shapes are cached apart
