"""Hand-computed expectations: these fail when the logic breaks, not only when the plumbing does.

Each expectation below is worked out by hand in its comment; none is read back from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.decomposition import PCA
from sklearn.utils.estimator_checks import parametrize_with_checks

from classify.clusters import MapProjector, TopicClusterer, cluster_keywords, representatives
from classify.metrics import class_report, clustering_accuracy, clustering_report, fnc_score


# --------------------------------------------------------------------------------------------------------------
# metrics.fnc_score


def test_fnc_score_by_hand():
    gold = ["agree", "disagree", "unrelated", "discuss", "unrelated", "agree"]
    pred = ["agree", "discuss", "unrelated", "unrelated", "agree", "disagree"]
    # related/unrelated right: 1 (rel/rel), 2 (rel/rel), 3 (unr/unr), 6 (rel/rel) -> 4 x 0.25 = 1.0
    # exact label of a related gold pair: 1 only -> 0.75;  raw = 1.75
    # max: 6 x 0.25 + 4 related gold x 0.75 = 1.5 + 3.0 = 4.5
    s = fnc_score(gold, pred)
    assert s == {"raw": 1.75, "max": 4.5, "relative": pytest.approx(1.75 / 4.5)}


def test_fnc_score_edges():
    assert fnc_score(["unrelated"] * 3, ["unrelated"] * 3) == {"raw": 0.75, "max": 0.75, "relative": 1.0}
    assert fnc_score(["unrelated", "agree"], ["agree", "unrelated"]) == {"raw": 0.0, "max": 1.25, "relative": 0.0}
    # an exactly right unrelated pair earns only the 0.25 (never the 0.75)
    assert fnc_score(["agree", "unrelated"], ["agree", "unrelated"])["raw"] == 0.25 + 0.75 + 0.25
    # another name for "unrelated"
    s = fnc_score(["none", "favor", "against"], ["none", "favor", "favor"], unrelated="none")
    assert s == {"raw": 0.25 * 3 + 0.75, "max": 0.25 * 3 + 0.75 * 2, "relative": pytest.approx(1.5 / 2.25)}
    assert fnc_score([], [])["relative"] == 0.0


# --------------------------------------------------------------------------------------------------------------
# metrics.class_report: gold and predicted must not be swapped


def test_class_report_asymmetric_confusion():
    gold = ["a", "a", "a", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    # rows gold, columns predicted (labels a, b, c):
    #   a: 1 a, 2 b      b: 1 b      c: 1 a
    r = class_report(gold, pred, ["a", "b", "c"])
    assert r["confusion"] == {"labels": ["a", "b", "c"], "matrix": [[1, 2, 0], [0, 1, 0], [1, 0, 0]]}
    assert r["n"] == 5 and r["accuracy"] == pytest.approx(2 / 5)
    a, b, c = (r["per_class"][k] for k in "abc")
    # a: predicted a twice (1 right) -> precision 1/2; gold a 3 times (1 found) -> recall 1/3; f1 = 2/5
    assert (a["precision"], a["recall"], a["f1-score"], a["support"]) == pytest.approx((0.5, 1 / 3, 0.4, 3))
    # b: predicted 3 times (1 right) -> 1/3; gold once, found -> 1; f1 = 0.5
    assert (b["precision"], b["recall"], b["f1-score"], b["support"]) == pytest.approx((1 / 3, 1.0, 0.5, 1))
    # c: never predicted -> precision 0 (zero_division=0), recall 0, support 1
    assert (c["precision"], c["recall"], c["f1-score"], c["support"]) == (0.0, 0.0, 0.0, 1.0)
    assert r["macro_f1"] == pytest.approx((0.4 + 0.5 + 0.0) / 3)


def test_class_report_label_order_is_the_given_one():
    r = class_report(["x", "y", "y"], ["y", "y", "y"], ["y", "x"])
    assert r["confusion"]["matrix"] == [[2, 0], [1, 0]]
    assert list(r["per_class"]) == ["y", "x"]


# --------------------------------------------------------------------------------------------------------------
# metrics.clustering_accuracy / clustering_report


def test_clustering_accuracy_by_hand():
    gold = ["x", "x", "x", "y", "y", "z"]
    clusters = [1, 1, 2, 2, 2, 3]
    # table (cluster x class): 1 -> x:2;  2 -> x:1, y:2;  3 -> z:1.  Best one-to-one: 1-x, 2-y, 3-z = 5 of 6
    assert clustering_accuracy(gold, clusters) == pytest.approx(5 / 6)
    # the greedy choice 2-x would be worse; a matching is one-to-one: two clusters cannot both take x
    assert clustering_accuracy(["x", "x", "y", "y"], [0, 1, 2, 3]) == pytest.approx(2 / 4)
    assert clustering_accuracy(["a", "b", "a", "b"], [5, 5, 5, 5]) == pytest.approx(2 / 4)
    assert clustering_accuracy(["a", "b", "c"], [9, 8, 7]) == 1.0


def test_clustering_report_by_hand():
    r = clustering_report(["a", "a", "b", "b"], [1, 1, 0, 0])
    assert r == {"n": 4, "nmi": pytest.approx(1.0), "ari": pytest.approx(1.0), "accuracy": 1.0}
    r = clustering_report(["a", "b", "a", "b"], [0, 0, 1, 1])
    assert r["nmi"] == pytest.approx(0.0, abs=1e-12) and r["accuracy"] == 0.5 and r["ari"] < 0


# --------------------------------------------------------------------------------------------------------------
# clusters.TopicClusterer: names, min_purity, cloning, prediction


class FixedClusterer(ClusterMixin, BaseEstimator):
    """Returns the given labels: lets a test choose the clusters."""

    def __init__(self, labels=()):
        self.labels = labels

    def fit(self, X, y=None):
        self.labels_ = np.asarray(self.labels)
        self.fitted_on_ = len(X)
        return self


def _fixed(labels, min_purity=0.5, knn=1):
    return TopicClusterer(clusterer=FixedClusterer(tuple(labels)), use_reducer=False, min_purity=min_purity, knn=knn)


X8 = np.eye(8, dtype=np.float32)


def test_cluster_names_and_purity_by_hand():
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    topics = ["a", "a", "a", "b", "b", "b", "c", "c"]
    # cluster 0: a a a b -> a, purity 0.75;  cluster 1: b b c c -> tie, b first seen, purity 0.5
    c = _fixed(labels, min_purity=0.5).fit(X8, topics)
    assert c.cluster_ids_.tolist() == [0, 1]
    assert c.cluster_purity_ == [0.75, 0.5]
    assert c.cluster_topics_ == ["a", "b"] and c.cluster_names_ == ["a", "b"]  # 0.5 >= 0.5: named
    c = _fixed(labels, min_purity=0.6).fit(X8, topics)
    assert c.cluster_topics_ == ["a", None] and c.cluster_names_ == ["a", "cluster 1"]
    c = _fixed(labels, min_purity=0.8).fit(X8, topics)
    assert c.cluster_topics_ == [None, None] and c.cluster_names_ == ["cluster 0", "cluster 1"]
    c = _fixed(labels, min_purity=0.0).fit(X8, topics)
    assert c.cluster_names_ == ["a", "b"]


def test_two_clusters_of_one_topic_and_noise():
    c = _fixed([0, 0, 2, 2, -1, -1, 5, 5]).fit(X8, ["a", "a", "a", "a", "a", "a", "b", "c"])
    assert c.cluster_ids_.tolist() == [-1, 0, 2, 5]
    # cluster 5 holds b and c once each: purity 0.5 >= min_purity 0.5 -> named after b (the first seen)
    assert c.cluster_names_ == ["noise", "a #1", "a #2", "b"]


def test_two_clusters_of_one_topic_and_noise_names():
    c = _fixed([0, 0, 2, 2, -1, -1, 5, 5, 5], min_purity=0.6).fit(np.eye(9, dtype=np.float32),
                                                                    ["a", "a", "a", "a", "a", "a", "b", "c", "c"])
    # noise is never named after a topic; two 'a' clusters are numbered; cluster 5 is c with 2/3 >= 0.6
    assert c.cluster_names_ == ["noise", "a #1", "a #2", "c"]
    assert c.cluster_topics_ == [None, "a", "a", "c"]
    assert c.names_of([5, -1, 2]) == ["c", "noise", "a #2"]


def test_predict_is_the_majority_of_the_nearest_training_texts():
    X = np.array([[1, 0], [0.9, 0.1], [0.8, 0.2], [0, 1], [0.1, 0.9]], dtype=np.float32)
    c = _fixed([0, 0, 1, 1, 1], knn=3).fit(X, None)
    # [1, 0.05]: nearest by cosine are rows 0, 1, 2 -> clusters 0, 0, 1 -> 0
    # [0.3, 1]: nearest are rows 4, 3, 2 -> 1, 1, 1 -> 1
    assert c.predict(np.array([[1, 0.05], [0.3, 1]], dtype=np.float32)).tolist() == [0, 1]


def test_fit_clones_the_given_reducer_and_clusterer():
    reducer, clusterer = PCA(2), FixedClusterer((0, 0, 0, 0, 1, 1, 1, 1))
    TopicClusterer(reducer=reducer, clusterer=clusterer, knn=1).fit(X8, list("aaaabbbb"))
    assert not hasattr(reducer, "components_") and not hasattr(clusterer, "labels_")


def test_set_params_then_fit_is_not_stale():
    c = _fixed([0, 0, 0, 0, 1, 1, 1, 1], knn=1).fit(X8, None)
    assert c.predict(X8[:1]).tolist() == [0]
    c.set_params(clusterer=FixedClusterer((1, 1, 1, 1, 0, 0, 0, 0)), knn=2).fit(X8, None)
    assert c.knn_.n_neighbors == 2
    assert c.predict(X8[:1]).tolist() == [1]
    before = dict(vars(c))
    c.predict(X8)
    assert set(vars(c)) == set(before)  # predict builds and caches nothing


# --------------------------------------------------------------------------------------------------------------
# clusters.MapProjector: the weighted mean of the neighbours' map positions


def test_map_projection_by_hand():
    ref = np.eye(3, dtype=np.float32)
    m = MapProjector(method="pca", knn=2).fit(ref)
    m.coords_ = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float32)
    q = np.array([[2, 1, 0]], dtype=np.float32) / math.sqrt(5)
    # similarities 2/sqrt5, 1/sqrt5, 0; the 2 nearest are rows 0 and 1; weights sim^4 = 16/25, 1/25
    # -> (16 * (0, 0) + 1 * (10, 0)) / 17 = (10/17, 0)
    np.testing.assert_allclose(m.transform(q), [[10 / 17, 0]], rtol=1e-5)
    # a training point sits on itself when its neighbours are far: e3 with knn=2 -> e3 weight 1, others clipped
    np.testing.assert_allclose(m.transform(ref[2:]), [[0, 10 / (1 + 1e-12)]], rtol=1e-5)
    # knn=3: q's third neighbour (sim 0) gets the floor weight 1e-3 ** 4
    m.set_params(knn=3)
    w = np.array([16 / 25, 1 / 25, 1e-12])
    np.testing.assert_allclose(m.transform(q), [(w[:, None] * m.coords_).sum(0) / w.sum()], rtol=1e-5)


def test_map_of_the_training_texts_is_not_flat():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 5)).astype(np.float32)
    m = MapProjector(method="pca", knn=5).fit(X)
    assert m.coords_.shape == (30, 2) and np.abs(m.coords_).sum() > 0 and m.coords_.std(axis=0).min() > 0
    assert np.abs(m.transform(X[:3])).sum() > 0


# --------------------------------------------------------------------------------------------------------------
# clusters.cluster_keywords and representatives


def test_cluster_keywords_by_hand():
    texts = ["missile strike kyiv", "missile attack kyiv", "tax budget chancellor", "tax rise budget"]
    # counts: cluster 0: missile 2, kyiv 2, strike 1, attack 1 (6 words); cluster 1: tax 2, budget 2,
    # chancellor 1, rise 1 (6 words). avg words per cluster 6; idf = log(1 + 6 / total count of the word):
    # 2-count words log 4 = 1.386 -> tf*idf = 2/6 * 1.386 = 0.462; 1-count words log 7 -> 1/6 * 1.946 = 0.324.
    # Ties keep the vocabulary's (alphabetical) order; words absent from a cluster score 0 and are dropped.
    kw = cluster_keywords(texts, [0, 0, 1, 1], top_n=8)
    assert kw == {0: ["kyiv", "missile", "attack", "strike"], 1: ["budget", "tax", "chancellor", "rise"]}
    assert cluster_keywords(texts, [0, 0, 1, 1], top_n=1) == {0: ["kyiv"], 1: ["budget"]}


def test_cluster_keywords_shared_words_rank_lower():
    texts = ["war news war", "war report", "budget news", "budget vote"]
    # 'news' is in both clusters: its idf is log(1 + 3 / 2) < 'report' / 'vote' log(1 + 3 / 1)
    kw = cluster_keywords(texts, [0, 0, 1, 1], min_lift=0)  # the score alone
    assert kw[0][0] == "war" and kw[1][0] == "budget"
    assert kw[0].index("report") < kw[0].index("news") and kw[1].index("vote") < kw[1].index("news")
    # ... and, at 1/5 of cluster 0's words and 1/4 of cluster 1's, it is not over-represented in either: dropped
    assert cluster_keywords(texts, [0, 0, 1, 1]) == {0: ["war", "report"], 1: ["budget", "vote"]}


def test_cluster_keywords_drop_a_frequent_word_spread_over_every_cluster():
    # 'said' is the most frequent word of each cluster: c-TF-IDF alone ranks it first in both
    # (half of the 8 words of each cluster: 4/8 * log(1 + 8/8) = 0.347 > 1/8 * log(1 + 8/1) = 0.275)
    texts = ["said said drone kyiv", "said said strike shahed", "said said tax budget", "said said vote rise"]
    assert cluster_keywords(texts, [0, 0, 1, 1], min_lift=0)[0][0] == "said"
    kw = cluster_keywords(texts, [0, 0, 1, 1])
    assert kw == {0: ["drone", "kyiv", "shahed", "strike"], 1: ["budget", "rise", "tax", "vote"]}


def test_cluster_keywords_without_words():
    assert cluster_keywords(["123", "456"], [0, 1]) == {0: [], 1: []}


def test_representatives_are_nearest_the_centroid():
    X = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1]], dtype=np.float32)
    # one cluster: the centroid points along (0.6, 0.6) -> the middle two rows first, then row 0 (tie broken by order)
    assert representatives(X, [0, 0, 0, 0], ["a", "b", "c", "d"], n=3) == {0: ["b", "c", "a"]}


# --------------------------------------------------------------------------------------------------------------
# scikit-learn's estimator checks


def _expected_failures(estimator):
    if isinstance(estimator, MapProjector):
        # The map is float32 by design (it is stored in reference.safetensors beside float32 embeddings).
        return {"check_transformer_preserve_dtypes": "map coordinates are float32 by design"}
    if isinstance(estimator, TopicClusterer) and estimator.use_reducer:
        # A 2-component reducer cannot reduce 1 feature; the error is the reducer's (PCA's) own message.
        return {"check_fit2d_1feature": "the given PCA(2) reducer refuses 1 feature with its own message"}
    return {}


@parametrize_with_checks(
    [TopicClusterer(n_clusters=3, use_reducer=False, knn=3),
     TopicClusterer(n_clusters=3, reducer=PCA(2), knn=3),
     MapProjector(method="pca", knn=3)],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_umap_progress_goes_to_stderr_and_leaves_the_map_alone(capsys):
    """``verbose`` maps show UMAP's steps on stderr (never stdout) and give the same coordinates as quiet ones."""
    X = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
    quiet = MapProjector(n_neighbors=5).fit(X)
    assert capsys.readouterr() == ("", "")
    shown = MapProjector(n_neighbors=5, verbose=True).fit(X)
    out, err = capsys.readouterr()
    assert out == "" and "UMAP" in err and "epochs" in err
    np.testing.assert_array_equal(shown.coords_, quiet.coords_)


