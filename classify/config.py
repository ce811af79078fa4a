"""Training configuration: YAML validated by pydantic, with dotted-key overrides from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, display_name, one_line, quote

MAX_CONFIG_BYTES = 1024 * 1024
"""A larger config file is refused."""
MAX_YAML_ALIASES = 100
"""A config (or one ``--set`` value) may use at most this many aliases (``*name``, ``<<: *name``)."""
MAX_YAML_NODES = 100_000
"""... and expand to at most this many YAML nodes (aliases counted as copies): no 'billion laughs'."""

DEFAULT_TOPICS = ["ukraine_war", "iran_protests", "uk_politics", "other"]
DEFAULT_STANCES = ["agree", "disagree", "discuss", "unrelated"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabelsConfig(_Strict):
    topics: list[str] = Field(default_factory=lambda: list(DEFAULT_TOPICS), min_length=2)
    stances: list[str] = Field(default_factory=lambda: list(DEFAULT_STANCES), min_length=2)
    unrelated: str | None = "unrelated"
    """The stance label for 'a different event'; null for schemes without one (e.g. favor/against/none). Left
    out, it is `unrelated` when the stance labels include it and null otherwise."""

    @model_validator(mode="after")
    def _distinct(self) -> "LabelsConfig":
        for key in ("topics", "stances"):
            values = getattr(self, key)
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"{key}: duplicate label(s) {quote(dupes[0])}")
            if any(not v.strip() for v in values):
                raise ValueError(f"{key}: empty label")
        if "unrelated" not in self.model_fields_set and self.unrelated not in self.stances:
            self.unrelated = None  # a scheme of its own (favor / against / none): no 'other event' label
        return self


class EmbeddingConfig(_Strict):
    model: str = "all-MiniLM-L6-v2"
    batch_size: int = Field(8, ge=1)
    cache_dir: str | None = None
    """Embedding cache; null = $CLASSIFY_CACHE or ~/.cache/classify."""
    backend: Literal["torch", "onnx", "onnx-int8", "static"] = "torch"
    """Encoder: sentence-transformers (torch), its ONNX export run by onnxruntime (fp32 or int8), or a static
    model distilled from it (topics and clusters only: refused with stance enabled)."""
    long_texts: Literal["truncate", "chunk"] = "truncate"
    """Texts longer than the encoder's window (256 word pieces for MiniLM): `chunk` splits them into sentences
    packed into windows, embeds each and averages (L2-normalised); `truncate` keeps only the first window.
    Contextual backends only (the static model has no window)."""


class _Source(_Strict):
    path: str
    limit: int | None = Field(None, ge=1)
    """Use only the first N records (quick experiments)."""


class TopicsJsonl(_Source):
    type: Literal["topics_jsonl"]


class StanceJsonl(_Source):
    type: Literal["stance_jsonl"]
    unrelated_per_headline: int = Field(6, ge=0)
    """How many stories of other headlines to pair with each headline as `unrelated`."""
    topics: bool = True
    """Also use each headline and its stories as topic examples (labelled with the headline's topic)."""


class Dumps(_Source):
    type: Literal["dumps"]
    labels: str
    split: str | None = None


class HeadlineBodyCsv(_Source):
    type: Literal["headline_body_csv"]
    bodies: str
    headline_column: str = "Headline"
    body_id_column: str = "Body ID"
    body_column: str = "articleBody"
    stance_column: str = "Stance"


class Table(_Source):
    type: Literal["table"]
    format: Literal["auto", "texts", "pairs"] = "auto"
    """texts (`text`, or `title` + `snippet`, with `topic`) or pairs (`headline` or `target` + text, with `stance`
    or `label`); `auto` tells them by the columns. An optional `event` column groups rows."""


Source = Annotated[Union[TopicsJsonl, StanceJsonl, Dumps, HeadlineBodyCsv, Table], Field(discriminator="type")]


class DataConfig(_Strict):
    train: list[Source] = Field(min_length=1)
    test: list[Source] = Field(default_factory=list)


class TopicConfig(_Strict):
    enabled: bool = True
    """Train the supervised topic classifier (needs topic data)."""
    C: float = Field(4.0, gt=0)
    class_weight: Literal["balanced"] | None = "balanced"
    max_iter: int = Field(2000, ge=1)


class ReducerConfig(_Strict):
    n_components: int = Field(5, ge=2)
    n_neighbors: int = Field(15, ge=2)
    min_dist: float = Field(0.0, ge=0)
    metric: str = "cosine"


class ClusteringConfig(_Strict):
    enabled: bool = True
    """Cluster the topic texts (needs topic data)."""
    algorithm: Literal["kmeans", "hdbscan"] = "kmeans"
    n_clusters: Union[int, Literal["auto"], None] = None
    """KMeans clusters; null = one per configured topic; `auto` = the k of best silhouette, 2..min(30, n/5)."""
    min_cluster_size: int = Field(15, ge=2)
    """HDBSCAN's smallest cluster."""
    reducer: ReducerConfig | None = Field(default_factory=ReducerConfig)
    """UMAP before clustering; null clusters the features as they are (the shipped configs, with LSA: measured best
    or near-best on the team corpus, AG News and FNC-1 bodies by benchmarks/clustering_choice.py)."""
    lsa_components: int = Field(0, ge=0)
    """If > 0, append this many TF-IDF LSA dimensions to the embedding before clustering."""
    lsa_weight: float = Field(0.5, ge=0)
    knn: int = Field(15, ge=1)
    """New texts join the majority cluster of their k nearest training texts."""
    min_purity: float = Field(0.5, ge=0, le=1)
    """A cluster is named after its majority topic only if that topic holds this share of it."""
    keywords: int = Field(8, ge=1)
    """Keywords kept per cluster (class-based TF-IDF)."""
    map_method: Literal["umap", "pca"] = "umap"
    """How the 2-D map of the training texts is drawn."""

    @field_validator("n_clusters", mode="before")
    @classmethod
    def _k(cls, value):
        if value is None or value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 2):
            return value
        raise ValueError(f"expected an integer of at least 2, auto or null, found {quote(value)}")


