"""Stance accuracy on the page-shaped test records, by the writing round that produced them (data/README.md §5):
the first 46 pages, the third round's (ids pm, pn, pp, pr), the fourth round's (ps, pt, pv, py) and the fifth
round's (qa, qc, qe, qh). Shows whether a model trained with more rounds also got better on pages written before
them.

    python benchmarks/page_rounds.py MODEL_DIR [MODEL_DIR ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = {"pm": "third", "pn": "third", "pp": "third", "pr": "third",
          "ps": "fourth", "pt": "fourth", "pv": "fourth", "py": "fourth",
          "qa": "fifth", "qc": "fifth", "qe": "fifth", "qh": "fifth"}
GROUPS = ("first", "third", "fourth", "fifth")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--pages", default=str(ROOT / "data" / "stance" / "pages" / "test.jsonl"))
    args = ap.parse_args()

    from classify.dumps import join_text
    from classify.model import load_model
    from classify.pipeline import make_embedder, stance_predict

    records = [json.loads(line) for line in open(args.pages, encoding="utf-8") if line.strip()]
    rows = [(ROUNDS.get(r["id"][:2], "first"), r["headline"], join_text(s["title"], s.get("snippet")), s["stance"])
            for r in records for s in r["stories"]]
    group = np.array([g for g, *_ in rows])
    gold = np.array([label for *_, label in rows])
    print("| model | " + " | ".join(f"{g} pages: pairs, accuracy, related/unrelated" for g in GROUPS) + " |")
    print("|---" * (len(GROUPS) + 1) + "|")
    for folder in args.models:
        model = load_model(Path(folder))
        unrelated = model.config.labels.unrelated
        embedder = make_embedder(model.config, quiet=True)
        pred, _ = stance_predict(model, [h for _, h, _, _ in rows], [b for _, _, b, _ in rows], embedder.encode)
        cells = []
        for g in GROUPS:
            m = group == g
            if not m.any():
                cells.append("0")
                continue
            related = np.mean((gold[m] == unrelated) == (pred[m] == unrelated))
            cells.append(f"{m.sum()}, {np.mean(gold[m] == pred[m]):.3f}, {related:.3f}")
        print(f"| {folder} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
