"""Stance accuracy on the page-shaped test records, by the writing round that produced them (data/README.md §5):
the first 46 pages, the third round's (ids pm, pn, pp, pr), the fourth round's (ps, pt, pv, py) and the fifth
round's (qa, qc, qe, qh) and the sixth round's (ra, rc, re, rh: related stories about *another* occurrence that
speak to the headline's claim). Shows whether a model trained with more rounds also got better on pages written
before them. A second table gives the accuracy on the stories of each hard-case tag (data/README.md §2), e.g.
`other_event_on_claim` against `same_entities_other_event`.

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
          "qa": "fifth", "qc": "fifth", "qe": "fifth", "qh": "fifth",
          "ra": "sixth", "rc": "sixth", "re": "sixth", "rh": "sixth"}
GROUPS = ("first", "third", "fourth", "fifth", "sixth")
TAGS = ("other_event_on_claim", "same_entities_other_event", "negation_in_unrelated", "disagree_no_negation",
        "agree_paraphrase", "negation_in_agree", "same_event_other_claim")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--pages", action="append", help="page-shaped JSONL file (repeat; default: the test files of "
                    "data/stance/pages/ and data/stance/pages/other_event/)")
    args = ap.parse_args()
    pages = args.pages or [str(ROOT / "data" / "stance" / "pages" / "test.jsonl"),
                           str(ROOT / "data" / "stance" / "pages" / "other_event" / "test.jsonl")]

    from classify.dumps import join_text
    from classify.model import load_model
    from classify.pipeline import make_embedder, stance_predict

    records = [json.loads(line) for path in pages for line in open(path, encoding="utf-8") if line.strip()]
    rows = [(ROUNDS.get(r["id"][:2], "first"), r["headline"], join_text(s["title"], s.get("snippet")), s["stance"])
            for r in records for s in r["stories"]]
    tag = np.array([s.get("hard") or "" for r in records for s in r["stories"]])
    group = np.array([g for g, *_ in rows])
    gold = np.array([label for *_, label in rows])
    print("| model | " + " | ".join(f"{g} pages: pairs, accuracy, related/unrelated" for g in GROUPS) + " |")
    print("|---" * (len(GROUPS) + 1) + "|")
    by_tag = []
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
        by_tag.append((folder, [(int((tag == t).sum()), float(np.mean(gold[tag == t] == pred[tag == t])))
                                if (tag == t).any() else (0, None) for t in TAGS]))
    print("\n| model | " + " | ".join(f"{t}: pairs, accuracy" for t in TAGS) + " |")
    print("|---" * (len(TAGS) + 1) + "|")
    for folder, cells in by_tag:
        print(f"| {folder} | " + " | ".join("0" if a is None else f"{n}, {a:.3f}" for n, a in cells) + " |")


if __name__ == "__main__":
    from classify.errors import run_script

    run_script(main, "page_rounds.py")
