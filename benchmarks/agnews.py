"""Clustering benchmark on real news: the 7,600 AG News test items (title + description) into 4 clusters,
without labels, scored against the labels. Reads ../shared/datasets/agnews/test.csv (never copied here).

Rows: the toolkit's own clustering path (classify.pipeline.build_clusterer + cluster_inputs, configured by
configs/agnews.yaml) and variants of it via --set, a TF-IDF + KMeans baseline, BERTopic on the same texts and
embeddings (if installed: pip install bertopic; never a dependency of the package), and a supervised
logistic-regression ceiling on the same embeddings (5-fold CV, uses labels). Each row: mean over seeds of
clustering accuracy (Hungarian matching), NMI, ARI; wall time and peak traced memory per run.

    python benchmarks/agnews.py [--seeds 0 1 2] [--no-bertopic]
"""

from __future__ import annotations

import argparse
import csv
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "agnews" / "test.csv"


def load_agnews(path: Path = DATA) -> tuple[list[str], np.ndarray]:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    texts = [f"{t.strip()}. {d.strip()}".replace("\\", " ") for _, t, d in rows]
    return texts, np.array([int(c) for c, _, _ in rows])


def measure(fn):
    tracemalloc.start()
    t = time.perf_counter()
    labels = fn()
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return labels, seconds, peak


def run(name, fn, gold, seeds, table):
    from classify.metrics import clustering_report

    scores = []
    for seed in seeds:
        labels, seconds, peak = measure(lambda: fn(seed))
        r = clustering_report(gold, labels)
        scores.append((r["accuracy"], r["nmi"], r["ari"], seconds, peak, len(set(np.asarray(labels).tolist()))))
    m = np.mean(scores, axis=0)
    table.append((name, *m))
    print(f"{name:58s} {m[0]:8.3f} {m[1]:6.3f} {m[2]:6.3f} {m[3]:8.1f} {m[4]:9.0f} {m[5]:9.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "agnews.yaml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--no-bertopic", action="store_true")
    args = ap.parse_args()

    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    from classify.config import load_config
    from classify.pipeline import build_clusterer, cluster_inputs, make_embedder

    texts, gold = load_agnews()
    base = load_config(args.config)
    t = time.perf_counter()
    X = make_embedder(base, quiet=True).encode(texts)
    print(f"{len(texts)} AG News texts, embeddings {X.shape} in {time.perf_counter() - t:.1f} s (0 s when cached)")
    print(f"{'method (mean of seeds ' + ' '.join(map(str, args.seeds)) + ')':58s} {'accuracy':>8s} {'NMI':>6s} {'ARI':>6s} "
          f"{'time s':>8s} {'peak MiB':>9s} {'clusters':>9s}")
    table = []

    def toolkit(overrides):
        def fit(seed):
            cfg = load_config(args.config, [f"seed={seed}", *overrides])
            return build_clusterer(cfg).fit(X, features=cluster_inputs(cfg, X, texts)).labels_
        return fit

    variants = [
        ("toolkit: KMeans(4) on raw embeddings", ["clustering.reducer=null", "clustering.lsa_components=0"]),
        ("toolkit: UMAP(5, cosine) + KMeans(4)", ["clustering.lsa_components=0"]),
        ("toolkit: embeddings + LSA(100) x0.5, KMeans(4)", ["clustering.reducer=null"]),
        ("toolkit: configs/agnews.yaml (embeddings + LSA, UMAP, KMeans)", []),
        ("toolkit: UMAP + HDBSCAN(min_cluster_size=100)", ["clustering.algorithm=hdbscan", "clustering.min_cluster_size=100",
                                                            "clustering.lsa_components=0"]),
    ]
    for name, overrides in variants:
        run(name, toolkit(overrides), gold, args.seeds, table)

    tfidf = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=2).fit_transform(texts)
    run("TF-IDF + KMeans(4)", lambda s: KMeans(4, n_init=10, random_state=s).fit_predict(tfidf), gold, args.seeds, table)

    if not args.no_bertopic:
        try:
            from bertopic import BERTopic
        except ImportError:
            print("BERTopic not installed (pip install bertopic): its rows are skipped")
        else:
            from umap import UMAP

            def bertopic(nr_topics):
                def fit(seed):
                    model = BERTopic(nr_topics=nr_topics, umap_model=UMAP(n_neighbors=15, n_components=5, min_dist=0.0,
                                                                           metric="cosine", random_state=seed))
                    topics, _ = model.fit_transform(texts, X)
                    return model.reduce_outliers(texts, topics) if nr_topics else topics
                return fit

            run("BERTopic nr_topics=5 (outlier topic counts) + reduce_outliers", bertopic(5), gold, args.seeds, table)
            run("BERTopic defaults (outliers kept as a cluster)", bertopic(None), gold, args.seeds, table)

    pred = cross_val_predict(LogisticRegression(C=4.0, max_iter=2000), X, gold, cv=5)
    print(f"{'supervised logistic regression, 5-fold CV (ceiling, uses labels)':58s} {np.mean(pred == gold):8.3f}")


if __name__ == "__main__":
    main()