class StanceClassifierConfig(_Strict):
    type: Literal["logreg", "hgb"] = "logreg"
    C: float = Field(1.0, gt=0)
    class_weight: Literal["balanced"] | None = "balanced"
    max_iter: int = Field(300, ge=1)
    learning_rate: float = Field(0.1, gt=0)
    max_leaf_nodes: int = Field(31, ge=2)


class CrossEncoderConfig(_Strict):
    enabled: bool = False
    """Fine-tune the embedding model as a cross-encoder on (headline, story) pairs."""
    labels: Literal["all", "related"] = "all"
    """`all`: it scores every pair on every label, mixed with the feature classifier; `related`: a second stage
    on the pairs the feature classifier calls related (needs stance.two_stage)."""
    epochs: float = Field(1.0, gt=0)
    learning_rate: float = Field(4e-5, gt=0)
    batch_size: int = Field(32, ge=1)
    max_length: int = Field(128, ge=16)
    frozen_layers: int = Field(0, ge=0)
    """Keep the encoder's first this many stages at their packaged weights and train only the stages above (0:
    train all). Stages count as the encoder's `hidden_states` do: 1 is the embeddings (word, position, type), 2 to 7
    MiniLM-L6's six transformer layers. No backward pass and no optimizer update below the first trained stage.
    Measured on the default model's data: no gain (1: same time and accuracy; 3: 13 % faster, lower accuracy)."""
    linear_probe: bool = False
    """Start the stance head from a linear probe (LP-FT): a class-balanced logistic regression on the packaged
    encoder's pooled vectors of the training (and pretraining) pairs, then fine-tune as usual; false: a random head.
    Measured on real pages (README, step 17): a worse reader, not taken."""
    layer_decay: float = Field(1.0, gt=0, le=1)
    """Layer-wise learning-rate decay: the heads and the top layer train at learning_rate, each layer below at this
    times the one above, the embeddings at this times the lowest layer; 1: one learning rate for all. Measured on
    real pages with 0.8 (README, step 17): a worse reader, not taken."""
    average_last: float = Field(0.0, ge=0, lt=1)
    """Stochastic weight averaging: over this last share of the training steps the learning rate stays where its
    decay has brought it, and the model ends as the mean of its weights after each of those steps; 0: off (the
    last step's weights). Measured on real pages (README, step 21): a tie with the last step's weights, not taken."""
    weight: Union[Annotated[float, Field(ge=0, le=1)], Literal["auto"]] = "auto"
    """Share of the cross-encoder in the probabilities (the rest: the feature classifier); `auto` picks it
    from 0, 0.25, 0.5, 0.75, 1 by macro-F1 on the validation split of data.train."""
    refit: bool = False
    """After tuning on the validation split, train the cross-encoder again on all of data.train (twice the time)."""
    length_batches: bool = True
    """Batch training pairs of similar length together (about 2x faster on CPU); false: plain shuffled batches."""
    same_event: int = Field(0, ge=0)
    """Also train a "same event" head on story pairs of the training events: up to this many pairs of two stories
    of one event per event, each matched by the title paired with the most similar story of another event; 0: off."""
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?|mps|xpu(:\d+)?)$")
    """Torch device of the cross-encoder's training and scoring (`cpu`, `cuda`, `cuda:1`, `mps`, `xpu`); results
    are reproducible per device. Checked to be present before training starts."""
    runtime: Literal["torch", "onnx", "onnx-int8"] = "torch"
    """What scores pairs once the cross-encoder is trained (validation pairs in training, then predictions):
    `torch`, or its fused ONNX export run by onnxruntime on the CPU (`onnx`: same scores; `onnx-int8`: int8
    weights, about 4x faster than torch). Training is always torch; the model directory then holds the export."""
    pretrain: list[Source] = Field(default_factory=list)
    """Stance-labelled data (e.g. FNC-1 as `headline_body_csv`) the cross-encoder is first fine-tuned on, before
    data.train's pairs: real reporting it could not learn from the team's writing. Its labels must be stance labels
    (checked as it is read). Empty: no pretraining."""
    pretrain_pairs: int = Field(6000, ge=1)
    """At most this many pretraining pairs, an equal share per label (all of a label that has fewer), drawn by seed
    (`pretrain_unrelated_share` sets the unrelated label's apart)."""
    pretrain_epochs: float = Field(1.0, gt=0)
    """Passes over the drawn pretraining pairs (at `learning_rate`)."""
    pretrain_unrelated: Literal["random", "closest", "mined"] = "random"
    """Which of the pretraining data's `labels.unrelated` pairs are drawn: at random, or those whose body's opening is
    closest to the headline by embedding cosine (stories of other claims a recommender would have picked); `mined`:
    not the data's own unrelated pairs but, for each headline, the 2 bodies closest to it among all the data's
    bodies of other claims (a claim: headlines and bodies joined by related pairs), the closest drawn first."""
    pretrain_unrelated_share: float | None = Field(None, gt=0, lt=1)
    """The share of `pretrain_pairs` drawn from the pretraining data's `labels.unrelated` pairs (all of them where
    it holds fewer); the rest goes to the other labels, an equal share each. null: every label an equal share."""
    pretrain_order: Literal["before", "mixed"] = "before"
    """`before`: the pretraining pairs first (their own warm-up and decay), then data.train's; `mixed`: their
    batches spread at random among data.train's in one run (nothing of them is left to be overwritten)."""
    pretrain_classifier_words: int = Field(0, ge=0)
    """0: the feature classifier learns from data.train alone. N: it also learns from the drawn pretraining pairs,
    each article cut to its first N words, as a "Recommended Stories" snippet shows it (30-130 words): real
    reporting for the part that weighs similarities and cue words too. Never validated on. Like the other
    pretrain_* keys, it does nothing without pretraining pairs (no `pretrain` sources, or the cross-encoder off)."""
    pretrain_classifier_stage: Literal["related", "all"] = "related"
    """Which part of the feature classifier learns from those snippets: `related` (needs stance.two_stage) its
    second stage only, which related label, so data.train alone decides what is related; `all` both stages (or
    the one-stage classifier)."""
    pretrain_words: int = Field(0, ge=0)
    """0: the cross-encoder reads each pretraining article as `stance.context` reads a story (a long article: its
    `top_sentences` sentences closest to the headline, wherever they stand). N: only each article's first N words,
    as a "Recommended Stories" snippet shows it, read the same way (with `context: body`, the snippet whole from its
    start): it learns real reporting as a page shows it, where what the story says about the claim may not be in the
    lead. Like the other pretrain_* keys, it does nothing without pretraining pairs."""
    pretrain_calibration: float = Field(0.0, ge=0, lt=1)
    """0: the temperature and class biases (`stance.calibrate`) are fitted on the validation split, the team's
    writing. A share s > 0: a seeded share s of the pretraining data's claims (a claim: headlines and bodies joined
    by related pairs) is held out of the draw and laid out as news pages (`pretrain_calibration_pages` of their
    headlines, each with its related stories and the other-claim stories closest to it, as leads of each of
    `pretrain_calibration_words` words), and the final model's temperature and class biases are fitted on those
    pages instead: real reporting's label shares and look-alikes, which is what a "Recommended Stories" list holds.
    The mixing weight and class scales stay as the validation split chose them. Needs `stance.calibrate` and
    `labels.unrelated`; like the other pretrain_* keys, it does nothing without pretraining pairs."""
    pretrain_calibration_pages: int = Field(150, ge=1)
    """At most this many pages (headlines of the held-out claims, a seeded draw) to calibrate on."""
    pretrain_calibration_words: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [20, 40, 60],
                                                                         min_length=1)
    """Each page is laid out once per lead length: every story cut to its first N words (a title-length lead to
    a "Recommended Stories" snippet)."""
    pretrain_calibration_unrelated_share: float = Field(0.65, ge=0, lt=1)
    """The share of each calibration page that is other-claim stories (the closest to its headline by embedding
    cosine of the story's opening); a real list: about 13 of 20."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Arithmetic of the cross-encoder's training steps: `bf16` runs forward and backward passes in bfloat16
    autocast (weights, optimizer state and scoring stay fp32), about 1.7x faster on CPUs with AMX
    (`lscpu`: amx_bf16) and on GPUs; where the device has no bf16 matrix hardware (a CPU with AVX-512 BF16 but no
    AMX is slower in bf16 than in fp32, measured), training says so in one line and runs in fp32. Not on `mps`."""