def test_lsa_features_by_hand():
    from classify.clusters import lsa_features

    war = ["drone strike on kyiv power plant", "kyiv drone attack hits power grid", "missile and drone strike kyiv",
           "power cuts in kyiv after drone strike"]
    vote = ["tory leadership vote count tonight", "leadership vote for tory members", "tory members vote on leader",
            "count of the tory leadership vote"]
    Z = lsa_features(war + vote, n_components=2, random_state=0)
    assert Z.shape == (8, 2) and Z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-6)
    sims = Z @ Z.T
    # texts of one story are closer to each other than to any text of the other
    assert sims[:4, :4].min() > sims[:4, 4:].max() and sims[4:, 4:].min() > sims[:4, 4:].max()
    # asking for more components than the vocabulary allows gives the most there are (terms - 1, texts - 1)
    assert lsa_features(war + vote, n_components=50).shape[1] == 7
    np.testing.assert_array_equal(lsa_features(war + vote, 2, random_state=0), Z)  # seeded
    # too few texts or shared words for any LSA dimension: none (the embeddings alone are clustered)
    for texts in (["one text"], ["alpha beta", "gamma delta"], ["", ""],
                  ["alpha beta", "alpha gamma", "delta", "epsilon"]):  # one term passes min_df / max_df: k = 0
        out = lsa_features(texts, 100)
        assert out.shape == (len(texts), 0) and out.dtype == np.float32


