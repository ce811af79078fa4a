"""Stance of a body (a related story, or a long article) toward a headline.

``pair_features`` turns embeddings and texts of (headline, body) pairs into one float matrix: similarity of
the headline to the body and to its best-matching sentences, element-wise products and differences of the
embeddings, and lexical cues (overlap, refuting, hedging and negation words). ``StanceClassifier`` is a
scikit-learn classifier over that matrix, optionally in two stages (related/unrelated first).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import itertools
import json
import re
from copy import deepcopy

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, HashingVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import GroupShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'“‘(A-Z0-9])|\n+")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NUMBER = re.compile(r"\b\d[\d,.]*\b")

REFUTE = {
    "fake", "fraud", "hoax", "false", "falsely", "deny", "denies", "denied", "denial", "bogus", "debunk",
    "debunked", "debunks", "retract", "retracted", "retraction", "reject", "rejects", "rejected", "dismiss",
    "dismissed", "dismisses", "fabricated", "fabrication", "untrue", "misleading", "incorrect", "wrong",
    "myth", "refute", "refuted", "refutes", "contradict", "contradicts", "contradicted", "disputed",
    "dispute", "disputes", "rumour", "rumor", "baseless", "unfounded", "propaganda", "lie", "lies", "lied",
    "nonsense", "correction", "corrected", "inaccurate", "never", "no", "not", "nothing", "misinformation",
    "disinformation", "doctored", "satire", "prank", "spoof", "claimed", "insists", "insisted",
}
HEDGE = {
    "reportedly", "allegedly", "alleged", "claims", "claim", "may", "might", "could", "unconfirmed",
    "according", "rumours", "rumors", "suggests", "suggest", "appears", "appear", "investigating",
    "investigation", "possible", "possibly", "unclear", "unverified", "whether", "if", "apparently",
    "believed", "purportedly", "speculation", "question", "questions", "says", "said",
}
# Single words whose presence in the best-matching sentences is a feature of its own.
CUE_WORDS = ["fake", "hoax", "false", "deny", "denied", "denies", "not", "no", "never", "debunk", "rejected",
             "reportedly", "allegedly", "claims", "unconfirmed", "may", "could", "according", "confirmed", "said"]
NEGATION = {"not", "no", "never", "n't", "none", "nothing", "nobody", "neither", "nor", "without", "cannot"}

FEATURES_VERSION = 3  # bump when pair_features' columns change: older stance models must be retrained
WHOLE_BODY_CHARS = 1000  # shorter bodies are embedded whole (they fit the encoder's window)
_HASHER = HashingVectorizer(stop_words="english", alternate_sign=False, norm="l2", n_features=2**18)


def split_sentences(text: str, max_sentences: int = 60) -> list[str]:
    sentences = [s.strip() for s in _SENTENCE.split(text) if len(s.strip()) > 2]
    return sentences[:max_sentences] or [text.strip() or "."]


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'"))


def _content(words: list[str]) -> set[str]:
    return {w for w in words if w not in ENGLISH_STOP_WORDS and len(w) > 1}


def _rate(words: list[str], vocab: set[str]) -> float:
    return sum(w in vocab for w in words) / max(len(words), 1)


class _Side:
    """What the features need of one text, computed once per distinct headline or body."""

    def __init__(self, text: str):
        self.words = _words(text)
        self.content = _content(self.words)
        self.numbers = set(_NUMBER.findall(text))
        self.rates = [_rate(self.words, REFUTE), _rate(self.words, HEDGE), _rate(self.words, NEGATION)]


def lexical_features(h: _Side, b: _Side, best: _Side, headline: str, body: str) -> list[float]:
    return [
        len(h.content & b.content) / max(len(h.content | b.content), 1),
        len(h.content & b.content) / max(len(h.content), 1),
        len(h.content & best.content) / max(len(h.content), 1),
        b.rates[0], best.rates[0], float(any(w in REFUTE for w in best.words)),
        b.rates[1], best.rates[1],
        b.rates[2], best.rates[2], h.rates[2], h.rates[0], h.rates[1],
        float(bool(h.numbers)), len(h.numbers - b.numbers) / max(len(h.numbers), 1),
        float("?" in body), float(headline.rstrip().endswith("?")),
        np.log1p(len(b.words)), np.log1p(len(h.words)),
    ]


def segments(body: str) -> list[str]:
    """What is embedded of a body: a short one whole (it fits the encoder's window), a long one by sentence."""
    return [body] if len(body) < WHOLE_BODY_CHARS else split_sentences(body)


CONTEXTS = ("body", "sentences")


def context_segments(body: str, context: str = "body") -> list[str]:
    """What the cross-encoder's context is chosen from: ``body``, the body's ``segments`` (a short body whole);
    ``sentences``, its sentences, however short the body."""
    return split_sentences(body) if context == "sentences" else segments(body)


def first_words(text: str, n: int) -> str:
    """The text's first ``n`` words (split on whitespace, joined by single spaces): a page snippet of an article."""
    return " ".join(text.split()[:n])


def pair_embedding_texts(headlines: list[str], bodies: list[str], context: str = "body") -> list[str]:
    """Every distinct text ``pair_features`` and ``best_sentences(..., context)`` embed: the headlines, the bodies'
    segments and (``context="sentences"``) their sentences."""
    unique = dict.fromkeys(bodies)
    return list(dict.fromkeys(list(headlines) + [s for b in unique for s in segments(b) + context_segments(b, context)]))


def best_sentences(headlines: list[str], bodies: list[str], embed, top_k: int = 3, context: str = "body") -> list[str]:
    """For each pair, the cross-encoder's context: the ``top_k`` segments of the body (``context_segments``) most
    similar to the headline. ``body``: in body order (a body under ``WHOLE_BODY_CHARS`` is one segment, so it is
    read whole, from its start); ``sentences``: the most similar first, so that what a short window keeps is the
    sentence closest to the claim, wherever the story puts it."""
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}, not {context!r}")
    texts = pair_embedding_texts(headlines, bodies, context)
    lookup = dict(zip(texts, embed(texts)))
    out = []
    for headline, body in zip(headlines, bodies):
        sents = context_segments(body, context)
        sims = np.stack([lookup[s] for s in sents]) @ lookup[headline]
        top = np.argsort(-sims, kind="stable")[:top_k]
        out.append(" ".join(sents[j] for j in (top if context == "sentences" else sorted(top))))
    return out