class StanceConfig(_Strict):
    enabled: bool = True
    top_sentences: int = Field(3, ge=1)
    """Long bodies are split into sentences; features use the best-matching ones."""
    context: Literal["body", "sentences"] = "body"
    """What the cross-encoder reads of a story: ``body`` (a short story whole, from its start) or ``sentences``
    (its ``top_sentences`` sentences closest to the headline, the closest first)."""
    hard_negatives: int = Field(0, ge=0)
    """Pair every training headline with its k most similar stories of *other* events (embedding cosine),
    labelled unrelated: the way a site's recommender fills a real page with close but different stories."""
    validation_hard_negatives: int = Field(4, ge=0)
    """Mined the same way for each headline of the validation split and scored there (never trained on): the
    validation pairs then hold recommender-style `unrelated` stories whatever `hard_negatives` trains on, so
    settings are compared on the same pairs."""
    hard_negative_max_similarity: float | None = Field(0.62, ge=-1.0, le=1.0)
    """Never draw a hard negative closer to the headline than this cosine (null: no limit). Above it, stories of
    two event ids are often the same event written up twice, so `unrelated` would be a wrong label."""
    term_weights: bool = True
    """Add TF-IDF (fitted on the training pairs) cosines and the rarest shared word's IDF to the features."""
    embedding_features: bool = True
    """Add the element-wise products and differences of headline and body embeddings (4 x 384 columns);
    without them only similarities and lexical cues are used, which generalise better to unseen claims."""
    views: list[Literal["full", "lead", "title"]] = Field(default_factory=lambda: ["full"], min_length=1)
    """Train on every stance pair as each of these views of its story: `full`, `lead` (title and first sentence),
    `title`. More than one keeps a story's length from deciding its label (real pages show long and short
    snippets for every label); the cross-encoder's epochs still count passes over the pairs (its steps are the
    same)."""
    text_embedding: bool | None = None
    """Add the story's own embedding to the features (what it says, whoever the target). null: on for schemes
    without an unrelated label (favor / against / none: the target is fixed, the text carries the stance), off
    where stance is about a claim (a story's topic alone must not decide it)."""
    two_stage: bool = False
    """First related/unrelated, then the other labels among related pairs."""
    tune_class_scale: bool = False
    """Weigh each class's probability by a factor tuned for macro-F1 on a held-out part of data.train
    (grouped by headline); costs one extra fit."""
    validation_size: float = Field(0.2, gt=0, lt=1)
    """Share of data.train groups (events, else headlines) held out to tune class scales, weight and calibration."""
    calibrate: bool | Literal["temperature"] = True
    """Calibrate `stance_score` on the validation split: true fits a temperature and a bias per class (the parts
    are trained as if the classes were balanced; the bias restores how often each really occurs), `temperature`
    a temperature only, false nothing."""
    confidence_on_mined: bool = True
    """Whether the mined validation stories (`validation_hard_negatives`) also set the confidence. true: the
    temperature and the class biases are both fitted on all validation pairs; false: the mined stories move only
    the decisions (the class biases, with `calibrate: true`) and the temperature is fitted again on the
    validation pairs as written, keeping every label (measured on the third data round's model: test ECE 0.074
    against 0.070, so true stays)."""
    classifier: StanceClassifierConfig = Field(default_factory=StanceClassifierConfig)
    cross_encoder: CrossEncoderConfig = Field(default_factory=CrossEncoderConfig)


