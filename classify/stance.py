"""Stance of a body (a related story, or a long article) toward a headline.

``pair_features`` turns embeddings and texts of (headline, body) pairs into one float matrix: similarity of
the headline to the body and to its best-matching sentences, element-wise products and differences of the
embeddings, and lexical cues (overlap, refuting, hedging and negation words). ``StanceClassifier`` is a
scikit-learn classifier over that matrix, optionally in two stages (related/unrelated first).
"""

from __future__ import annotations

import itertools
import re

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, HashingVectorizer
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

FEATURES_VERSION = 2  # bump when pair_features' columns change: older stance models must be retrained
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


def pair_embedding_texts(headlines: list[str], bodies: list[str]) -> list[str]:
    """Every distinct text ``pair_features`` embeds: the headlines and the bodies' segments."""
    return list(dict.fromkeys(list(headlines) + [s for b in dict.fromkeys(bodies) for s in segments(b)]))


def best_sentences(headlines: list[str], bodies: list[str], embed, top_k: int = 3) -> list[str]:
    """For each pair, the body's ``top_k`` sentences most similar to the headline, in body order."""
    texts = pair_embedding_texts(headlines, bodies)
    lookup = dict(zip(texts, embed(texts)))
    out = []
    for headline, body in zip(headlines, bodies):
        sents = segments(body)
        sims = np.stack([lookup[s] for s in sents]) @ lookup[headline]
        out.append(" ".join(sents[j] for j in sorted(np.argsort(-sims, kind="stable")[:top_k])))
    return out


def pair_features(headlines: list[str], bodies: list[str], embed, top_k: int = 3,
                  embedding_features: bool = True) -> np.ndarray:
    """Feature matrix for (headline, body) pairs. ``embed(texts) -> vectors`` is called once for all texts;
    work on a headline or a body is done once however many pairs share it.

    Columns: similarities (headline to body, to its best sentences, share of matching sentences, position of
    the best one, TF cosine), lexical cues, presence of single cue words in the best sentences, and, with
    ``embedding_features``, the 4 x dim element-wise products and differences of the embeddings."""
    texts = pair_embedding_texts(headlines, bodies)
    lookup = dict(zip(texts, embed(texts)))
    uniq_h, uniq_b = list(dict.fromkeys(headlines)), list(dict.fromkeys(bodies))
    heads = {h: _Side(h) for h in uniq_h}
    segs = {b: segments(b) for b in uniq_b}
    mats = {b: np.stack([lookup[s] for s in segs[b]]) for b in uniq_b}
    means = {b: _unit(m.mean(axis=0)) for b, m in mats.items()}
    sides = {b: _Side(b) for b in uniq_b}
    tf_h = dict(zip(uniq_h, _HASHER.transform(uniq_h)))
    tf_b = dict(zip(uniq_b, _HASHER.transform(uniq_b)))

    rows = []
    for headline, body in zip(headlines, bodies):
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
                 float(tf_h[headline].multiply(tf_b[body]).sum())]
        cues = [float(w in best_side.words) for w in CUE_WORDS]
        parts = [dense, lexical_features(heads[headline], sides[body], best_side, headline, body), cues]
        if embedding_features:
            parts += [h * best, np.abs(h - best), h * b, np.abs(h - b)]
        rows.append(np.concatenate(parts))
    return np.asarray(rows, dtype=np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


class StanceClassifier(ClassifierMixin, BaseEstimator):
    """Classifier over ``pair_features`` rows.

    ``kind``: ``logreg`` (standardised features + logistic regression) or ``hgb`` (histogram gradient
    boosting). With ``two_stage``, a first model separates ``unrelated_label`` from the rest and a second
    one picks among the other labels on related pairs; probabilities multiply. With ``tune_scale``, ``predict``
    weighs the probabilities per class (``class_scale_``), tuned for macro-F1 on a grouped validation split.
    """

    def __init__(self, kind="logreg", C=1.0, class_weight="balanced", max_iter=300, learning_rate=0.1,
                 max_leaf_nodes=31, two_stage=False, unrelated_label="unrelated", tune_scale=False,
                 validation_size=0.2, scale_grid=(0.5, 1.0, 2.0, 4.0, 8.0), random_state=0):
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

    def _base(self):
        if self.kind == "hgb":
            return HistGradientBoostingClassifier(
                learning_rate=self.learning_rate, max_iter=self.max_iter, max_leaf_nodes=self.max_leaf_nodes,
                class_weight=self.class_weight, random_state=self.random_state, early_stopping=False)
        return make_pipeline(StandardScaler(), LogisticRegression(
            C=self.C, class_weight=self.class_weight, max_iter=self.max_iter, random_state=self.random_state))

    def fit(self, X, y, groups=None):
        """``groups`` (e.g. the headline of each pair) keep a group on one side of the validation split."""
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        self.class_scale_ = np.ones(len(self.classes_))
        if self.tune_scale:
            self.class_scale_ = self._tune_scale(X, y, groups)
        if self.two_stage:
            related = y != self.unrelated_label
            self.stage1_ = clone(self._base()).fit(X, related)
            self.stage2_ = clone(self._base()).fit(X[related], y[related])
        else:
            self.model_ = clone(self._base()).fit(X, y)
        return self

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
        proba, gold = inner.predict_proba(X[val_idx]), y[val_idx]
        fixed = int(np.argmax([np.sum(y == c) for c in self.classes_]))
        free = [j for j in range(len(self.classes_)) if j != fixed]
        best, best_scale = -1.0, np.ones(len(self.classes_))
        for values in itertools.product(self.scale_grid, repeat=len(free)):
            scale = np.ones(len(self.classes_))
            scale[free] = values
            score = f1_score(gold, self.classes_[np.argmax(proba * scale, axis=1)], average="macro")
            if score > best + 1e-9:
                best, best_scale = score, scale
        return best_scale

    def decide(self, proba):
        """Labels from (possibly adjusted) probabilities, weighed by the tuned class scales."""
        return self.classes_[np.argmax(proba * self.class_scale_, axis=1)]

    def predict(self, X):
        check_is_fitted(self, "classes_")
        return self.decide(self.predict_proba(X))