def same_event_pairs(bodies: list[str], events: list[str], embed, per_event: int, max_similarity: float | None = None,
                     seed: int = 0) -> tuple[list[str], list[str], list[int]]:
    """Story pairs for the cross-encoder's "same event" training head, from stories whose event is known (short
    stories only: a page's title + snippet). For every event with two or more stories, up to ``per_event``
    ordered pairs (first story's title, second story) labelled 1, each matched by a pair (same title, the most
    similar story of another event, at most ``max_similarity`` cosine) labelled 0. Deterministic for a seed."""
    story_event: dict[str, str] = {}
    for body, event in zip(bodies, events):
        if event and len(body) < WHOLE_BODY_CHARS:
            story_event.setdefault(body, event)
    stories = list(story_event)
    if len(stories) < 2:
        return [], [], []
    event_arr = np.array([story_event[b] for b in stories])
    V = embed(stories)
    sims = V @ V.T

    def nearest_other(a):  # the most similar story of another event within max_similarity, or None
        return next((j for j in np.argsort(-sims[a], kind="stable") if event_arr[j] != event_arr[a]
                     and (max_similarity is None or sims[a, j] <= max_similarity)), None)

    rng = np.random.RandomState(seed)
    first, second, same = [], [], []
    for event in dict.fromkeys(event_arr.tolist()):
        members = np.flatnonzero(event_arr == event)
        if len(members) < 2:
            continue
        ordered = [(a, b) for a in members for b in members if a != b]
        for k in rng.permutation(len(ordered))[:per_event]:
            a, b = ordered[k]
            title, other = split_sentences(stories[a])[0], nearest_other(a)
            for story, label in [(b, 1)] + ([] if other is None else [(other, 0)]):
                first.append(title)
                second.append(stories[story])
                same.append(label)
    return first, second, same


_FEATURES: contextvars.ContextVar[dict | None] = contextvars.ContextVar("stance_features", default=None)


@contextlib.contextmanager
def reuse_features():
    """Inside this block a stance feature matrix of the same pairs, feature settings, term weights and embedder
    (its ``identity``) as an earlier one of the block is that matrix again. ``classify tune`` uses it: settings
    that leave the features alone (a classifier's C, the mixing weight, calibration) share them per fold."""
    token = _FEATURES.set({})
    try:
        yield
    finally:
        _FEATURES.reset(token)


def _features_key(headlines, bodies, identity: str, settings: list, term_weights) -> str:
    h = hashlib.sha256(json.dumps([identity] + settings, allow_nan=False).encode())
    if term_weights is not None:
        h.update(json.dumps(sorted(term_weights.vocabulary_.items()), allow_nan=False).encode())
        h.update(np.asarray(term_weights.idf_, dtype=np.float64).tobytes())
        h.update(json.dumps(term_weights.get_params(), sort_keys=True, default=str, allow_nan=False).encode())
    for part in (headlines, bodies):
        h.update(json.dumps(list(part), allow_nan=False).encode() + b"\0")
    return h.hexdigest()


def fit_term_weights(texts: list[str]) -> TfidfVectorizer:
    """TF-IDF over the training texts: overlap of rare words (names, places) says "same event" far better than
    overlap of the topic's everyday words (Russia, Ukraine, minister)."""
    return TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=1, dtype=np.float32).fit(
        list(dict.fromkeys(texts)))


def pair_features(headlines: list[str], bodies: list[str], embed, top_k: int = 3,
                  embedding_features: bool = True, term_weights: TfidfVectorizer | None = None,
                  text_embedding: bool = False) -> np.ndarray:
    """Feature matrix for (headline, body) pairs. ``embed(texts) -> vectors`` is called once for all texts;
    work on a headline or a body is done once however many pairs share it.

    Columns: similarities (headline to body, to its best sentences, share of matching sentences, position of
    the best one, TF cosine), lexical cues, presence of single cue words in the best sentences, with
    ``term_weights`` (a fitted TF-IDF) the TF-IDF cosines of the headline to the body and to its best sentences
    and the largest IDF among shared words, with ``text_embedding`` the body's own (mean) embedding (what the text
    says, whoever the target: the signal for favor / against a fixed target), and, with ``embedding_features``,
    the 4 x dim element-wise products
    and differences of the embeddings."""
    texts = pair_embedding_texts(headlines, bodies)
    lookup = dict(zip(texts, embed(texts)))
    uniq_h, uniq_b = list(dict.fromkeys(headlines)), list(dict.fromkeys(bodies))
    heads = {h: _Side(h) for h in uniq_h}
    segs = {b: segments(b) for b in uniq_b}
    mats = {b: np.stack([lookup[s] for s in segs[b]]) for b in uniq_b}
    means = {b: _unit(m.mean(axis=0)) for b, m in mats.items()}
    sides = {b: _Side(b) for b in uniq_b}
    tf_overlap, _ = _row_dots(_HASHER.transform(uniq_h), _HASHER.transform(uniq_b), _positions(uniq_h, headlines),
                              _positions(uniq_b, bodies))

    rows, best_texts = [], []
    for n, (headline, body) in enumerate(zip(headlines, bodies)):
        h, S, sents, b = lookup[headline], mats[body], segs[body], means[body]
        sims = S @ h
        order = np.argsort(-sims, kind="stable")
        top = order[:top_k]
        best = _unit(S[top].mean(axis=0))
        best_text = " ".join(sents[j] for j in sorted(top))
        best_side = _Side(best_text) if len(sents) > 1 else sides[body]
        ranked = sims[order]
        dense = [float(h @ b), float(ranked[0]), float(ranked[:2].mean()), float(sims[top].mean()),
                 float(ranked[:5].mean()), float(sims.mean()), float(sims[0]), float(h @ best),
                 float((sims > 0.5).mean()), float((sims > 0.6).sum()), float(order[0] / max(len(sents) - 1, 1)),
                 float(tf_overlap[n])]
        cues = [float(w in best_side.words) for w in CUE_WORDS]
        best_texts.append(best_text)
        parts = [dense, lexical_features(heads[headline], sides[body], best_side, headline, body), cues]
        if text_embedding:
            parts.append(b)
        if embedding_features:
            parts += [h * best, np.abs(h - best), h * b, np.abs(h - b)]
        rows.append(np.concatenate(parts))
    out = np.asarray(rows, dtype=np.float32)
    if term_weights is not None and len(out):
        out = np.hstack([out, _term_features(term_weights, headlines, bodies, best_texts)])
    return out