class Config(_Strict):
    seed: int = Field(0, ge=0, le=2**32 - 1)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    data: DataConfig
    topic: TopicConfig = Field(default_factory=TopicConfig)
    clustering: ClusteringConfig = Field(default_factory=ClusteringConfig)
    stance: StanceConfig = Field(default_factory=StanceConfig)

    @model_validator(mode="after")
    def _labels_consistent(self) -> "Config":
        u = self.labels.unrelated
        if u is not None and u not in self.labels.stances:
            raise ValueError(f"labels.unrelated: {u!r} is not one of labels.stances {self.labels.stances}")
        if self.stance.two_stage and u is None:
            raise ValueError("stance.two_stage needs labels.unrelated")
        if len(set(self.stance.views)) != len(self.stance.views):
            raise ValueError(f"stance.views: each view at most once, found {self.stance.views}")
        ce = self.stance.cross_encoder
        if ce.enabled and ce.labels == "related" and not self.stance.two_stage:
            raise ValueError("stance.cross_encoder.labels: related needs stance.two_stage: true")
        snippets = bool(ce.pretrain_classifier_words and ce.enabled and ce.pretrain)  # else there is nothing to draw
        if snippets and ce.pretrain_classifier_stage == "related" and not self.stance.two_stage:
            raise ValueError("stance.cross_encoder.pretrain_classifier_stage: related teaches the second stage of a "
                             "two-stage classifier; set stance.two_stage: true or pretrain_classifier_stage: all")
        if ce.pretrain_calibration and ce.enabled and ce.pretrain:
            if not self.stance.calibrate:
                raise ValueError("stance.cross_encoder.pretrain_calibration: fits the calibration on pages of held-out "
                                 "claims; set stance.calibrate: true (or temperature), or pretrain_calibration: 0")
            if u is None:
                raise ValueError("stance.cross_encoder.pretrain_calibration: pages need labels.unrelated for their "
                                 "other-claim stories; name it, or set pretrain_calibration: 0")
        if ce.precision == "bf16" and ce.device.startswith("mps"):
            raise ValueError("stance.cross_encoder.precision: bf16 is not available on mps; use fp32 there")
        return self

    @model_validator(mode="after")
    def _auto_needs_kmeans(self) -> "Config":
        c = self.clustering
        if c.enabled and c.n_clusters == "auto" and c.algorithm != "kmeans":
            raise ValueError(f"clustering.n_clusters: auto picks KMeans' k; {c.algorithm} finds its own number of "
                             "clusters (use clustering.algorithm: kmeans, or drop n_clusters)")
        return self

    @model_validator(mode="after")
    def _static_without_stance(self) -> "Config":
        if self.embedding.backend == "static" and self.stance.enabled:
            raise ValueError("embedding.backend: static has no word order, so it cannot feed stance; "
                             "use torch, onnx or onnx-int8, or set stance.enabled: false")
        return self


