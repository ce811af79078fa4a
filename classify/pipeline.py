"""The end-to-end jobs behind the CLI: train, predict, evaluate. Each is an importable function."""

from __future__ import annotations

import sys
import time
from collections import Counter

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from .clusters import MapProjector, TopicClusterer, cluster_keywords, lsa_features, make_reducer, representatives
from .config import Config
from .data import Corpus, check_trainable, load_corpus
from .dumps import Dump
from .embed import Embedder
from .errors import DataError
from .metrics import class_report, clustering_report, fnc_score
from .model import Model
from .crossencoder import CrossEncoder
from .stance import StanceClassifier, best_sentences, pair_embedding_texts, pair_features

PREDICTION_COLUMNS = ["dump", "item", "kind", "title", "topic", "topic_score", "cluster", "cluster_id", "stance",
                      "stance_score"]


def log(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def make_embedder(config: Config, quiet: bool = False) -> Embedder:
    e = config.embedding
    return Embedder(e.model, batch_size=e.batch_size, cache_dir=e.cache_dir, show_progress=not quiet)


def build_clusterer(config: Config) -> TopicClusterer:
    c = config.clustering
    reducer = None
    if c.reducer is not None:
        r = c.reducer
        reducer = make_reducer(r.n_components, r.n_neighbors, r.min_dist, r.metric, config.seed)
    return TopicClusterer(algorithm=c.algorithm, n_clusters=c.n_clusters or len(config.labels.topics),
                          min_cluster_size=c.min_cluster_size, reducer=reducer, use_reducer=c.reducer is not None,
                          knn=c.knn, min_purity=c.min_purity, random_state=config.seed)


def cluster_inputs(config: Config, X: np.ndarray, texts: list[str]) -> np.ndarray | None:
    """What the clusterer sees: the embeddings, optionally with weighted LSA dimensions appended."""
    c = config.clustering
    if not c.lsa_components:
        return None
    return np.hstack([X, c.lsa_weight * lsa_features(texts, c.lsa_components, config.seed)])


def build_stance(config: Config) -> StanceClassifier:
    s = config.stance.classifier
    return StanceClassifier(kind=s.type, C=s.C, class_weight=s.class_weight, max_iter=s.max_iter,
                            learning_rate=s.learning_rate, max_leaf_nodes=s.max_leaf_nodes,
                            two_stage=config.stance.two_stage, unrelated_label=config.labels.unrelated,
                            tune_scale=config.stance.tune_class_scale, validation_size=config.stance.validation_size,
                            random_state=config.seed)


def stance_features(config: Config, headlines: list[str], bodies: list[str], embed) -> np.ndarray:
    return pair_features(headlines, bodies, embed, top_k=config.stance.top_sentences,
                         embedding_features=config.stance.embedding_features)


def stance_predict(model: Model, headlines: list[str], bodies: list[str], embed) -> tuple[np.ndarray, np.ndarray]:
    """Stance labels and their probabilities. With a cross-encoder, the related labels' probabilities of the
    pairs the first stage calls related are a weighted mean of the cross-encoder's and the classifier's."""
    clf = model.stance
    texts = pair_embedding_texts(headlines, bodies)
    vectors = dict(zip(texts, embed(texts)))  # one embedding pass for the features and the cross-encoder
    embed = lambda ts: np.stack([vectors[t] for t in ts])  # noqa: E731
    proba = clf.predict_proba(stance_features(model.config, headlines, bodies, embed))
    if model.cross_encoder is not None and len(headlines):
        ce = model.cross_encoder
        cols = np.searchsorted(clf.classes_, ce.classes_)
        related = proba[:, cols].sum(axis=1) > proba[:, list(clf.classes_).index(clf.unrelated_label)]
        idx = np.flatnonzero(related)
        if len(idx):
            contexts = best_sentences([headlines[i] for i in idx], [bodies[i] for i in idx], embed,
                                      model.config.stance.top_sentences)
            inner = proba[np.ix_(idx, cols)]
            inner = inner / inner.sum(axis=1, keepdims=True)
            w = model.config.stance.cross_encoder.weight
            mixed = w * ce.predict_proba([headlines[i] for i in idx], contexts) + (1 - w) * inner
            proba[np.ix_(idx, cols)] = mixed * proba[idx][:, cols].sum(axis=1, keepdims=True)
    labels = clf.decide(proba)
    return labels, proba[np.arange(len(labels)), np.searchsorted(clf.classes_, labels)]


def train(config: Config, quiet: bool = False, embedder: Embedder | None = None) -> Model:
    """Train every component the config and its data allow; returns the model (not yet saved)."""
    start = time.perf_counter()
    embedder = embedder or make_embedder(config, quiet)
    corpus = load_corpus(config.data.train, config)
    if not corpus.texts and not corpus.pairs:
        raise DataError("data.train: the training sources hold no examples")
    check_trainable(corpus, config)
    log(f"training data: {len(corpus.texts)} topic texts, {len(corpus.pairs)} stance pairs", quiet)
    model = Model(config=config)

    if corpus.texts and (config.topic.enabled or config.clustering.enabled):
        X = embedder.encode(corpus.texts)
        if config.topic.enabled:
            t = config.topic
            model.topic = LogisticRegression(C=t.C, class_weight=t.class_weight, max_iter=t.max_iter,
                                             random_state=config.seed).fit(X, corpus.topics)
        if config.clustering.enabled:
            log("clustering (UMAP + " + config.clustering.algorithm + ")", quiet)
            model.clusterer = build_clusterer(config).fit(X, corpus.topics, cluster_inputs(config, X, corpus.texts))
            model.projector = MapProjector(method=config.clustering.map_method, random_state=config.seed).fit(X)
            labels = model.clusterer.labels_
            model.clusters_info = {
                "keywords": {str(k): v for k, v in cluster_keywords(corpus.texts, labels, config.clustering.keywords).items()},
                "examples": {str(k): v for k, v in representatives(X, labels, corpus.texts).items()},
            }

    if corpus.pairs and config.stance.enabled:
        headlines = [p.headline for p in corpus.pairs]
        bodies = [p.body for p in corpus.pairs]
        log("stance features", quiet)
        F = stance_features(config, headlines, bodies, embedder.encode)
        log(f"stance classifier ({config.stance.classifier.type}) on {F.shape[0]} pairs x {F.shape[1]} features", quiet)
        model.stance = build_stance(config).fit(F, [p.label for p in corpus.pairs], groups=headlines)
        ce = config.stance.cross_encoder
        if ce.enabled:
            related = [p for p in corpus.pairs if p.label != config.labels.unrelated]
            heads = [p.headline for p in related]
            log(f"cross-encoder: {ce.epochs} epoch(s) on {len(related)} related pairs", quiet)
            contexts = best_sentences(heads, [p.body for p in related], embedder.encode, config.stance.top_sentences)
            model.cross_encoder = CrossEncoder(config.embedding.model, ce.epochs, ce.learning_rate, ce.batch_size,
                                               ce.max_length, config.seed, show_progress=not quiet).fit(
                heads, contexts, [p.label for p in related])

    model.meta = {
        "training": {
            "seconds": round(time.perf_counter() - start, 1),
            "topic_texts": len(corpus.texts),
            "topic_counts": dict(Counter(corpus.topics)),
            "stance_pairs": len(corpus.pairs),
            "stance_counts": dict(Counter(p.label for p in corpus.pairs)),
        },
        "labels": {"topics": config.labels.topics, "stances": config.labels.stances},
    }
    return model


def predict_dumps(model: Model, dumps: list[Dump], embedder: Embedder | None = None, quiet: bool = False) -> pd.DataFrame:
    """One row per text: the article (item 0) and its related stories (1..), with topic, cluster and stance.

    All texts of the run are embedded in one pass; every row depends only on its own dump.
    """
    embedder = embedder or make_embedder(model.config, quiet)
    rows, texts = [], []
    for d in dumps:
        rows.append({"dump": d.path, "item": 0, "kind": "article", "title": d.headline})
        texts.append(d.text)
        for j, r in enumerate(d.related, 1):
            rows.append({"dump": d.path, "item": j, "kind": "related", "title": r.title})
            texts.append(r.text)
    df = pd.DataFrame(rows, columns=["dump", "item", "kind", "title"])
    heads = [d.headline for d in dumps for _ in d.related]
    bodies = [r.text for d in dumps for r in d.related]
    stance_texts = pair_embedding_texts(heads, bodies) if model.stance is not None else []
    if not texts:
        return df.reindex(columns=PREDICTION_COLUMNS)

    vectors = embedder.encode(texts + stance_texts)
    X = vectors[: len(texts)]
    lookup = dict(zip(texts + stance_texts, vectors))

    df["topic"], df["topic_score"] = None, np.nan
    if model.topic is not None:
        proba = model.topic.predict_proba(X)
        df["topic"] = model.topic.classes_[proba.argmax(axis=1)]
        df["topic_score"] = proba.max(axis=1).round(4)
    df["cluster"], df["cluster_id"] = None, None
    if model.clusterer is not None:
        ids = model.clusterer.predict(X)
        df["cluster_id"] = ids
        df["cluster"] = model.clusterer.names_of(ids)
    df["stance"], df["stance_score"] = None, np.nan
    if model.stance is not None and heads:
        labels, scores = stance_predict(model, heads, bodies, lambda ts: np.stack([lookup[t] for t in ts]))
        related = (df["kind"] == "related").to_numpy()
        df.loc[related, "stance"] = labels
        df.loc[related, "stance_score"] = scores.round(4)
    return df[PREDICTION_COLUMNS]


def evaluate(model: Model, corpus: Corpus, embedder: Embedder | None = None, quiet: bool = False) -> dict:
    """Scores of the model on labelled data: topic, clustering and stance reports."""
    embedder = embedder or make_embedder(model.config, quiet)
    start = time.perf_counter()
    report: dict = {"data": {"topic_texts": len(corpus.texts), "stance_pairs": len(corpus.pairs)}}
    if corpus.texts and (model.topic is not None or model.clusterer is not None):
        X = embedder.encode(corpus.texts)
        if model.topic is not None:
            report["topic"] = class_report(corpus.topics, model.topic.predict(X).tolist(), model.topics)
        if model.clusterer is not None:
            ids = model.clusterer.predict(X)
            report["clustering"] = clustering_report(corpus.topics, ids)
            topic_of = dict(zip(model.clusterer.cluster_ids_.tolist(), model.clusterer.cluster_topics_))
            named = [topic_of[int(i)] for i in ids]  # None for clusters that match no topic
            report["clustering"]["named_accuracy"] = float(np.mean([n == g for n, g in zip(named, corpus.topics)]))
    if corpus.pairs and model.stance is not None:
        heads = [p.headline for p in corpus.pairs]
        bodies = [p.body for p in corpus.pairs]
        t = time.perf_counter()
        pred = stance_predict(model, heads, bodies, embedder.encode)[0].tolist()
        seconds = time.perf_counter() - t
        gold = [p.label for p in corpus.pairs]
        report["stance"] = class_report(gold, pred, model.stances)
        report["stance"]["pairs_per_second"] = round(len(gold) / max(seconds, 1e-9), 1)
        if model.config.labels.unrelated:
            report["stance"]["fnc_score"] = fnc_score(gold, pred, model.config.labels.unrelated)
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report