def _term_features(tfidf: TfidfVectorizer, headlines, bodies, best_texts) -> np.ndarray:
    """TF-IDF cosine of headline and body, of headline and best sentences, and the highest IDF of a word the
    headline and body share (normalised by the largest IDF)."""
    uniq_h, uniq_b = list(dict.fromkeys(headlines)), list(dict.fromkeys(list(bodies) + list(best_texts)))
    H, B = tfidf.transform(uniq_h), tfidf.transform(uniq_b)
    rows_h, rows_b = _positions(uniq_h, headlines), _positions(uniq_b, bodies)
    body_cos, shared = _row_dots(H, B, rows_h, rows_b)
    best_cos, _ = _row_dots(H, B, rows_h, _positions(uniq_b, best_texts))
    shared.data = tfidf.idf_[shared.indices] / float(tfidf.idf_.max())  # each shared word's IDF
    rare = shared.max(axis=1).toarray().ravel()  # 0 where nothing is shared
    return np.column_stack([body_cos, best_cos, rare]).astype(np.float32)


def _positions(unique: list[str], texts) -> np.ndarray:
    """Row of each text in ``unique`` (the texts' distinct values in first-seen order)."""
    where = {t: i for i, t in enumerate(unique)}
    return np.fromiter((where[t] for t in texts), dtype=np.intp, count=len(texts))


def _row_dots(A, B, rows_a: np.ndarray, rows_b: np.ndarray):
    """Dot products of sparse rows ``A[rows_a[i]]`` and ``B[rows_b[i]]`` for every pair i, in one sparse product
    (not one small product per pair); also the element-wise products themselves (CSR, one row per pair)."""
    shared = A[rows_a].multiply(B[rows_b]).tocsr()
    shared.eliminate_zeros()
    return np.asarray(shared.sum(axis=1), dtype=np.float64).ravel(), shared


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


