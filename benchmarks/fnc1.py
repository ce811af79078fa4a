"""FNC-1 stance benchmark: train on the FNC-1 training set, score on the competition test set.

Reads ../shared/datasets/fnc1 (never copied here) through the toolkit's `headline_body_csv` data source and
configs/fnc1.yaml, i.e. exactly what `classify train configs/fnc1.yaml` and `classify evaluate` do. Prints the
FNC score (relative %, raw / max), macro-F1, per-class F1, the confusion matrix, wall time of training and of
evaluation, pairs/s at prediction and peak memory (RSS of this process).

    python benchmarks/fnc1.py [--config configs/fnc1.yaml] [--set KEY=VALUE ...] [--output DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "fnc1.yaml"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--output", help="also save the trained model here")
    args = ap.parse_args()

    from classify.config import load_config
    from classify.data import load_corpus
    from classify.evaluation import format_report
    from classify.model import save_model
    from classify.pipeline import evaluate, train

    config = load_config(args.config, args.overrides)
    t = time.perf_counter()
    model = train(config, quiet=True)
    train_s = time.perf_counter() - t
    if args.output:
        save_model(model, args.output)
    t = time.perf_counter()
    corpus = load_corpus(config.data.test, config)
    report = evaluate(model, corpus, quiet=True)
    eval_s = time.perf_counter() - t

    s = report["stance"]
    f = s["fnc_score"]
    print(format_report(report))
    print(json.dumps({
        "fnc_score_percent": round(100 * f["relative"], 2), "fnc_raw": f["raw"], "fnc_max": f["max"],
        "macro_f1": round(s["macro_f1"], 4),
        "f1": {k: round(v["f1-score"], 4) for k, v in s["per_class"].items()},
        "train_seconds": round(train_s, 1), "evaluate_seconds": round(eval_s, 1),
        "pairs_per_second_predict": s["pairs_per_second"],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }, indent=2))


if __name__ == "__main__":
    main()