def test_map_transform_by_hand_and_row_by_row():
    """A new point sits at the mean of its knn nearest training points' map positions, weighted by their
    similarity to the 4th power (floored at 1e-3); rows are placed one at a time, whatever the batch."""
    X = np.eye(4, dtype=np.float32)
    proj = MapProjector(method="pca", knn=2).fit(X)
    proj.coords_ = np.array([[0, 0], [10, 0], [0, 10], [5, 5]], dtype=np.float32)
    q = np.array([[0.8, 0.6, 0.0, 0.0], [0.0, 0.0, -0.6, 0.8], [0.0, 0.0, 0.0, -1.0]], dtype=np.float32)
    got = proj.transform(q)
    w = np.array([0.8 ** 4, 0.6 ** 4])
    np.testing.assert_allclose(got[0], (w[0] * np.array([0, 0]) + w[1] * np.array([10, 0])) / w.sum(), rtol=1e-5)
    # row 2: nearest are point 3 (0.8) then, among the tied zeros, the first (point 0); negatives floor at 1e-3
    w = np.array([0.8 ** 4, 1e-3 ** 4])
    np.testing.assert_allclose(got[1], (w[0] * np.array([5, 5]) + w[1] * np.array([0, 0])) / w.sum(), rtol=1e-5)
    np.testing.assert_allclose(got[2], [5.0, 0.0], rtol=1e-5)  # all dissimilar: the first two, equally weighted
    np.testing.assert_allclose(got, np.vstack([proj.transform(r[None]) for r in q]), rtol=1e-6)
    assert got.shape == (3, 2)


