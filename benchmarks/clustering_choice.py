"""Which reducer should clustering use by default? The same KMeans under four settings, on three kinds of text:

  - the team corpus: the training topic texts of configs/default.yaml (data.train), 4 topics, short news texts;
  - AG News: the 7,600 test items (title + description), 4 classes (../shared/datasets/agnews/test.csv);
  - FNC-1 bodies: the 1,683 training bodies, whole articles (median ~300 words), embedded by chunks
    (`embedding.long_texts: chunk`). FNC-1 has no topics, so the groups to recover are its *claims*: two bodies
    belong to one claim when a headline is related (agree / disagree / discuss) to both; connected components of
    that relation with 2+ bodies are the groups, k = their number.

Settings (`clustering.*` overrides, each setting naming every key it varies): `reducer: null` (KMeans on the
embeddings, cosine-normalised), UMAP (the previous default: 5 dims, 15 neighbours, cosine), embeddings + LSA
(`lsa_components: 100`, `lsa_weight: 0.5`, no reducer), and UMAP over embeddings + LSA. Scores against the labels
(never used for fitting): NMI, ARI and clustering accuracy (Hungarian matching), mean over seeds; time per fit.

    python benchmarks/clustering_choice.py [--seeds 0 1] [--datasets corpus,agnews,fnc]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
UMAP = "clustering.reducer={n_components: 5, n_neighbors: 15, min_dist: 0.0, metric: cosine}"
VARIANTS = {  # every key set here, so the config's own clustering section does not leak into a variant
    "embeddings (reducer: null)": ["clustering.reducer=null", "clustering.lsa_components=0"],
    "UMAP": [UMAP, "clustering.lsa_components=0"],
    "embeddings + LSA": ["clustering.reducer=null", "clustering.lsa_components=100", "clustering.lsa_weight=0.5"],
    "UMAP over embeddings + LSA": [UMAP, "clustering.lsa_components=100", "clustering.lsa_weight=0.5"],
}


def team_corpus(config):
    from classify.data import load_corpus

    corpus = load_corpus(config.data.train, config)  # training texts only: the choice is made on them
    keep = [i for i, topic in enumerate(corpus.topics) if topic is not None]
    return [corpus.texts[i] for i in keep], np.array([corpus.topics[i] for i in keep])


def agnews():
    with open(SHARED / "agnews" / "test.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    return [f"{t.strip()}. {d.strip()}".replace("\\", " ") for _, t, d in rows], np.array([c for c, _, _ in rows])


def fnc_claims():
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    with open(SHARED / "fnc1" / "train_bodies.csv", encoding="utf-8", newline="") as fh:
        bodies = {int(r["Body ID"]): r["articleBody"] for r in csv.DictReader(fh)}
    ids = sorted(bodies)
    index = {b: i for i, b in enumerate(ids)}
    by_headline: dict[str, list[int]] = {}
    with open(SHARED / "fnc1" / "train_stances.csv", encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["Stance"] != "unrelated":
                by_headline.setdefault(r["Headline"], []).append(index[int(r["Body ID"])])
    rows, cols = [], []
    for members in by_headline.values():
        rows += [members[0]] * len(members)
        cols += members
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(ids), len(ids)))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    keep = [i for i in range(len(ids)) if sizes[labels[i]] >= 2]
    return [bodies[ids[i]] for i in keep], labels[keep]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--datasets", default="corpus,agnews,fnc")
    args = ap.parse_args()

    from classify.config import load_config
    from classify.metrics import clustering_report
    from classify.pipeline import build_clusterer, cluster_inputs, make_embedder

    base = load_config(args.config, ["stance.enabled=false"])
    loaders = {"corpus": ("team corpus", lambda: team_corpus(base), []),
               "agnews": ("AG News", agnews, []),
               "fnc": ("FNC-1 bodies (claims)", fnc_claims, ["embedding.long_texts=chunk"])}
    print(f"{'dataset':24s} {'setting':28s} {'NMI':>6s} {'ARI':>6s} {'accuracy':>8s} {'s/fit':>6s}")
    for key in args.datasets.split(","):
        name, load, embed_sets = loaders[key]
        texts, gold = load()
        k = len(set(gold.tolist()))
        cfg = load_config(args.config, ["stance.enabled=false", *embed_sets])
        t = time.perf_counter()
        X = make_embedder(cfg, quiet=True).encode(texts)
        print(f"{name}: {len(texts)} texts, {k} groups, embedded in {time.perf_counter() - t:.0f} s (cached: ~0)",
              flush=True)
        for setting, overrides in VARIANTS.items():
            scores = []
            for seed in args.seeds:
                c = load_config(args.config, ["stance.enabled=false", f"seed={seed}",
                                              f"clustering.n_clusters={k}", *overrides])
                t = time.perf_counter()
                labels = build_clusterer(c).fit(X, features=cluster_inputs(c, X, texts)).labels_
                r = clustering_report(gold, labels)
                scores.append((r["nmi"], r["ari"], r["accuracy"], time.perf_counter() - t))
            m = np.mean(scores, axis=0)
            print(f"{name:24s} {setting:28s} {m[0]:6.3f} {m[1]:6.3f} {m[2]:8.3f} {m[3]:6.1f}", flush=True)


if __name__ == "__main__":
    main()
