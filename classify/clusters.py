"""Clustering of embeddings (UMAP, then KMeans or HDBSCAN), cluster names and keywords, and the 2-D map.

BERTopic-style pluggable parts: a reducer and a clusterer can be passed in; defaults are built in ``fit``.
New texts are placed by their nearest training texts (in the embedding space), so a text gets the same
cluster and map position alone or in a batch, and a model needs no UMAP object to predict.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin, clone
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.metrics import silhouette_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import normalize
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

NOISE = -1
AUTO_MAX_CLUSTERS = 30
"""``n_clusters="auto"`` tries k = 2 .. min(AUTO_MAX_CLUSTERS, n / AUTO_MIN_PER_CLUSTER) (at least 2)."""
AUTO_MIN_PER_CLUSTER = 5
SILHOUETTE_SAMPLE = 5000
"""Silhouette scores on more points use a seeded sample of this many (the score is O(n²))."""
NAME_KEYWORDS = 3
"""A cluster without topic labels is named after its first keywords: ``drone · shahed · kyiv``."""


def auto_k_range(n: int) -> range:
    """The k ``n_clusters="auto"`` tries for ``n`` texts: 2 .. min(30, n // 5), at least 2, at most n - 1."""
    return range(2, max(2, min(AUTO_MAX_CLUSTERS, n // AUTO_MIN_PER_CLUSTER, n - 1)) + 1)


def silhouette(Z, labels, metric: str = "euclidean", random_state: int = 0) -> float | None:
    """Mean silhouette of the non-noise points (None with fewer than 2 clusters or one point per cluster);
    over a seeded sample of ``SILHOUETTE_SAMPLE`` points when there are more."""
    labels = np.asarray(labels)
    keep = labels != NOISE
    Z, labels = np.asarray(Z)[keep], labels[keep]
    k = len(np.unique(labels))
    if k < 2 or k > len(labels) - 1:
        return None
    sample = SILHOUETTE_SAMPLE if len(labels) > SILHOUETTE_SAMPLE else None
    return float(silhouette_score(Z, labels, metric=metric, sample_size=sample, random_state=random_state))


def make_reducer(n_components=5, n_neighbors=15, min_dist=0.0, metric="cosine", random_state=0, verbose=False):
    """UMAP; ``verbose``: its timed steps and an epoch bar (on stderr through ``fit_reducer``), for fits that may
    take minutes on large data."""
    from umap import UMAP  # imported lazily: numba compilation takes seconds

    return UMAP(n_components=n_components, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric,
                random_state=random_state, n_jobs=1, verbose=verbose,
                tqdm_kwds={"desc": f"UMAP to {n_components}-D, epochs", "disable": not verbose})


def fit_reducer(reducer, X):
    """``reducer.fit_transform(X)`` with anything it prints (UMAP's verbose steps) sent to stderr, never into a
    command's output on stdout."""
    with contextlib.redirect_stdout(sys.stderr):
        return reducer.fit_transform(X)


def lsa_features(texts: list[str], n_components: int, random_state: int = 0) -> np.ndarray:
    """TF-IDF → truncated SVD, L2-normalised: lexical topic signal to append to embeddings."""
    try:
        tfidf = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=2, max_df=0.5).fit_transform(texts)
    except ValueError:  # too few texts or words for any term to pass min_df / max_df: no lexical dimensions
        return np.zeros((len(texts), 0), dtype=np.float32)
    k = min(n_components, tfidf.shape[1] - 1, tfidf.shape[0] - 1)
    if k < 1:
        return np.zeros((len(texts), 0), dtype=np.float32)
    return normalize(TruncatedSVD(k, random_state=random_state).fit_transform(tfidf)).astype(np.float32)


class TopicClusterer(ClusterMixin, BaseEstimator):
    """Cluster embeddings and name the clusters after the topics of their members.

    ``fit(X, y=None, features=None)``: ``X`` are the (normalised) embeddings; ``y`` (alias ``topics=``) are
    their topics, which name the clusters; ``features``, if given, replace ``X`` as the clustering input
    (e.g. embeddings + LSA).
    The given ``reducer`` and ``clusterer`` are templates: ``fit`` fits clones of them, never the objects
    themselves. ``predict(X)``: majority cluster of the ``knn`` nearest training embeddings (the index,
    ``knn_``, is built by ``fit`` or ``set_reference``; ``predict`` changes nothing).

    ``n_clusters="auto"`` (KMeans): k is the one of ``auto_k_range(n)`` with the best silhouette on the space
    the clusterer clusters in (the reducer's output, euclidean; without a reducer the features, cosine); ties go
    to the smaller k. ``n_clusters_`` is the k used, ``k_scores_`` the silhouette of each k tried.
    ``texts`` (optional in ``fit``) give each cluster its class-based TF-IDF ``keywords_``; a cluster with no
    topic-labelled member is named after its first ``NAME_KEYWORDS`` keywords.
    """

    def __init__(self, algorithm="kmeans", n_clusters=4, min_cluster_size=15, reducer=None, clusterer=None,
                 use_reducer=True, knn=15, min_purity=0.5, n_keywords=8, random_state=0):
        self.algorithm = algorithm
        self.n_clusters = n_clusters
        self.min_cluster_size = min_cluster_size
        self.reducer = reducer
        self.clusterer = clusterer
        self.use_reducer = use_reducer
        self.knn = knn
        self.min_purity = min_purity
        self.n_keywords = n_keywords
        self.random_state = random_state

    def _clusterer(self, k=None):
        if self.clusterer is not None:
            return clone(self.clusterer)
        if self.algorithm == "hdbscan":
            return HDBSCAN(min_cluster_size=self.min_cluster_size)
        return KMeans(k or self.n_clusters, n_init=10, random_state=self.random_state)

    @property
    def space_metric(self) -> str:
        """The distance of the space the clusterer clusters in (what silhouettes are computed with)."""
        return "euclidean" if self.use_reducer else "cosine"

    def _auto_k(self, Z) -> np.ndarray:
        """KMeans for every k of ``auto_k_range``; keeps the labels of the best silhouette."""
        self.k_scores_, best, best_labels = {}, None, None
        for k in auto_k_range(len(Z)):
            labels = self._clusterer(k).fit_predict(Z)
            score = silhouette(Z, labels, self.space_metric, self.random_state)
            self.k_scores_[k] = None if score is None else round(score, 4)
            if score is not None and (best is None or score > best + 1e-12):
                best, best_labels = score, labels
        if best_labels is None:  # every k gave a single cluster (identical points): keep k = 2
            best_labels = self._clusterer(2).fit_predict(Z)
        return best_labels

    def fit(self, X, y=None, features=None, *, topics=None, texts=None):
        X = validate_data(self, X, dtype=np.float32)
        if len(X) < 2:
            raise ValueError(f"TopicClusterer needs at least 2 samples, got {len(X)} sample")
        if topics is None:
            topics = y
        if topics is not None:
            topics = list(np.asarray(topics, dtype=object).tolist())
            if len(topics) != len(X):
                raise ValueError(f"{len(topics)} topics for {len(X)} samples")
            if all(t is None for t in topics):
                topics = None
        if texts is not None and len(texts) != len(X):
            raise ValueError(f"{len(texts)} texts for {len(X)} samples")
        Z = X
        if features is not None:
            Z = check_array(features, dtype=np.float32)
            if len(Z) != len(X):
                raise ValueError(f"features has {len(Z)} rows for {len(X)} samples")
        if self.use_reducer:
            reducer = clone(self.reducer) if self.reducer is not None else make_reducer(random_state=self.random_state)
            Z = fit_reducer(reducer, Z)
        self.k_scores_ = {}
        if self.n_clusters == "auto" and self.algorithm == "kmeans" and self.clusterer is None:
            labels = self._auto_k(Z)
        else:
            labels = self._clusterer().fit_predict(Z)
        labels = np.asarray(labels, dtype=np.int64)
        self.n_clusters_ = int(len(set(labels.tolist()) - {NOISE}))
        self.silhouette_ = silhouette(Z, labels, self.space_metric, self.random_state)
        self.set_reference(X, labels)
        self.keywords_ = cluster_keywords(list(texts), labels, self.n_keywords) if texts is not None else {}
        self._name(topics)
        return self

    def set_reference(self, X, labels):
        """The training embeddings and their clusters that ``predict`` looks up (builds ``knn_``)."""
        self.reference_ = np.asarray(X, dtype=np.float32)
        self.labels_ = np.asarray(labels, dtype=np.int64)
        k = min(self.knn, len(self.reference_))
        self.knn_ = KNeighborsClassifier(k, metric="cosine", algorithm="brute").fit(self.reference_, self.labels_)
        self.n_features_in_ = self.reference_.shape[1]
        return self

    def _name(self, topics):
        ids = sorted(set(self.labels_.tolist()))
        self.cluster_ids_ = np.array(ids, dtype=np.int64)
        self.cluster_topics_, self.cluster_purity_, names = [], [], []
        keywords = getattr(self, "keywords_", {})
        for cid in ids:
            members = [t for t, c in zip(topics, self.labels_) if c == cid and t is not None] if topics is not None else []
            topic, count = Counter(members).most_common(1)[0] if members else (None, 0)
            purity = count / max(len(members), 1)
            keep = cid != NOISE and topic is not None and purity >= self.min_purity
            self.cluster_topics_.append(topic if keep else None)
            self.cluster_purity_.append(round(purity, 3))
            if cid == NOISE:
                names.append("noise")
            elif keep:
                names.append(topic)
            elif not members and keywords.get(cid):  # no topic labels here: named by its keywords
                names.append(" · ".join(keywords[cid][:NAME_KEYWORDS]))
            else:
                names.append(f"cluster {cid}")
        # Two clusters of one topic: number them so each name stays unique.
        totals = Counter(names)
        seen: Counter = Counter()
        self.cluster_names_ = []
        for name in names:
            seen[name] += 1
            self.cluster_names_.append(f"{name} #{seen[name]}" if totals[name] > 1 else name)
        return self

    def predict(self, X):
        check_is_fitted(self, "knn_")
        X = validate_data(self, X, dtype=np.float32, reset=False)
        return self.knn_.predict(X)

    def names_of(self, cluster_ids) -> list[str]:
        lookup = dict(zip(self.cluster_ids_.tolist(), self.cluster_names_))
        return [lookup[int(c)] for c in cluster_ids]


class MapProjector(TransformerMixin, BaseEstimator):
    """2-D map of the training embeddings (UMAP, or PCA for a quick look); new points sit at the
    similarity-weighted mean of their ``knn`` nearest training points (as UMAP initialises ``transform``)."""

    def __init__(self, method="umap", n_neighbors=15, min_dist=0.1, knn=10, random_state=0, verbose=False):
        self.method = method
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.knn = knn
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float32)
        if X.shape[1] < 2:
            raise ValueError(f"MapProjector needs at least 2 features, got {X.shape[1]} feature(s)")
        if X.shape[0] < 2:
            raise ValueError(f"MapProjector needs at least 2 samples, got {X.shape[0]} sample")
        if self.method == "pca":
            reducer = PCA(2, random_state=self.random_state)
        else:
            reducer = make_reducer(2, min(self.n_neighbors, len(X) - 1), self.min_dist, "cosine", self.random_state,
                                   self.verbose)
        self.coords_ = fit_reducer(reducer, X).astype(np.float32)
        self.reference_ = X
        return self

    def transform(self, X):
        check_is_fitted(self, "coords_")
        X = validate_data(self, X, dtype=np.float32, reset=False)
        sims = X @ self.reference_.T
        k = min(self.knn, sims.shape[1])
        idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        w = np.clip(np.take_along_axis(sims, idx, axis=1), 1e-3, None) ** 4
        return (self.coords_[idx] * w[..., None]).sum(axis=1) / w.sum(axis=1, keepdims=True)


MIN_LIFT = 2.0
"""A keyword is at least this many times as frequent (per word) in its cluster as in the other clusters."""


def cluster_keywords(texts: list[str], labels, top_n: int = 8, min_lift: float = MIN_LIFT) -> dict[int, list[str]]:
    """Class-based TF-IDF (as in BERTopic): words frequent in one cluster and rare across clusters.

    Each cluster's texts are one document; a word's score in cluster c is tf(w, c) * log(1 + A / f(w)): its count
    in c over the words of c, times the log of 1 + the average number of words per cluster over its count in all
    clusters. Ranked by that score, a word is kept only if its rate in c is at least ``min_lift`` times its rate in
    the other clusters: the score alone lets a very frequent word spread over every cluster ("said") outrank
    a cluster's own words when there are few clusters. ``min_lift=0``: the score alone."""
    labels = np.asarray(labels)
    ids = sorted(set(labels.tolist()))
    docs = [" ".join(t for t, c in zip(texts, labels) if c == cid) for cid in ids]
    try:
        vec = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[A-Za-z][A-Za-z\-]+\b", ngram_range=(1, 1))
        counts = vec.fit_transform(docs).toarray().astype(float)
    except ValueError:  # no words at all
        return {cid: [] for cid in ids}
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    avg = counts.sum() / max(len(ids), 1)
    idf = np.log(1 + avg / np.maximum(counts.sum(axis=0), 1))
    scores = tf * idf
    if len(ids) > 1:  # over-represented in the cluster: rate here >= min_lift x rate in the other clusters
        rest = counts.sum(axis=0, keepdims=True) - counts
        rest_rate = rest / np.maximum(rest.sum(axis=1, keepdims=True), 1)
        scores[tf < min_lift * rest_rate] = 0
    words = vec.get_feature_names_out()
    return {cid: [words[j] for j in np.argsort(-scores[i], kind="stable") if scores[i, j] > 0][:top_n]
            for i, cid in enumerate(ids)}


def representatives(X, labels, texts: list[str], n: int = 3) -> dict[int, list[str]]:
    """The texts nearest each cluster's centroid."""
    labels = np.asarray(labels)
    out = {}
    for cid in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == cid)
        centre = normalize(X[idx].mean(axis=0, keepdims=True))[0]
        best = idx[np.argsort(-(X[idx] @ centre), kind="stable")[:n]]
        out[cid] = [texts[i] for i in best]
    return out