def test_lsa_features_are_sublinear_tfidf_without_stop_words_svd_and_unit_rows():
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    from classify.clusters import lsa_features

    texts = ["kyiv kyiv kyiv drone strike", "drone strike on kyiv", "tory vote tonight", "tory vote and count",
             "the the the kyiv vote", "drone count tonight", "strike count", "vote strike drone"]
    tfidf = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=2, max_df=0.5).fit_transform(texts)
    expected = normalize(TruncatedSVD(3, random_state=0).fit_transform(tfidf)).astype(np.float32)
    np.testing.assert_allclose(lsa_features(texts, 3), expected, rtol=1e-5, atol=1e-6)
    # the vocabulary (terms in 2+ texts, at most half of them) bounds the components: terms - 1
    assert lsa_features(texts, 50).shape == (8, tfidf.shape[1] - 1) and tfidf.shape[1] - 1 < len(texts) - 1


def test_make_reducer_settings():
    from classify.clusters import make_reducer

    p = make_reducer(3, 7, 0.2, "euclidean", 5, verbose=True).get_params()
    assert {k: p[k] for k in ("n_components", "n_neighbors", "min_dist", "metric", "random_state", "n_jobs",
                              "verbose")} == {"n_components": 3, "n_neighbors": 7, "min_dist": 0.2,
                                              "metric": "euclidean", "random_state": 5, "n_jobs": 1, "verbose": True}
    assert p["tqdm_kwds"] == {"desc": "UMAP to 3-D, epochs", "disable": False}
    d = make_reducer().get_params()
    assert {k: d[k] for k in ("n_components", "n_neighbors", "min_dist", "metric", "random_state", "verbose")} == \
        {"n_components": 5, "n_neighbors": 15, "min_dist": 0.0, "metric": "cosine", "random_state": 0, "verbose": False}
    assert d["tqdm_kwds"]["disable"] is True


def test_silhouette_by_reference():
    from sklearn.metrics import silhouette_score

    from classify.clusters import NOISE, silhouette

    rng = np.random.default_rng(0)
    Z = np.vstack([rng.normal(0, 0.3, (20, 2)), rng.normal(3, 0.3, (20, 2)), rng.normal(-3, 0.3, (5, 2))])
    labels = np.array([0] * 20 + [1] * 20 + [NOISE] * 5)
    keep = labels != NOISE
    assert silhouette(Z, labels) == pytest.approx(silhouette_score(Z[keep], labels[keep]))  # noise left out
    assert silhouette(Z, labels, "cosine") == pytest.approx(silhouette_score(Z[keep], labels[keep], metric="cosine"))
    assert silhouette(Z, np.zeros(45, int)) is None  # one cluster
    assert silhouette(Z[:3], np.array([0, 1, 2])) is None  # one point per cluster
    assert silhouette(Z[:3], np.array([0, 0, 1])) is not None