def _set_dotted(data: dict, key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--set {one_line(key)}: {quote(part)} is not a section")
        node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"--set {one_line(key)}: cannot set a value inside a {type(node).__name__}")


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader that refuses more than ``MAX_YAML_ALIASES`` aliases, a document that expands to
    more than ``MAX_YAML_NODES`` nodes, and recursive aliases, before anything is constructed."""

    def __init__(self, stream):
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.composer.ComposerError(None, None, f"more than {MAX_YAML_ALIASES} aliases",
                                                  self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def compose_document(self):
        node = super().compose_document()
        _expanded_size(node)
        return node


def _expanded_size(root) -> int:
    """Nodes of the document with every alias expanded (shared nodes counted per use); refuses cycles."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise yaml.composer.ComposerError(None, None, "recursive alias", node.start_mark)
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        active.discard(key)
        if total > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(None, None, f"expands to more than {MAX_YAML_NODES} nodes (aliases)",
                                              node.start_mark)
        sizes[key] = total
        return total

    return size(root) if root is not None else 0


def safe_yaml(text: str):
    """``yaml.safe_load`` with the alias and size limits of ``_LimitedLoader``."""
    loader = _LimitedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_problem(err: yaml.YAMLError) -> str:
    problem = getattr(err, "problem", None) or getattr(err, "context", None) or str(err).splitlines()[0]
    return one_line(str(problem), 120)


