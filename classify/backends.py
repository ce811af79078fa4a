"""Encoder backends behind `Embedder`: the same sentence-transformers model run four ways.

- ``torch``: sentence-transformers itself (the reference).
- ``onnx``: the model exported once to ONNX (mean pooling inside the graph), fused with onnxruntime's
  transformer optimizer, run by onnxruntime.
- ``onnx-int8``: that graph with its weights quantised to int8 (dynamic, per channel).
- ``static``: a model2vec-style static model distilled from the same weights (one vector per token: the
  model's mean-pooled output for ``[CLS] token [SEP]``, PCA to 256 dimensions, SIF/Zipf weights); no word
  order, so topics and clusters only — never stance.

Every backend returns L2-normalised float32 vectors. Exports and distillations are built offline from the
packaged weights on first use, into ``<cache>/onnx/<model>-<weights hash>/`` and ``<cache>/static/...``,
under a file lock and via temporary files renamed into place, so concurrent processes never see half a file;
later runs reuse them. A damaged file is reported on one line and built again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .errors import ClassifyError

BACKENDS = ("torch", "onnx", "onnx-int8", "static")
CONTEXTUAL = ("torch", "onnx", "onnx-int8")
"""Backends that read word order: the only ones fit for stance."""

MAX_SEQ_LENGTH = 256
"""sentence-transformers' max_seq_length for all-MiniLM-L6-v2 (used when the model folder does not say)."""
STATIC_DIMS = 256
RECIPE = "1"
"""Bump when the export / distillation recipe changes: old cache folders are then left unused."""

log = logging.getLogger("classify")


def canonical_batches(lengths: list[int], rows: int):
    """Batches (indices, padded indices) for a contextual encoder such that a text's vector depends on the text
    alone, never on what else is encoded with it: every batch holds texts of one token length (no padding) and
    exactly ``rows`` rows (a short batch repeats its last text), so every text goes through matrices of the same
    shapes, summed in the same order, whatever the call. (Batches padded to their longest text, as
    sentence-transformers does, change a vector's last bits with its companions, and so a model trained from a
    warm cache would differ from one trained cold.) Lengths in ascending order; each length's texts in call order."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(n, []).append(i)
    for n in sorted(groups):
        idx = groups[n]
        for start in range(0, len(idx), rows):
            chunk = idx[start:start + rows]
            yield chunk, chunk + [chunk[-1]] * (rows - len(chunk))


def batch_rows(backend: str, batch_size: int) -> int:
    """Rows of a canonical batch for a backend: ``batch_size``, except 1 for ``onnx-int8``, whose dynamic
    quantisation scales each activation matrix by its own range, so a text's vector would move (by up to 0.03)
    with the other texts of its batch."""
    return 1 if backend == "onnx-int8" else batch_size


def encode_canonical(lengths: list[int], rows: int, run, show_progress: bool = False,
                     workers: int = 1) -> np.ndarray | None:
    """``run(padded indices) -> one output row per index`` over ``canonical_batches``, the outputs put back in call
    order (None for no texts). ``workers`` > 1: that many batches run at once, each on its own thread (``run``
    must be thread-safe, as an onnxruntime session is); every batch's result is the same whoever runs it."""
    batches = list(canonical_batches(lengths, rows))
    out = None
    runs = [padded for _, padded in batches]
    with ThreadPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        results = pool.map(run, runs) if pool is not None else map(run, runs)
        if show_progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(batches), desc="Batches", unit="batch")
        for (idx, _), result in zip(batches, results):
            if out is None:
                out = np.zeros((len(lengths), result.shape[1]), np.float32)
            out[idx] = result[:len(idx)]
    return out


class BackendError(ClassifyError):
    """An encoder backend could not be built or loaded."""


def _quiet_tokenizers() -> None:
    # Loaders set this (never at import): tokenizers' fork warning would otherwise show under joblib / UMAP.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_IDENTITY: dict[tuple, str] = {}


