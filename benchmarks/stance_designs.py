"""Stance designs side by side: train the stance part of a config under several sets of overrides (and seeds),
score each on the config's held-out data, and print one table.

    python benchmarks/stance_designs.py [--config configs/default.yaml] [--seeds 0 1 2] [--jobs 1] \\
        --design "baseline=" --design "same-event=stance.cross_encoder.same_event=8" ...

A design is ``NAME=KEY=VALUE[;KEY=VALUE...]`` (the part after the first ``=`` is a ``;``-separated list of
``--set`` overrides; empty for the config as it is). Topics and clusters are switched off (only stance is
trained). The table gives, per design, the mean (and spread over seeds) of the *validation* macro-F1 (the
config's validation split of the training events: what a design is chosen by) and of the held-out scores
(macro-F1, accuracy, related/unrelated accuracy, `disagree` F1 without negation words, ECE, page corpus
accuracy, and `mined_unrelated`: the share of recommender-style negatives called `unrelated`, i.e. for each test
headline the 4 stories of *other* test events closest to it, as a real page's list is filled), which are for
reporting only. ``--set stance.cross_encoder.device=cuda`` trains on a GPU where one is
present (the numbers then differ from a CPU run in the last digits, not in kind).
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run_one(config_path: str, overrides: list[str]) -> dict:
    from classify.config import load_config
    from classify.data import load_corpus
    from classify.pipeline import evaluate, hard_negatives, make_embedder, stance_predict, train_corpus

    config = load_config(config_path, overrides + ["topic.enabled=false", "clustering.enabled=false"])
    embedder = make_embedder(config, quiet=True)
    start = time.perf_counter()
    model = train_corpus(config, load_corpus(config.data.train, config), quiet=True, embedder=embedder)
    seconds = time.perf_counter() - start
    test = load_corpus(config.data.test, config)
    report = evaluate(model, test, embedder=embedder, quiet=True)["stance"]
    # a real page's case: the 4 stories of other test events most similar to each test headline
    mined = hard_negatives(test.pairs, embedder.encode, 4, config.labels.unrelated, 0.62)
    pred, _ = stance_predict(model, [p.headline for p in mined], [p.body for p in mined], embedder.encode)
    pages = [v for k, v in report.get("by_source", {}).items() if "pages" in k]
    return {
        "validation_macro_f1": (model.stance.validation_ or {}).get("macro_f1"),
        "weight": model.stance.weight_,
        "macro_f1": report["macro_f1"], "accuracy": report["accuracy"],
        "related_accuracy": report.get("related_accuracy"),
        "disagree_no_neg": report.get("disagree_without_negation", {}).get("f1"),
        "ece": report["calibration"]["ece"],
        "pages_accuracy": pages[0]["accuracy"] if pages else None,
        "mined_unrelated": float(np.mean(pred == config.labels.unrelated)),
        "per_class_f1": {k: v["f1-score"] for k, v in report.get("per_class", {}).items()},
        "train_seconds": round(seconds, 1),
    }


def parse_design(text: str) -> tuple[str, list[str]]:
    if "=" not in text:
        raise SystemExit(f"--design {text!r}: expected NAME=KEY=VALUE[;KEY=VALUE...] (or NAME= for none)")
    name, rest = text.split("=", 1)
    return name, [s.strip() for s in rest.split(";") if s.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    ap.add_argument("--design", action="append", required=True, help="NAME=KEY=VALUE[;KEY=VALUE...]")
    ap.add_argument("--set", action="append", default=[], help="override applied to every design")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--jobs", type=int, default=1, help="designs trained at once (separate processes)")
    ap.add_argument("--json", help="also write every run's figures to this JSON file")
    args = ap.parse_args()
    designs = [parse_design(d) for d in args.design]
    runs = [(name, seed, sets + args.set + [f"seed={seed}"]) for name, sets in designs for seed in args.seeds]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, args.config, sets) for _, _, sets in runs]
        results = []
        for (name, seed, _), fut in zip(runs, futures):
            res = fut.result()
            results.append({"design": name, "seed": seed, **res})
            print(f"{name} seed {seed}: " + json.dumps({k: v for k, v in res.items() if k != "per_class_f1"}),
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    cols = ["validation_macro_f1", "macro_f1", "accuracy", "related_accuracy", "disagree_no_neg", "ece",
            "pages_accuracy", "mined_unrelated", "train_seconds"]
    print("\n| design | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, _ in designs:
        rows = [r for r in results if r["design"] == name]
        cells = []
        for c in cols:
            vals = np.array([r[c] for r in rows if r[c] is not None], dtype=float)
            if not len(vals):
                cells.append("n/a")
            elif len(vals) == 1:
                cells.append(f"{vals[0]:.3f}" if c != "train_seconds" else f"{vals[0]:.0f}")
            else:
                cells.append(f"{vals.mean():.3f} ± {vals.std(ddof=1):.3f}" if c != "train_seconds"
                             else f"{vals.mean():.0f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