class StanceClassifier(ClassifierMixin, BaseEstimator):
    """Classifier over ``pair_features`` rows.

    ``kind``: ``logreg`` (standardised features + logistic regression) or ``hgb`` (histogram gradient
    boosting). With ``two_stage``, a first model separates ``unrelated_label`` from the rest and a second
    one picks among the other labels on related pairs; probabilities multiply. With ``tune_scale``, ``predict``
    weighs the probabilities per class (``class_scale_``), tuned for macro-F1 on a grouped validation split.
    ``show_progress``: a progress bar per boosting fit (``hgb`` fits can run for minutes); the trees are grown
    ``max_iter / 20`` at a time with ``warm_start``, which grows the same trees as one call.
    """

    def __init__(self, kind="logreg", C=1.0, class_weight="balanced", max_iter=300, learning_rate=0.1,
                 max_leaf_nodes=31, two_stage=False, unrelated_label="unrelated", tune_scale=False,
                 validation_size=0.2, scale_grid=(0.5, 1.0, 2.0, 4.0, 8.0), random_state=0, show_progress=False):
        self.kind = kind
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.two_stage = two_stage
        self.unrelated_label = unrelated_label
        self.tune_scale = tune_scale
        self.validation_size = validation_size
        self.scale_grid = scale_grid
        self.random_state = random_state
        self.show_progress = show_progress

    def _base(self):
        if self.kind == "hgb":
            return HistGradientBoostingClassifier(
                learning_rate=self.learning_rate, max_iter=self.max_iter, max_leaf_nodes=self.max_leaf_nodes,
                class_weight=self.class_weight, random_state=self.random_state, early_stopping=False)
        return make_pipeline(StandardScaler(), LogisticRegression(
            C=self.C, class_weight=self.class_weight, max_iter=self.max_iter, random_state=self.random_state))

    def fit(self, X, y, groups=None, second_stage_only=None):
        """``groups`` (e.g. the headline of each pair) keep a group on one side of the validation split.
        ``second_stage_only`` (a mask; ``two_stage`` only): rows only the second stage learns from (e.g. other
        data's pairs that may teach which related label, but not what is related)."""
        y = np.asarray(y)
        only2 = np.zeros(len(y), dtype=bool) if second_stage_only is None else np.asarray(second_stage_only, dtype=bool)
        if only2.any() and not self.two_stage:
            raise ValueError("second_stage_only needs two_stage=True")
        self.classes_ = np.unique(y)
        self.class_scale_ = np.ones(len(self.classes_))
        if self.tune_scale:
            self.class_scale_ = self._tune_scale(X[~only2], y[~only2],
                                                 None if groups is None else np.asarray(groups)[~only2])
        if self.two_stage:
            related = y != self.unrelated_label
            self.stage1_ = self._fit_base(X[~only2], related[~only2], "stance classifier, related or not")
            self.stage2_ = self._fit_base(X[related], y[related], "stance classifier, related pairs")
        else:
            self.model_ = self._fit_base(X, y, "stance classifier")
        return self

    def _fit_base(self, X, y, desc):
        model = clone(self._base())
        if self.kind != "hgb" or not self.show_progress:
            return model.fit(X, y)
        from tqdm.auto import tqdm

        step = max(1, self.max_iter // 20)
        model.set_params(warm_start=True)
        with tqdm(total=self.max_iter, desc=desc, unit="iteration") as bar:
            for n in range(step, self.max_iter + step, step):
                n = min(n, self.max_iter)
                model.set_params(max_iter=n).fit(X, y)
                bar.update(n - bar.n)
        return model.set_params(warm_start=False)

    def predict_proba(self, X):
        check_is_fitted(self, "classes_")
        if not self.two_stage:
            proba = self.model_.predict_proba(X)
            return proba[:, np.searchsorted(self.model_.classes_, self.classes_)]
        p_related = self.stage1_.predict_proba(X)[:, list(self.stage1_.classes_).index(True)]
        out = np.zeros((len(X), len(self.classes_)))
        inner = self.stage2_.predict_proba(X)
        for j, label in enumerate(self.stage2_.classes_):
            out[:, list(self.classes_).index(label)] = p_related * inner[:, j]
        out[:, list(self.classes_).index(self.unrelated_label)] = 1 - p_related
        return out

    def _tune_scale(self, X, y, groups):
        """Per-class multipliers of the probabilities that maximise macro-F1 on a held-out part of the training
        data (grouped), for a model fitted on the rest; the largest class keeps 1."""
        split = GroupShuffleSplit(1, test_size=self.validation_size, random_state=self.random_state)
        fit_idx, val_idx = next(split.split(X, y, groups if groups is not None else np.arange(len(y))))
        inner = clone(self).set_params(tune_scale=False).fit(X[fit_idx], y[fit_idx])
        gold = np.searchsorted(self.classes_, y[val_idx])
        fixed = int(np.argmax([np.sum(y == c) for c in self.classes_]))
        return _best_scale(inner.predict_proba(X[val_idx]), gold, len(self.classes_), self.scale_grid, fixed)

    def decide(self, proba):
        """Labels from (possibly adjusted) probabilities, weighed by the tuned class scales."""
        return self.classes_[np.argmax(proba * self.class_scale_, axis=1)]

    def predict(self, X):
        check_is_fitted(self, "classes_")
        return self.decide(self.predict_proba(X))


NEGATION_CUES = NEGATION | {"deny", "denies", "denied", "denial", "false", "fake", "reject", "rejects", "rejected",
                            "refute", "refuted", "hoax", "untrue", "dismiss", "dismissed", "dismisses", "baseless",
                            "wrong", "lie", "lies", "debunk", "debunked"}


def has_negation(text: str) -> bool:
    """Whether a text holds a negation or denial word (the cue a word-counting stance model leans on)."""
    return any(w in NEGATION_CUES or w.endswith("n't") for w in _words(text))


def _calibrated(proba: np.ndarray, temperature: float, bias=None) -> np.ndarray:
    """Temperature scaling of probabilities: softmax(log p / T + bias); T > 1 softens, T < 1 sharpens, a class's
    ``bias`` (log-odds, 0 for none) moves its share, e.g. towards the class frequencies the parts were not
    trained with (both the cross-encoder and the classifier weigh classes as if they were balanced)."""
    logits = np.log(np.clip(proba, 1e-12, None)) / temperature
    if bias is not None:
        logits = logits + np.asarray(bias, dtype=float)
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def fit_temperature(proba: np.ndarray, gold_index: np.ndarray, grid=None) -> float:
    """The temperature that minimises the negative log-likelihood of the gold labels (a 1-D grid search)."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(4.0), 49)) if grid is None else np.asarray(grid)
    nll = [-np.mean(np.log(np.clip(_calibrated(proba, t)[np.arange(len(gold_index)), gold_index], 1e-12, None)))
           for t in grid]
    return float(grid[int(np.argmin(nll))])


def fit_calibration(proba: np.ndarray, gold_index: np.ndarray) -> tuple[float, np.ndarray]:
    """Temperature and per-class bias (the first class's fixed at 0) that minimise the negative log-likelihood
    of the gold labels: bias-corrected temperature scaling. Deterministic (L-BFGS from T = 1, bias = 0)."""
    from scipy.optimize import minimize

    k = proba.shape[1]
    logp = np.log(np.clip(proba, 1e-12, None))

    def loss(x):
        logits = logp / np.exp(x[0]) + np.r_[0.0, x[1:]]
        logits -= logits.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(len(gold_index)), gold_index]))

    x = minimize(loss, np.zeros(k), method="L-BFGS-B", bounds=[(np.log(0.05), np.log(20.0))] + [(-10, 10)] * (k - 1)).x
    return float(np.exp(x[0])), np.r_[0.0, x[1:]]


class StanceModel:
    """Stance of (headline, body) pairs, embed then classify: owns the feature classifier, the optional
    cross-encoder, how their probabilities are mixed, the class scales and the calibration.

    ``embed(texts) -> vectors`` is passed to ``fit`` / ``predict_proba`` / ``predict`` (the run's embedder).

    The cross-encoder reads each pair as (headline, ``best_sentences`` of the body): ``top_k`` segments chosen by
    ``context`` (``body``: a short body whole, from its start; ``sentences``: its sentences closest to the headline,
    the closest first).

    Cross-encoder modes:
    - ``all``: it scores every pair on all labels; probabilities are ``weight * cross-encoder +
      (1 - weight) * features``. With ``weight="auto"`` the weight is chosen on a validation split.
    - ``related`` (second stage): it scores only pairs the feature classifier calls related, on the related
      labels, and its probabilities are mixed with the classifier's among those labels.

    With ``calibrate`` (or ``weight="auto"``, or ``tune_scale`` in ``all`` mode) the parts are first fitted on
    a share of the training groups (``validation_size``, grouped by ``groups``, e.g. the event), the weight,
    class scales and temperature are chosen on the rest, and the feature classifier is refitted on all data
    (the cross-encoder too with ``refit_cross_encoder``).
    """

    WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)

    def __init__(self, classifier: StanceClassifier | None = None, cross_encoder=None, mode: str = "all",
                 weight: float | str = 0.5, top_k: int = 3, context: str = "body", embedding_features: bool = True,
                 text_embedding: bool = False,
                 calibrate: bool = False, tune_scale: bool = False, validation_size: float = 0.2,
                 refit_cross_encoder: bool = False, term_weights: bool = True, same_event: int = 0,
                 same_event_max_similarity: float | None = None, confidence_on_mined: bool = True,
                 classifier_pretrain_stage: str = "related", random_state: int = 0, log=None):
        self.classifier = classifier
        self.cross_encoder = cross_encoder
        self.mode = mode
        self.weight = weight
        self.top_k = top_k
        self.context = context
        self.embedding_features = embedding_features
        self.text_embedding = text_embedding
        self.calibrate = calibrate
        self.tune_scale = tune_scale
        self.validation_size = validation_size
        self.refit_cross_encoder = refit_cross_encoder
        self.term_weights = term_weights
        self.same_event = same_event
        self.same_event_max_similarity = same_event_max_similarity
        self.confidence_on_mined = confidence_on_mined
        self.classifier_pretrain_stage = classifier_pretrain_stage
        self.random_state = random_state
        self.log = log

    # -- parts ------------------------------------------------------------------------------------------
    def _say(self, message: str) -> None:
        if self.log is not None:
            self.log(message)

    def features(self, headlines, bodies, embed) -> np.ndarray:
        term_weights = getattr(self, "term_weights_", None)

        def compute():
            return pair_features(headlines, bodies, embed, top_k=self.top_k,
                                 embedding_features=self.embedding_features, text_embedding=self.text_embedding,
                                 term_weights=term_weights)
        memo, identity = _FEATURES.get(), getattr(embed, "identity", None)
        if memo is None or identity is None:  # outside reuse_features, or an embedder of unknown identity
            return compute()
        key = _features_key(headlines, bodies, identity,
                            [self.top_k, self.embedding_features, self.text_embedding], term_weights)
        if key not in memo:
            memo[key] = compute()
            memo[key].setflags(write=False)  # shared: nobody may change it in place
        return memo[key]

    def _contexts(self, headlines, bodies, embed) -> list[str]:
        return best_sentences(headlines, bodies, embed, self.top_k, self.context)

    @property
    def _ce_inside(self) -> bool:
        return self.cross_encoder is not None and self.mode == "all"

    @property
    def _ce_fitted_all(self) -> bool:
        return getattr(self, "cross_encoder_", None) is not None and self.mode == "all"

    def _validates(self) -> bool:
        return bool(self.calibrate or (self.cross_encoder is not None and self.weight == "auto")
                    or (self._ce_inside and self.tune_scale))

    def _fit_parts(self, F, headlines, contexts, y, groups, unrelated, with_ce: bool = True, stories=None,
                   pretrain=None, classifier_extra=None):
        clf = clone(self.classifier)
        if self._validates():
            clf.set_params(tune_scale=False)  # the class scales are tuned on the mixed probabilities instead
        if classifier_extra is not None:  # (features, labels, groups) it also learns from, never validated on
            only2 = None
            if self.classifier_pretrain_stage == "related":  # which related label only: the data decides relatedness
                only2 = np.r_[np.zeros(len(y), dtype=bool), np.ones(len(classifier_extra[1]), dtype=bool)]
            clf.fit(np.vstack([F, classifier_extra[0]]), np.concatenate([y, classifier_extra[1]]),
                    groups=np.concatenate([np.asarray(groups, dtype=object), classifier_extra[2]]),
                    second_stage_only=only2)
        else:
            clf.fit(F, y, groups=groups)
        ce = None
        if with_ce and self.cross_encoder is not None:
            keep = np.arange(len(y)) if self.mode == "all" else np.flatnonzero(y != unrelated)
            aux = None
            if self.same_event and stories is not None:
                aux = same_event_pairs(*stories, per_event=self.same_event,
                                       max_similarity=self.same_event_max_similarity, seed=self.random_state)
            self._say(f"cross-encoder ({self.mode} labels) on {len(keep)} pairs"
                      + (f" + {len(aux[0])} same-event story pairs" if aux else ""))
            extra = {"same_event": aux} if aux else {}  # a cross-encoder without that head is fitted as before
            if pretrain is not None:  # the labels this cross-encoder learns (``related`` mode: not unrelated)
                known = set(y[keep].tolist())
                take = [i for i, label in enumerate(pretrain[2]) if label in known]
                extra["pretrain"] = tuple([part[i] for i in take] for part in pretrain)
            ce = deepcopy(self.cross_encoder).fit([headlines[i] for i in keep], [contexts[i] for i in keep],
                                                  [y[i] for i in keep], **extra)
        return clf, ce

    def _scores(self, clf, ce, F, headlines, contexts) -> tuple:
        """Each part's probabilities, every pair scored once: ``(classifier, cross_encoder, rows)``.

        The classifier scores every pair; the cross-encoder (if any) every pair in ``all`` mode, or in ``related``
        mode only those the classifier calls related (``rows``, in order; its columns are ``ce.classes_``)."""
        proba = clf.predict_proba(F)
        if ce is None or not len(F):
            return proba, None, None
        rows = np.arange(len(F))
        if self.mode != "all":
            cols = np.searchsorted(clf.classes_, ce.classes_)
            rows = np.flatnonzero(proba[:, cols].sum(axis=1) > proba[:, list(clf.classes_).index(clf.unrelated_label)])
        ce_proba = (ce.predict_proba([headlines[i] for i in rows], [contexts[i] for i in rows]) if len(rows)
                    else np.zeros((0, len(ce.classes_))))
        return proba, ce_proba, rows

    def _combine(self, clf, ce, weight, proba, ce_proba, rows) -> np.ndarray:
        """Mix the parts' probabilities (``_scores``) with ``weight`` into a new array (the classifier's own
        where there is no cross-encoder); the inputs are left as they are, so one scoring serves every weight."""
        if ce_proba is None:
            return proba
        cols = np.searchsorted(clf.classes_, ce.classes_)
        if self.mode == "all":
            out = (1 - weight) * proba
            out[:, cols] += weight * ce_proba
            return out
        out = proba.copy()
        if len(rows):
            inner = out[np.ix_(rows, cols)]
            mass = inner.sum(axis=1, keepdims=True)
            out[np.ix_(rows, cols)] = (weight * ce_proba + (1 - weight) * inner / mass) * mass
        return out

    def _mix(self, clf, ce, weight, F, headlines, contexts) -> np.ndarray:
        return self._combine(clf, ce, weight, *self._scores(clf, ce, F, headlines, contexts))

    def part_proba(self, headlines: list[str], bodies: list[str], embed) -> dict[str, np.ndarray]:
        """Each part's probabilities for the pairs, every pair scored once, columns in ``classes_`` order:
        ``classifier`` (the feature classifier), ``cross_encoder`` (only with one in ``all`` mode: in ``related``
        mode it does not score every pair), ``mix`` (theirs mixed by the fitted weight, before class scales and
        calibration) and ``calibrated`` (what ``predict_proba`` returns)."""
        if not hasattr(self, "classes_"):
            raise NotFittedError("StanceModel is not fitted")
        if not len(headlines):
            empty = np.zeros((0, len(self.classes_)))
            return {"classifier": empty, **({"cross_encoder": empty} if self._ce_fitted_all else {}),
                    "mix": empty, "calibrated": empty}
        F = self.features(headlines, bodies, embed)
        ce = self.cross_encoder_
        contexts = self._contexts(headlines, bodies, embed) if ce is not None else list(bodies)
        scores = self._scores(self.classifier_, ce, F, headlines, contexts)
        mix = self._combine(self.classifier_, ce, self.weight_, *scores)
        out = {"classifier": scores[0]}
        if self._ce_fitted_all:
            out["cross_encoder"] = np.zeros_like(mix)
            out["cross_encoder"][:, np.searchsorted(self.classes_, ce.classes_)] = scores[1]
        out["mix"] = mix
        out["calibrated"] = _calibrated(self._normalise(mix), self.temperature_, self.bias_)
        return out

    # -- estimator API ----------------------------------------------------------------------------------
    def fit(self, headlines: list[str], bodies: list[str], labels, embed, groups=None,
            tune_on=None, body_events=None, train_on=None, written=None, pretrain=None,
            classifier_pretrain=None) -> "StanceModel":
        """``groups`` (event or headline of each pair) keep a group on one side of the validation split;
        ``tune_on`` (a mask; default all) names the pairs whose validation part may tune the weight, scales and
        calibration (e.g. only the full stories when training also sees shortened views: tune on what is
        predicted); ``train_on`` (a mask; default all) the pairs the parts are fitted on (the others can only
        tune: e.g. mined negatives kept for the validation split); ``body_events`` (the event each body reports,
        "" where unknown) feed the cross-encoder's same-event head (``same_event``), from the pairs it is fitted
        on; ``written`` (a mask; default all) the pairs as the data holds them, against mined ones added only to
        validate on: unless ``confidence_on_mined``, the temperature is fitted on the written validation pairs
        alone (see ``_tune``); ``pretrain`` (optional) ``(headlines, contexts, labels)`` the cross-encoder also trains
        on, before the pairs or mixed among them (its ``pretrain_order``; contexts as it reads them:
        ``best_sentences``); ``classifier_pretrain`` (optional) ``(headlines, bodies, labels)`` the feature
        classifier also learns from, in every fit (never validated on; pairs of a label outside the data's are
        left out): with ``classifier_pretrain_stage="related"`` (a ``two_stage`` classifier) only its second stage,
        which related label, learns from them; with ``"all"`` every part of it."""
        y = np.asarray(labels)
        groups = np.asarray(groups if groups is not None else headlines)
        unrelated = self.classifier.unrelated_label
        self._say("stance features")
        self.term_weights_ = fit_term_weights(list(headlines) + list(bodies)) if self.term_weights else None
        F = self.features(headlines, bodies, embed)
        contexts = self._contexts(headlines, bodies, embed) if self.cross_encoder is not None else list(bodies)
        self.n_features_in_ = F.shape[1]
        trainable = np.ones(len(y), dtype=bool) if train_on is None else np.asarray(train_on, dtype=bool)
        self.classes_ = np.unique(y[trainable])
        self.weight_ = 0.0 if self.cross_encoder is None else (0.5 if self.weight == "auto" else float(self.weight))
        self.class_scale_ = np.ones(len(self.classes_))
        self.temperature_ = 1.0
        self.bias_ = np.zeros(len(self.classes_))
        self.validation_ = None
        self.page_calibration_ = self._validated = None
        extra = None
        if classifier_pretrain is not None:
            if self.classifier_pretrain_stage not in ("related", "all"):
                raise ValueError(f"classifier_pretrain_stage must be 'related' or 'all', not "
                                 f"{self.classifier_pretrain_stage!r}")
            known = set(self.classes_.tolist())
            keep = [i for i, label in enumerate(classifier_pretrain[2]) if label in known]
            if keep:
                extra_heads = [classifier_pretrain[0][i] for i in keep]
                extra = (self.features(extra_heads, [classifier_pretrain[1][i] for i in keep], embed),
                         np.asarray([classifier_pretrain[2][i] for i in keep]),
                         np.asarray(["pretrain\x00" + h for h in extra_heads], dtype=object))
            self._say(f"feature classifier: {len(keep)} pretraining pairs besides the data's")
        ce = None
        events = list(body_events) if body_events is not None else None
        take = lambda seq, idx: [seq[i] for i in idx]  # noqa: E731

        def stories(idx):  # the fitted part's stories, of its own events only (no validation event leaks in)
            if events is None:
                return None
            own = set(groups[idx].tolist())
            idx = [i for i in idx if events[i] in own]
            return take(bodies, idx), take(events, idx), embed
        if self._validates():
            split = GroupShuffleSplit(1, test_size=self.validation_size, random_state=self.random_state)
            fit_idx, val_idx = next(split.split(F, y, groups))
            fit_idx = fit_idx[trainable[fit_idx]]
            if tune_on is not None:
                val_idx = val_idx[np.asarray(tune_on, dtype=bool)[val_idx]]
            val_written = (np.ones(len(val_idx), dtype=bool) if written is None
                           else np.asarray(written, dtype=bool)[val_idx])
            self._say(f"validation split: {len(fit_idx)} pairs to fit, {len(val_idx)} to tune "
                      f"({len(set(groups[val_idx]))} groups)")
            missing = sorted(set(self.classes_.tolist()) - set(y[fit_idx].tolist()))
            if missing:
                from .errors import DataError

                raise DataError(f"stance.validation_size: the validation split of {len(set(groups.tolist()))} groups "
                                f"leaves no pair labelled {missing[0]!r} to fit on; use more training data, another "
                                "seed, or stance.calibrate: false (and no cross_encoder weight auto / tune_class_scale)")
            clf, ce = self._fit_parts(F[fit_idx], take(headlines, fit_idx), take(contexts, fit_idx), y[fit_idx],
                                      groups[fit_idx], unrelated, stories=stories(fit_idx), pretrain=pretrain,
                                      classifier_extra=extra)
            self._tune(clf, ce, F[val_idx], take(headlines, val_idx), take(contexts, val_idx), y[val_idx],
                       written=val_written)
        refit_ce = ce is None or self.refit_cross_encoder
        idx = np.flatnonzero(trainable)
        self.classifier_, new_ce = self._fit_parts(F[idx], take(headlines, idx), take(contexts, idx), y[idx],
                                                   groups[idx], unrelated, with_ce=refit_ce, stories=stories(idx),
                                                   pretrain=pretrain, classifier_extra=extra)
        self.cross_encoder_ = new_ce if refit_ce else ce
        if not self._validates():
            self.class_scale_ = np.asarray(self.classifier_.class_scale_, dtype=float)
        return self

    def _tune(self, clf, ce, F, headlines, contexts, y, written=None) -> None:
        """Choose the mixing weight (macro-F1, then log-loss), the class scales (macro-F1) and the temperature
        (log-loss) on validation pairs.

        ``written`` (a mask; default all): the validation pairs as written, against mined ones (recommender-style
        stories of other events, ``stance.validation_hard_negatives``) that are there to move the *decisions*
        towards a real list's. Unless ``confidence_on_mined``, they do not set the confidence: with a bias per
        class, bias and temperature are fitted on all pairs, then the temperature again on the written pairs
        alone with the bias's effect on the argmax kept (``softmax(log p / T + b)`` decides as
        ``log p + T·b``; T·b stays, T moves), so the labels are the same and ``stance_score`` fits lists as
        written; a temperature alone (which never changes the argmax) is fitted on the written pairs."""
        gold = np.searchsorted(self.classes_, y)
        weights = self.WEIGHT_GRID if (ce is not None and self.weight == "auto") else [self.weight_]
        parts = self._scores(clf, ce, F, headlines, contexts)  # each pair scored once for every weight
        scored = []
        for w in weights:
            proba = self._combine(clf, ce, w, *parts)
            f1 = f1_score(gold, proba.argmax(axis=1), average="macro", labels=np.arange(len(self.classes_)))
            nll = -np.mean(np.log(np.clip(proba[np.arange(len(gold)), gold], 1e-12, None)))
            scored.append((round(f1, 4), -nll, w, proba))
        f1, _, self.weight_, proba = max(scored, key=lambda s: (s[0], s[1]))
        if self.tune_scale:
            self.class_scale_ = _best_scale(proba, gold, len(self.classes_), self.classifier.scale_grid,
                                            fixed=int(np.bincount(gold, minlength=len(self.classes_)).argmax()))
        scaled = self._normalise(proba)
        self._validated = (scaled, gold)  # for calibrate_on's record of what another calibration does here
        own = (np.ones(len(gold), dtype=bool) if written is None or self.confidence_on_mined
               else np.asarray(written, dtype=bool))
        if not own.any():  # nothing as written to fit the confidence on: all pairs
            own[:] = True
        if self.calibrate == "temperature":
            self.temperature_ = fit_temperature(scaled[own], gold[own])
        elif self.calibrate:
            self.temperature_, self.bias_ = fit_calibration(scaled, gold)
            if not own.all():
                decision = self.temperature_ * self.bias_  # what the bias does to the argmax
                self.temperature_ = fit_temperature(_calibrated(scaled[own], 1.0, decision), gold[own])
                self.bias_ = decision / self.temperature_
        self.validation_ = {"pairs": int(len(y)), "confidence_pairs": int(own.sum()) if self.calibrate else 0,
                            "labels": {str(c): int(n) for c, n in
                                       zip(self.classes_, np.bincount(gold, minlength=len(self.classes_)))},
                            "weight": float(self.weight_), "macro_f1": float(f1),
                            "weights_tried": {str(w): float(s[0]) for s, w in zip(scored, weights)},
                            "class_scale": self.class_scale_.tolist(), "temperature": self.temperature_,
                            "bias": self.bias_.tolist()}
        self._say(f"validation: weight {self.weight_}, macro-F1 {f1:.3f}, temperature {self.temperature_:.2f}")

    def calibrate_on(self, headlines: list[str], bodies: list[str], labels, embed) -> "StanceModel":
        """Fit the calibration again on these pairs, scored by the fitted model: the temperature and a bias per
        class (``calibrate: true``) or the temperature alone (``"temperature"``), in place of the validation
        split's. For real reporting laid out as news pages (``stance.cross_encoder.pretrain_calibration``): the
        label shares and the look-alike stories the model will meet, where the validation split holds the team's
        writing. The mixing weight and the class scales stay as the validation split chose them; pairs whose label
        is not a class are left out. Records what it did in ``page_calibration_`` (saved)."""
        if not hasattr(self, "classes_"):
            raise NotFittedError("StanceModel is not fitted")
        if not self.calibrate:
            raise ValueError("calibrate_on needs calibrate: true or 'temperature'")
        y = np.asarray(labels, dtype=object)
        keep = np.flatnonzero(np.isin(y, self.classes_))
        if not len(keep):
            raise ValueError("calibrate_on: none of the pairs has a label among the classes")
        gold = np.searchsorted(self.classes_, y[keep].astype(str))
        mix = self.part_proba([headlines[i] for i in keep], [bodies[i] for i in keep], embed)["mix"]
        scaled = self._normalise(mix)
        before = {"temperature": float(self.temperature_), "bias": [float(v) for v in self.bias_]}
        if self.calibrate == "temperature":
            self.temperature_, self.bias_ = fit_temperature(scaled, gold), np.zeros(len(self.classes_))
        else:
            self.temperature_, self.bias_ = fit_calibration(scaled, gold)
        self.page_calibration_ = {
            "pairs": int(len(keep)),
            "labels": {str(c): int(n) for c, n in zip(self.classes_, np.bincount(gold, minlength=len(self.classes_)))},
            "temperature": float(self.temperature_), "bias": [float(v) for v in self.bias_], "validation": before}
        validated = getattr(self, "_validated", None)
        if validated is not None:  # the validation split's pairs decided with each calibration (what the trade costs
            # on the team's writing; the validation calibration was fitted on these very pairs)
            v_scaled, v_gold = validated
            labels_at = np.arange(len(self.classes_))
            for name, (t, b) in (("validation", (before["temperature"], before["bias"])),
                                 ("pages", (self.temperature_, self.bias_))):
                pred = _calibrated(v_scaled, t, b).argmax(axis=1)
                before[f"macro_f1_{name}"] = float(f1_score(v_gold, pred, average="macro", labels=labels_at))
                before[f"accuracy_{name}"] = float(np.mean(pred == v_gold))
        self._say(f"page calibration: {len(keep)} pairs, temperature {self.temperature_:.2f}, bias "
                  + " ".join(f"{c} {b:+.2f}" for c, b in zip(self.classes_, self.bias_))
                  + ("" if validated is None else f"; validation macro-F1 {before['macro_f1_validation']:.3f} -> "
                     f"{before['macro_f1_pages']:.3f} with it"))
        return self

    def _normalise(self, proba: np.ndarray) -> np.ndarray:
        scaled = proba * self.class_scale_
        return scaled / np.clip(scaled.sum(axis=1, keepdims=True), 1e-12, None)

    def predict_proba(self, headlines: list[str], bodies: list[str], embed) -> np.ndarray:
        """Calibrated probabilities, columns in ``classes_`` order; their argmax is ``predict``."""
        return self.part_proba(headlines, bodies, embed)["calibrated"]

    def decide(self, proba: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(proba, axis=1)]

    def predict(self, headlines: list[str], bodies: list[str], embed) -> np.ndarray:
        return self.decide(self.predict_proba(headlines, bodies, embed))

    # -- persistence --------------------------------------------------------------------------------------
    def state(self) -> dict:
        """What ``stance.json`` holds: settings and learned scalars (the parts are saved beside it)."""
        return {
            "mode": self.mode, "weight": self.weight, "top_k": self.top_k, "context": self.context,
            "embedding_features": self.embedding_features, "text_embedding": self.text_embedding,
            "calibrate": self.calibrate,
            "tune_scale": self.tune_scale, "validation_size": self.validation_size,
            "refit_cross_encoder": self.refit_cross_encoder, "term_weights": self.term_weights,
            "same_event": self.same_event, "same_event_max_similarity": self.same_event_max_similarity,
            "confidence_on_mined": self.confidence_on_mined,
            "classifier_pretrain_stage": self.classifier_pretrain_stage, "random_state": self.random_state,
            "classes": self.classes_.tolist(), "n_features_in": int(self.n_features_in_),
            "weight_": float(self.weight_), "class_scale": [float(v) for v in self.class_scale_],
            "temperature": float(self.temperature_), "bias": [float(v) for v in self.bias_],
            "validation": self.validation_, "page_calibration": getattr(self, "page_calibration_", None),
        }

    @classmethod
    def from_state(cls, state: dict, classifier, cross_encoder, term_weights=None) -> "StanceModel":
        self = cls(classifier=None, cross_encoder=None, **{k: state[k] for k in (
            "mode", "weight", "top_k", "embedding_features", "calibrate", "tune_scale", "validation_size",
            "refit_cross_encoder", "term_weights", "random_state")}, text_embedding=bool(state.get("text_embedding", False)),
            context=str(state.get("context", "body")),  # models saved before the setting read bodies so
            same_event=int(state.get("same_event", 0)), same_event_max_similarity=state.get("same_event_max_similarity"),
            confidence_on_mined=bool(state.get("confidence_on_mined", True)),
            classifier_pretrain_stage=str(state.get("classifier_pretrain_stage", "related")))
        self.classifier_, self.cross_encoder_, self.term_weights_ = classifier, cross_encoder, term_weights
        if self.term_weights and term_weights is None:
            raise ValueError("stance.skops holds no term weights but stance.json expects them")
        self.classes_ = np.array(state["classes"])
        self.n_features_in_ = int(state["n_features_in"])
        self.weight_ = float(state["weight_"])
        self.class_scale_ = np.array(state["class_scale"], dtype=float)
        self.temperature_ = float(state["temperature"])
        self.bias_ = np.array(state.get("bias", [0.0] * len(self.classes_)), dtype=float)
        self.validation_ = state.get("validation")
        self.page_calibration_ = state.get("page_calibration")  # None: fitted on the validation split
        if list(classifier.classes_) != list(self.classes_) or len(self.class_scale_) != len(self.classes_):
            raise ValueError("stance classifier classes do not match stance.json")
        if cross_encoder is not None and not set(cross_encoder.classes_) <= set(self.classes_):
            raise ValueError("cross-encoder classes are not stance classes")
        if len(self.bias_) != len(self.classes_) or not np.isfinite(self.bias_).all():
            raise ValueError("stance.json: bias must hold one finite number per class")
        if not self.temperature_ > 0:
            raise ValueError("stance temperature must be positive")
        if self.context not in CONTEXTS:
            raise ValueError(f"stance.json: context must be one of {CONTEXTS}, not {self.context!r}")
        return self


def _best_scale(proba, gold, n_classes, grid, fixed) -> np.ndarray:
    free = [j for j in range(n_classes) if j != fixed]
    best, best_scale = -1.0, np.ones(n_classes)
    for values in itertools.product(grid, repeat=len(free)):
        scale = np.ones(n_classes)
        scale[free] = values
        score = f1_score(gold, np.argmax(proba * scale, axis=1), average="macro", labels=np.arange(n_classes))
        if score > best + 1e-9:
            best, best_scale = score, scale
    return best_scale
