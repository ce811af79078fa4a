"""A trained model and its directory: plain JSON, safetensors arrays and skops estimators (no pickle).

Layout of a model directory::

    meta.json            format version, labels, training summary, metrics, library versions
    config.json          the resolved training config
    topic.skops          topic classifier (LogisticRegression on embeddings)
    stance.skops         stance feature classifier (classify.stance.StanceClassifier) and its TF-IDF term weights
    stance.json          stance model settings and learned scalars: mixing weight, class scales, temperature
    cross_encoder.*      optional stance cross-encoder (safetensors weights + JSON settings; with an ONNX
                         runtime also the encoder's export it scores with, cross_encoder.onnx)
    clusters.json        cluster ids, names, topics, purity, keywords, representative headlines, settings
    reference.safetensors  training embeddings, their clusters and 2-D map coordinates
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import skops.io as sio
from safetensors.numpy import load_file, save_file

from .clusters import MapProjector, TopicClusterer
from .config import Config
from .crossencoder import CrossEncoder
from .stance import FEATURES_VERSION as STANCE_FEATURES_VERSION, StanceModel
from .errors import ModelError, OutputError
from .output import dumps_json, replace_dir

FORMAT = "classify-model"
FORMAT_VERSION = 2  # 2: stance.json (one StanceModel owns features, cross-encoder, mixing, calibration)
FILES = ["meta.json", "config.json"]
COMPONENT_FILES = {"topic": ["topic.skops"], "stance": ["stance.skops", "stance.json"],
                   "cross_encoder": ["cross_encoder.safetensors", "cross_encoder.json"],
                   "clusters": ["clusters.json", "reference.safetensors"]}
# Types skops may rebuild beyond scikit-learn's defaults; anything else in a file is refused.
TRUSTED_TYPES = [
    "classify.stance.StanceClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
]


@dataclass
class Model:
    config: Config
    topic: object | None = None
    stance: object | None = None
    clusterer: TopicClusterer | None = None
    projector: MapProjector | None = None
    clusters_info: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def topics(self) -> list[str]:
        return self.config.labels.topics

    @property
    def stances(self) -> list[str]:
        return self.config.labels.stances


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ["classify", "scikit-learn", "sentence-transformers", "umap-learn", "torch", "numpy", "skops"]:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def save_model(model: Model, directory: str | Path) -> Path:
    """Write the model to a temporary sibling folder, then swap it in place of ``directory``."""
    directory = Path(directory)
    if directory.exists() and not (directory / "meta.json").is_file() and (
            not directory.is_dir() or any(directory.iterdir())):  # never replace a user's file or folder
        raise OutputError(f"{directory}: exists and is not a classify model; choose a new or empty directory")
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    except OSError as err:
        raise OutputError(f"{directory}: cannot write the model here ({err.strerror or type(err).__name__})") from None
    try:
        components = [name for name, part in (("topic", model.topic), ("stance", model.stance),
                                              ("clusters", model.clusterer),
                                              ("cross_encoder", getattr(model.stance, "cross_encoder_", None)))
                      if part is not None]
        # a model never carries the training machine's cache folder (nor may one loaded send vectors elsewhere)
        saved = model.config.model_copy(update={"embedding": model.config.embedding.model_copy(update={"cache_dir": None})})
        (tmp / "config.json").write_text(saved.model_dump_json(indent=2))
        if model.topic is not None:
            sio.dump(model.topic, tmp / "topic.skops")
        if model.stance is not None:
            sio.dump({"classifier": model.stance.classifier_, "term_weights": model.stance.term_weights_},
                     tmp / "stance.skops")
            (tmp / "stance.json").write_text(dumps_json(model.stance.state(), indent=2))
        if model.clusterer is not None:
            _save_clusters(model, tmp)
        if "cross_encoder" in components:
            model.stance.cross_encoder_.save(tmp)
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "components": components,
                "stance_features_version": STANCE_FEATURES_VERSION, **model.meta, "versions": library_versions(),
                "files": {f.name: _file_entry(f) for f in sorted(tmp.iterdir())}}
        (tmp / "meta.json").write_text(dumps_json(meta, indent=2))  # last: a folder without it is no model
        replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _save_clusters(model: Model, folder: Path) -> None:
    c, p = model.clusterer, model.projector
    arrays = {"embeddings": c.reference_, "clusters": c.labels_, "coords": p.coords_}
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(folder / "reference.safetensors"))
    info = {
        **model.clusters_info,
        "ids": c.cluster_ids_.tolist(), "names": c.cluster_names_, "topics": c.cluster_topics_,
        "purity": c.cluster_purity_,
        "params": {k: v for k, v in c.get_params(deep=False).items() if k not in ("reducer", "clusterer")},
        "map_params": {k: v for k, v in p.get_params(deep=False).items() if k != "verbose"},  # not the model's
    }
    (folder / "clusters.json").write_text(dumps_json(info, indent=2))


def _load_clusters(folder: Path) -> tuple[TopicClusterer, MapProjector, dict]:
    info = json.loads((folder / "clusters.json").read_text())
    arrays = load_file(str(folder / "reference.safetensors"))
    _check_clusters(folder, info, arrays)
    clusterer = TopicClusterer(**info["params"])
    clusterer.set_reference(arrays["embeddings"], arrays["clusters"])
    clusterer.cluster_ids_ = np.array(info["ids"], dtype=np.int64)
    clusterer.cluster_names_ = info["names"]
    clusterer.cluster_topics_ = info["topics"]
    clusterer.cluster_purity_ = info["purity"]
    clusterer.keywords_ = {int(k): v for k, v in info.get("keywords", {}).items()} \
        if isinstance(info.get("keywords"), dict) else {}
    projector = MapProjector(**info["map_params"])
    projector.reference_ = arrays["embeddings"]
    projector.coords_ = arrays["coords"]
    projector.n_features_in_ = arrays["embeddings"].shape[1]
    return clusterer, projector, {k: info[k] for k in ("keywords", "examples") if k in info}


def _check_clusters(folder: Path, info, arrays: dict) -> None:
    """clusters.json and reference.safetensors agree with each other: one-line ModelError otherwise."""
    def bad(what: str):
        return ModelError(f"{folder}: inconsistent clusters.json / reference.safetensors ({what}); retrain it")

    if not isinstance(info, dict):
        raise bad("clusters.json is not an object")
    for key, kind in (("ids", list), ("names", list), ("topics", list), ("purity", list), ("params", dict),
                      ("map_params", dict)):
        if not isinstance(info.get(key), kind):
            raise bad(f"{key} missing or not a {kind.__name__}")
    n_ids = len(info["ids"])
    if not all(len(info[k]) == n_ids for k in ("names", "topics", "purity")) or n_ids == 0:
        raise bad("ids, names, topics and purity differ in length")
    if not all(isinstance(i, int) for i in info["ids"]) or len(set(info["ids"])) != n_ids:
        raise bad("cluster ids are not distinct integers")
    missing = [k for k in ("embeddings", "clusters", "coords") if k not in arrays]
    if missing:
        raise bad(f"missing arrays {missing}")
    emb, labels, coords = arrays["embeddings"], arrays["clusters"], arrays["coords"]
    if emb.ndim != 2 or emb.shape[0] == 0 or emb.dtype.kind != "f":
        raise bad(f"embeddings of shape {emb.shape} and type {emb.dtype}")
    if labels.shape != (emb.shape[0],) or labels.dtype.kind not in "iu":
        raise bad(f"clusters of shape {labels.shape} for {emb.shape[0]} embeddings")
    if coords.shape != (emb.shape[0], 2) or coords.dtype.kind != "f":
        raise bad(f"map coords of shape {coords.shape} for {emb.shape[0]} embeddings")
    if not (np.isfinite(emb).all() and np.isfinite(coords).all()):
        raise bad("NaN or infinite values in the reference arrays")
    unknown = set(np.unique(labels).tolist()) - set(info["ids"])
    if unknown:
        raise bad(f"cluster ids {sorted(unknown)[:5]} not in clusters.json")


def _file_entry(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _check_manifest(directory: Path, meta: dict) -> None:
    """Every file the model was saved with is there with its size and SHA-256 (flipped bytes, a truncated copy or
    a file swapped in from another model are refused before anything is loaded)."""
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelError(f"{directory}: meta.json lists no files (saved by an older classify); retrain the model")
    for name, entry in files.items():
        path = directory / str(name)
        if not path.is_file():
            raise ModelError(f"{directory}: not a complete classify model, missing {name}; retrain it")
        if not isinstance(entry, dict) or path.stat().st_size != entry.get("bytes") or \
                _file_entry(path)["sha256"] != entry.get("sha256"):
            raise ModelError(f"{directory}: {name} differs from the file the model was saved with "
                             "(checksum mismatch); restore it or retrain the model")


MAX_SKOPS_BYTES = 512 * 2**20  # unpacked size allowed for one estimator file (a decompression bomb is refused)


def _load_skops(path: Path):
    try:
        import zipfile

        with zipfile.ZipFile(path) as zf:
            unpacked = sum(info.file_size for info in zf.infolist())
        if unpacked > MAX_SKOPS_BYTES:
            raise ModelError(f"{path}: unpacks to {unpacked / 2**20:.0f} MiB, more than the "
                             f"{MAX_SKOPS_BYTES // 2**20} MiB an estimator file may hold; refusing to load it")
        untrusted = sio.get_untrusted_types(file=path)
        unknown = sorted(set(untrusted) - set(TRUSTED_TYPES))
        if unknown:
            raise ModelError(f"{path}: refusing to load untrusted types {unknown}")
        return sio.load(path, trusted=untrusted)
    except ModelError:
        raise
    except Exception as err:  # zip, JSON or schema errors of a damaged file
        raise ModelError(f"{path}: corrupt estimator file ({type(err).__name__}: {err}); retrain the model") from None


def load_model(directory: str | Path) -> Model:
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError(f"{directory}: model directory not found (train one with `classify train CONFIG --output {directory}`)")
    missing = [f for f in FILES if not (directory / f).is_file()]
    if missing:
        raise ModelError(f"{directory}: not a complete classify model, missing {', '.join(missing)}; retrain it")
    try:
        meta = json.loads((directory / "meta.json").read_text())
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ModelError(f"{directory}: not a classify model of format version {FORMAT_VERSION} "
                             f"(found {meta.get('format')!r} version {meta.get('format_version')!r})")
        components = meta.get("components", [])
        _check_manifest(directory, meta)
        if "stance" in components and meta.get("stance_features_version") != STANCE_FEATURES_VERSION:
            raise ModelError(f"{directory}: its stance classifier was trained on stance features version "
                             f"{meta.get('stance_features_version')}, this classify computes version "
                             f"{STANCE_FEATURES_VERSION}; retrain the model")
        missing = [f for c in components for f in COMPONENT_FILES.get(c, []) if not (directory / f).is_file()]
        if missing:
            raise ModelError(f"{directory}: not a complete classify model, missing {', '.join(missing)}; retrain it")
        raw_config = json.loads((directory / "config.json").read_text())
        if isinstance(raw_config, dict) and isinstance(raw_config.get("embedding"), dict):
            # Models saved before embedding.long_texts existed embedded long texts truncated: keep doing so.
            raw_config["embedding"].setdefault("long_texts", "truncate")
            # The cache is the user's ($CLASSIFY_CACHE or ~/.cache/classify), never the model's: a config.json
            # must not send this machine's cache reads and writes to a folder of its choosing.
            raw_config["embedding"]["cache_dir"] = None
        config = Config.model_validate(raw_config)
        clusterer, projector, info = _load_clusters(directory) if "clusters" in components else (None, None, {})
        cross_encoder = CrossEncoder.load(directory) if "cross_encoder" in components else None
        stance = None
        if "stance" in components:
            state = json.loads((directory / "stance.json").read_text())
            parts = _load_skops(directory / "stance.skops")
            if not isinstance(parts, dict) or "classifier" not in parts:
                raise ModelError(f"{directory / 'stance.skops'}: not a stance model file; retrain the model")
            stance = StanceModel.from_state(state, parts["classifier"], cross_encoder, parts.get("term_weights"))
    except ModelError:
        raise
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise ModelError(f"{directory}: corrupt model file ({type(err).__name__}: {first}); retrain it") from None
    model = Model(
        config=config,
        topic=_load_skops(directory / "topic.skops") if "topic" in components else None,
        stance=stance,
        clusterer=clusterer,
        projector=projector,
        clusters_info=info,
        meta=meta,
    )
    _check_components(directory, model)
    return model


def _check_components(directory: Path, model: Model) -> None:
    """Each estimator file holds what its name says, with the labels of the config (swapped or foreign
    files are refused)."""
    from .stance import StanceClassifier

    def labels_of(est, name: str, allowed: list[str]) -> None:
        classes = getattr(est, "classes_", None)
        if classes is None or not hasattr(est, "predict_proba"):
            raise ModelError(f"{directory}: {name} does not hold a fitted classifier; retrain the model")
        extra = sorted(set(map(str, classes)) - set(allowed))
        if extra:
            raise ModelError(f"{directory}: {name} predicts labels {extra[:4]} that are not in the model's config "
                             "(swapped or foreign file); retrain the model")

    if model.topic is not None:
        if isinstance(model.topic, StanceClassifier):
            raise ModelError(f"{directory}: topic.skops holds a stance classifier (swapped files); retrain the model")
        labels_of(model.topic, "topic.skops", model.topics)
        dim = getattr(model.topic, "n_features_in_", None)
        if model.clusterer is not None and dim is not None and dim != model.clusterer.reference_.shape[1]:
            raise ModelError(f"{directory}: topic.skops expects {dim} features, the reference embeddings have "
                             f"{model.clusterer.reference_.shape[1]}; retrain the model")
    if model.stance is not None:
        clf = getattr(model.stance, "classifier_", model.stance)  # a StanceModel wraps the skops classifier
        if not isinstance(clf, StanceClassifier):
            raise ModelError(f"{directory}: stance.skops does not hold a stance classifier (swapped files); retrain the model")
        labels_of(clf, "stance.skops", model.stances)
