"""Are the held-out stance events new? For every test headline, its nearest training headline by cosine of the
embeddings (all-MiniLM-L6-v2), over both stance corpora and the labelled dumps.

    python benchmarks/paraphrase_check.py [--config configs/default.yaml] [--show 15]

Prints the distribution of the nearest-neighbour cosine and the closest pairs, so a reader can see that test
headlines are not paraphrases of training ones (the split is by event: data/README.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from classify.config import load_config
from classify.data import load_corpus
from classify.pipeline import make_embedder

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    ap.add_argument("--show", type=int, default=15, help="closest test/train pairs to print")
    args = ap.parse_args()
    config = load_config(args.config)
    train = list(dict.fromkeys(p.headline for p in load_corpus(config.data.train, config).pairs))
    test = list(dict.fromkeys(p.headline for p in load_corpus(config.data.test, config).pairs))
    embed = make_embedder(config, quiet=True).encode
    sims = embed(test) @ embed(train).T
    best = sims.argmax(axis=1)
    nearest = sims[np.arange(len(test)), best]
    print(f"{len(test)} test headlines vs {len(train)} training headlines (cosine of the nearest training headline)")
    qs = np.quantile(nearest, [0.5, 0.9, 1.0])
    print(f"median {qs[0]:.3f}  90th percentile {qs[1]:.3f}  max {qs[2]:.3f}")
    for t in (0.6, 0.7, 0.8, 0.9):
        print(f"  >= {t:.1f}: {int((nearest >= t).sum())} test headlines")
    print(f"\nclosest {args.show} pairs:")
    for i in np.argsort(-nearest)[: args.show]:
        print(f"  {nearest[i]:.3f}  test: {test[i][:70]}\n         train: {train[best[i]][:70]}")


if __name__ == "__main__":
    main()
