"""Target stance (favor / against / none): classify's built-in defaults against plain peers, on the team's
target corpus (data/targets/, split by event).

Peers, fitted on the same training split and the same MiniLM embeddings the toolkit uses:
- logistic regression on the text embedding (C = 1),
- logistic regression on [target embedding, text embedding] (C = 1),
- TF-IDF (word 1-2 grams of target + text) with a linear SVM.
classify: `classify train configs/targets.yaml` (only the labels and data set; every other setting is the
built-in default) scored as `classify evaluate` scores it. Prints F_avg (mean F1 of favor and against, the
SemEval-2016 score) and macro-F1 on the held-out events, and the training time.

    python benchmarks/targets.py [--config configs/targets.yaml] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "targets.yaml"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()

    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.svm import LinearSVC

    from classify.config import load_config
    from classify.data import load_corpus
    from classify.metrics import f_avg
    from classify.pipeline import evaluate, make_embedder, train

    config = load_config(args.config, args.overrides)
    train_c, test_c = load_corpus(config.data.train, config), load_corpus(config.data.test, config)
    y_tr = np.array([p.label for p in train_c.pairs])
    y_te = np.array([p.label for p in test_c.pairs])
    embed = make_embedder(config, quiet=True).encode

    def side(corpus):
        return [p.headline for p in corpus.pairs], [p.body for p in corpus.pairs]

    (t_tr, x_tr), (t_te, x_te) = side(train_c), side(test_c)
    rows = []

    def score(name, pred, seconds):
        rows.append((name, f_avg(y_te, pred), f1_score(y_te, pred, average="macro"), seconds))

    for name, feats in (("LR on text embedding", lambda t, x: embed(x)),
                        ("LR on [target, text] embeddings", lambda t, x: np.hstack([embed(t), embed(x)]))):
        start = time.perf_counter()
        clf = LogisticRegression(C=1.0, max_iter=2000).fit(feats(t_tr, x_tr), y_tr)
        score(name, clf.predict(feats(t_te, x_te)), time.perf_counter() - start)
    start = time.perf_counter()
    tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    joined = lambda t, x: [f"{a} || {b}" for a, b in zip(t, x)]  # noqa: E731
    svm = LinearSVC(C=1.0).fit(tfidf.fit_transform(joined(t_tr, x_tr)), y_tr)
    score("TF-IDF linear SVM", svm.predict(tfidf.transform(joined(t_te, x_te))), time.perf_counter() - start)

    start = time.perf_counter()
    model = train(config, quiet=True)
    seconds = time.perf_counter() - start
    report = evaluate(model, test_c, quiet=True)["stance"]
    rows.append(("classify (built-in defaults)", report["f_avg"], report["macro_f1"], seconds))

    print(f"target stance: {len(y_tr)} training / {len(y_te)} held-out items, "
          f"{len(set(t_tr))} targets, held-out events unseen in training")
    print(f"{'model':36s} {'F_avg':>6s} {'macro-F1':>9s} {'fit s':>7s}")
    for name, fa, mf, s in rows:
        print(f"{name:36s} {100 * fa:6.1f} {100 * mf:9.1f} {s:7.1f}")


if __name__ == "__main__":
    main()