def weights_identity(model_path: str | Path) -> str:
    """Hash of the files that define the model (weights, configs, tokenizer); memoised per process."""
    folder = Path(model_path)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in {"README.md", ".gitattributes"}
                   and "onnx" not in p.relative_to(folder).parts)
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if stamp not in _IDENTITY:
        h = hashlib.sha256(RECIPE.encode())
        for p in files:
            h.update(str(p.relative_to(folder)).encode() + b"\0")
            with open(p, "rb") as fh:
                h.update(hashlib.file_digest(fh, "sha256").digest())
        _IDENTITY[stamp] = h.hexdigest()[:16]
    return _IDENTITY[stamp]


def artifact_folder(cache_root: Path, kind: str, model_name: str, model_path: str) -> Path:
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(model_name).name)[-60:]
    return Path(cache_root) / kind / f"{slug}-{weights_identity(model_path)}"


@contextlib.contextmanager
def _locked(folder: Path):
    """An exclusive lock on ``folder`` (a ``.lock`` file beside it), held while building its contents."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "a+b") as fh:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): builds still land atomically, they may just run twice
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _share(path: Path) -> None:
    """Give a temporary file / folder (mkstemp: 0600) the usual umask permissions, so a cache can be shared."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


def _tmp_path(target: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    _share(Path(tmp))
    return Path(tmp)


def _max_seq_length(model_path: str) -> int:
    import json

    try:
        return int(json.loads((Path(model_path) / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return MAX_SEQ_LENGTH


# --------------------------------------------------------------------------------------------------- torch


class TorchEncoder:
    """sentence-transformers, loaded offline (``local_files_only``)."""

    def __init__(self, model_path: str, show_progress: bool = True):
        from sentence_transformers import SentenceTransformer

        _quiet_tokenizers()
        if not show_progress:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        self.model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
        self.tokenizer = self.model.tokenizer
        self.max_length = int(self.model.max_seq_length)

    def encode(self, texts: list[str], batch_size: int = 8, show_progress: bool = False) -> np.ndarray:
        """In canonical batches (``canonical_batches``: one token length, ``batch_size`` rows each)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension()), np.float32)
        # the model's own tokenisation (sentence-transformers strips each text first)
        lengths = [len(x) for x in self.tokenizer([t.strip() for t in texts], truncation=True,
                                                   max_length=self.max_length)["input_ids"]]
        return encode_canonical(lengths, batch_size, lambda padded: self.model.encode(
            [texts[i] for i in padded], batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False), show_progress)


# ---------------------------------------------------------------------------------------------------- onnx

ONNX_FILES = {False: "model.onnx", True: "model-int8.onnx"}


def _export_fp32(model_path: str, target: Path) -> None:
    """torch.onnx.export of transformer + mean pooling (dynamic batch and length), then operator fusion."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(model_path, local_files_only=True, attn_implementation="eager").eval()
    export_pooled(model, AutoTokenizer.from_pretrained(model_path, local_files_only=True), target)


def export_pooled(model, tokenizer, target: Path) -> None:
    """ONNX graph of a transformers encoder (``model``, eager attention) + mean pooling, inputs ``input_ids``,
    ``attention_mask`` (and ``token_type_ids`` where the tokenizer makes them), output ``mean_pooled`` (not
    normalised), fused by onnxruntime's transformer optimizer; written atomically to ``target``."""
    import torch

    sample = tokenizer(["a short text", "a somewhat longer text, to trace the export with"], padding=True,
                       return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class MeanPooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # normalised outside: also used to distil

    raw = _tmp_path(target)
    fused = _tmp_path(target)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(MeanPooled(), tuple(sample[n] for n in names), str(raw), input_names=names,
                              output_names=["mean_pooled"], opset_version=17, dynamo=False,
                              dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names},
                                            "mean_pooled": {0: "batch"}})
        from onnxruntime.transformers.optimizer import optimize_model

        opt_log = logging.getLogger("onnxruntime.transformers")
        level = opt_log.level
        opt_log.setLevel(logging.ERROR)
        try:
            optimized = optimize_model(str(raw), model_type="bert", num_heads=model.config.num_attention_heads,
                                       hidden_size=model.config.hidden_size)
        finally:
            opt_log.setLevel(level)
        optimized.save_model_to_file(str(fused))
        os.replace(fused, target)
    finally:
        raw.unlink(missing_ok=True)
        fused.unlink(missing_ok=True)


def session_options():
    """onnxruntime settings of every session here: one thread per run. The callers run one batch per core at once
    (``onnx_workers``), which beats spreading each small batch over all cores: on 2 cores, int8 one text a batch
    339 texts/s against 281 with 2 intra-op threads (fp32, 8 rows a batch: 158 against 154), the same vectors bit
    for bit."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return options


def onnx_workers() -> int:
    """How many batches an ONNX session runs at once: one per usable core."""
    return _threads()


def _quantize(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation, per output channel (per-tensor scales lose ~0.04 cosine on MiniLM)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = _tmp_path(target)
    logging.disable(logging.WARNING)  # its advice to pre-process goes to the root logger
    try:
        quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        os.replace(tmp, target)
    finally:
        logging.disable(logging.NOTSET)
        tmp.unlink(missing_ok=True)


EXPORTS = 0
"""How many ONNX exports this process ran (tests check that a second Embedder reuses the first one's)."""


def ensure_onnx(model_path: str, folder: Path, quantized: bool, broken: Path | None = None) -> Path:
    """The ONNX file for these weights, exported (and quantised) now if it is not in the cache yet.
    ``broken``: a cached file that failed to load; it is deleted and built again."""
    global EXPORTS
    fp32, target = folder / ONNX_FILES[False], folder / ONNX_FILES[quantized]
    if target.exists() and broken is None:
        return target
    with _locked(folder):
        folder.mkdir(parents=True, exist_ok=True)
        if broken is not None:
            broken.unlink(missing_ok=True)
        for attempt in (0, 1):
            if not fp32.exists():
                EXPORTS += 1
                _export_fp32(model_path, fp32)
            if not quantized or target.exists():
                break
            try:
                _quantize(fp32, target)
                break
            except Exception:  # a damaged fp32 export: export it again, once
                if attempt:
                    raise
                fp32.unlink(missing_ok=True)
    return target


class OnnxEncoder:
    """onnxruntime on the exported graph; texts sorted by length so each batch pads only to its own longest."""

    def __init__(self, model_path: str, cache_root: Path, model_name: str, quantized: bool):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        _quiet_tokenizers()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        self.max_length = _max_seq_length(model_path)
        folder = artifact_folder(cache_root, "onnx", model_name, model_path)
        options = session_options()
        path = ensure_onnx(model_path, folder, quantized)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
            log.warning(f"{path}: damaged ONNX export ({str(err).splitlines()[0][:120]}); exporting it again")
            path = ensure_onnx(model_path, folder, quantized, broken=path)
            try:
                self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as err2:
                raise BackendError(f"{path}: cannot load the ONNX export: {str(err2).splitlines()[0]}") from None
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.path = path
        self.backend = "onnx-int8" if quantized else "onnx"

    def pooled(self, ids: list[list[int]], batch_size: int = 8, show_progress: bool = False) -> np.ndarray:
        """Mean-pooled (not normalised) outputs for token id lists, in canonical batches (``canonical_batches``:
        one length, ``batch_size`` rows each, so no padding and no dependence on the other texts)."""
        def run(padded):
            input_ids = np.asarray([ids[i] for i in padded], np.int64)
            feed = {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids),
                    "token_type_ids": np.zeros_like(input_ids)}
            return self.session.run(None, {k: feed[k] for k in self.inputs})[0]

        out = encode_canonical([len(x) for x in ids], batch_rows(self.backend, batch_size), run, show_progress,
                               workers=onnx_workers())
        return out if out is not None else np.zeros((0, 0), np.float32)

    def encode(self, texts: list[str], batch_size: int = 8, show_progress: bool = False) -> np.ndarray:
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        vectors = self.pooled(ids, batch_size, show_progress)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


# -------------------------------------------------------------------------------------------------- static


def distill_static(model_path: str, onnx: OnnxEncoder, target: Path, dims: int = STATIC_DIMS,
                   sif_coefficient: float = 1e-4, limit: int | None = None) -> None:
    """model2vec's distillation recipe, with the token outputs computed by the fp32 ONNX graph (several
    times faster than model2vec.distill's torch loop on a small CPU). ``limit`` keeps only the first N
    vocabulary entries' vectors (the rest are zero): for quick tests only."""
    from model2vec import StaticModel
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(model_path) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    unused = re.compile(r"\[unused\d+\]")
    special = set(onnx.tokenizer.all_special_ids)
    keep = [i for tok, i in vocab if not unused.fullmatch(tok) and i not in special][:limit]
    cls, sep = onnx.tokenizer.cls_token_id, onnx.tokenizer.sep_token_id
    pooled = onnx.pooled([[cls, i, sep] for i in keep], batch_size=512)
    # PCA (as model2vec: eigendecomposition of the covariance), then SIF weights from Zipf ranks.
    centred = pooled - pooled.mean(0)
    eigvals, eigvecs = np.linalg.eigh(centred.T @ centred / max(len(keep) - 1, 1))
    dims = min(dims, pooled.shape[1], len(keep))
    reduced = centred @ eigvecs[:, ::-1][:, :dims]
    proba = 1 / np.arange(2, len(keep) + 2)
    proba /= proba.sum()
    reduced *= (sif_coefficient / (sif_coefficient + proba))[:, None]
    vectors = np.zeros((len(vocab), dims), np.float32)
    vectors[keep] = reduced
    config = {"model_type": "model2vec", "architectures": ["StaticModel"], "apply_pca": dims,
              "sif_coefficient": sif_coefficient, "hidden_dim": dims, "seq_length": 1000000, "normalize": True,
              "pooling": "mean", "tokenizer_name": Path(model_path).name}
    model = StaticModel(vectors=vectors, tokenizer=tokenizer, config=config, normalize=True,
                        base_model_name=Path(model_path).name)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        model.save_pretrained(tmp)
        _share(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


DISTILLATIONS = 0
STATIC_LIMIT: int | None = None
"""Tests set this to distil only the first N vocabulary entries (seconds instead of a minute)."""


class StaticEncoder:
    """A model2vec StaticModel distilled from the same weights: a token-vector lookup and a mean."""

    def __init__(self, model_path: str, cache_root: Path, model_name: str, limit: int | None = None):
        global DISTILLATIONS
        from model2vec import StaticModel

        _quiet_tokenizers()
        limit = limit or STATIC_LIMIT
        folder = artifact_folder(cache_root, "static", model_name, model_path)
        if limit:
            folder = folder.with_name(f"{folder.name}-first{limit}")
        for attempt in (0, 1):
            if not (folder / "model.safetensors").exists() or attempt:
                with _locked(folder):
                    if not (folder / "model.safetensors").exists() or attempt:
                        DISTILLATIONS += 1
                        onnx = OnnxEncoder(model_path, cache_root, model_name, quantized=False)
                        distill_static(model_path, onnx, folder, limit=limit)
            try:
                self.model = StaticModel.from_pretrained(folder, force_download=False)
                break
            except Exception as err:  # safetensors / json errors from a damaged folder
                if attempt:
                    raise BackendError(f"{folder}: cannot load the static model: {str(err).splitlines()[0]}") from None
                log.warning(f"{folder}: damaged static model ({str(err).splitlines()[0][:120]}); distilling it again")
        self.path = folder

    def encode(self, texts: list[str], batch_size: int = 8, show_progress: bool = False) -> np.ndarray:
        """One text at a time in effect (a static model sums token vectors): no batch effects to avoid."""
        vectors = self.model.encode(list(texts), show_progress_bar=show_progress, use_multiprocessing=False,
                                    normalize=False).astype(np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def make_encoder(backend: str, model_path: str, cache_root: Path, model_name: str, show_progress: bool = True):
    if backend == "torch":
        return TorchEncoder(model_path, show_progress)
    if backend in ("onnx", "onnx-int8"):
        return OnnxEncoder(model_path, cache_root, model_name, quantized=backend == "onnx-int8")
    if backend == "static":
        return StaticEncoder(model_path, cache_root, model_name)
    raise BackendError(f"embedding.backend: {backend!r} is not one of {', '.join(BACKENDS)}")