def parse_override(item: str) -> tuple[str, Any]:
    """``stance.classifier.C=2`` → (``stance.classifier.C``, 2); the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {quote(item)}: expected KEY=VALUE, e.g. --set stance.classifier.C=2")
    key, value = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {quote(item)}: expected KEY=VALUE with a dotted key, e.g. stance.classifier.C=2")
    if not value.strip():
        return key, None
    if len(value) > MAX_CONFIG_BYTES:
        raise ConfigError(f"--set {one_line(key)}: value longer than {MAX_CONFIG_BYTES} characters")
    try:
        return key, safe_yaml(value)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {one_line(key)}: invalid YAML value ({_yaml_problem(err)})") from None


def _error_line(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not (isinstance(p, str) and p in {"topics_jsonl", "stance_jsonl", "dumps", "headline_body_csv", "table"}))
    msg = first["msg"]
    if first["type"] == "value_error" and not loc:  # a model validator: its message names the key itself
        return f"{source}: {msg.removeprefix('Value error, ')}"
    msg = msg.removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling; see README 'Configuration')"
    elif "input" in first and first["type"] not in {"missing", "value_error", "assertion_error"}:
        msg = f"{msg}, found {quote(first['input'])}"
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{display_name(source)}: {one_line(loc, 120) or 'config'}: {one_line(msg, 300)}{more}"


def load_config(path: str | Path, overrides: list[str] | None = None, check_files: bool = True) -> Config:
    """Load, override and validate a YAML config. Relative data paths are resolved against the current
    directory first, then against the config file's parent directory's parent (the project root)."""
    path = Path(path)
    raw = load_raw_config(path, overrides)
    return validate_config(raw, str(path), base=path.resolve().parent.parent, check_files=check_files)


def load_raw_config(path: Path, overrides: list[str] | None = None) -> dict:
    """The config file's mapping with ``--set`` overrides applied, not yet validated."""
    raw = safe_yaml_file(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{display_name(path)}: expected a YAML mapping of config keys, found {type(raw).__name__}")
    for item in overrides or []:
        _set_dotted(raw, *parse_override(item))
    return raw


def safe_yaml_file(path: Path):
    """Read and parse a YAML file; every problem (missing, a directory, unreadable, too large, not UTF-8,
    invalid YAML, too many aliases) is a one-line ConfigError naming the file (and the line)."""
    name = display_name(path)
    try:
        if path.is_dir():
            raise ConfigError(f"{name}: is a directory, expected a YAML config file")
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{name}: config file not found") from None
    except OSError as err:
        raise ConfigError(f"{name}: cannot read config ({err.strerror or type(err).__name__})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{name}: larger than {MAX_CONFIG_BYTES // 1024} kB, not a config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{name}: not UTF-8 text (invalid byte at offset {err.start}), expected a YAML config") from None
    try:
        return safe_yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{name}{where}: invalid YAML ({_yaml_problem(err)})") from None


def validate_config(raw: dict, source: str = "config", base: Path | None = None, check_files: bool = True) -> Config:
    try:
        config = Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_error_line(err, source)) from None
    if check_files:
        resolve_data_paths(config, source, base)
    return config


def resolve_data_paths(config: Config, source: str, base: Path | None) -> None:
    """Make data paths absolute, and fail naming the key if a file does not exist or is of the wrong kind
    (a folder where a file is expected, or the other way round)."""
    source = display_name(source)
    lists = [(f"data.{split}", getattr(config.data, split)) for split in ("train", "test")]
    lists.append(("stance.cross_encoder.pretrain", config.stance.cross_encoder.pretrain))
    for prefix, sources in lists:
        for i, src in enumerate(sources):
            for key in ("path", "labels", "bodies"):
                value = getattr(src, key, None)
                if value is None:
                    continue
                where = f"{source}: {prefix}.{i}.{key}"
                if "\0" in value:
                    raise ConfigError(f"{where}: invalid path {quote(value)} (NUL character)")
                candidates = [Path(value)] + ([base / value] if base and not Path(value).is_absolute() else [])
                found = next((c for c in candidates if c.exists()), None)
                if found is None:
                    raise ConfigError(f"{where}: file not found: {one_line(display_name(value), 120)}")
                want_dir = key == "path" and src.type == "dumps"
                if found.is_dir() != want_dir:
                    raise ConfigError(f"{where}: {display_name(found)} is {'a directory' if found.is_dir() else 'a file'}"
                                      f", expected {'a folder of dumps' if want_dir else 'a file'}")
                setattr(src, key, str(found.resolve()))
