"""``classify evaluate``: pick the labelled data, score the model, format the summary."""

from __future__ import annotations

import json
from pathlib import Path

from .config import Dumps, StanceJsonl, Table, TopicsJsonl, load_config
from .data import Corpus, load_corpus
from .errors import DataError, display_name, one_line
from .model import load_model
from .pipeline import evaluate


TOP_GROUPS = 5
"""Groups (headlines / targets) listed in the text summary, largest first; the JSON report holds them all."""


def sources_for(data: Path | None, model) -> list:
    """The sources to score on: the model config's ``data.test`` by default, else what ``data`` names."""
    config = model.config
    if data is None:
        if not config.data.test:
            raise DataError("the model's config has no data.test; pass --data PATH")
        return config.data.test
    if not data.exists():
        raise DataError(f"--data {data}: no such file or directory")
    if data.suffix in (".yaml", ".yml"):
        other = load_config(data)
        return other.data.test or other.data.train
    if data.is_dir():
        labels = data / "labels.json"
        if not labels.is_file():
            raise DataError(f"--data {data}: a dumps folder needs a labels.json beside the dumps")
        return [Dumps(type="dumps", path=str(data), labels=str(labels))]
    suffix = data.suffix.lower()
    if suffix == ".jsonl":
        with open(data, encoding="utf-8", errors="replace") as fh:  # a sniff: the loader reports bad bytes
            first = next((line for line in fh if line.strip()), "{}")
        try:
            row = json.loads(first)
        except (json.JSONDecodeError, RecursionError):
            raise DataError(f"--data {data}:1: invalid JSON") from None
        if isinstance(row, dict) and "headline" in row and "stories" in row:
            return [StanceJsonl(type="stance_jsonl", path=str(data))]
        if isinstance(row, dict) and "title" in row and not {"text", "headline", "target"} & set(row):
            return [TopicsJsonl(type="topics_jsonl", path=str(data))]
        return [Table(type="table", path=str(data))]
    if suffix in (".csv", ".parquet"):
        return [Table(type="table", path=str(data))]
    raise DataError(f"--data {data}: expected a config .yaml, a .jsonl / .csv / .parquet table or a dumps folder")


def evaluate_model(model_dir: Path, data: Path | None = None, quiet: bool = False) -> dict:
    model = load_model(model_dir)
    corpus: Corpus = load_corpus(sources_for(data, model), model.config)
    scorable = (corpus.pairs and model.stance is not None) or \
        (corpus.texts and (model.topic is not None or model.clusterer is not None))
    if not scorable:
        where = display_name(data) if data else "data.test"
        if not corpus.pairs and not corpus.texts:
            raise DataError(f"{where}: no labelled examples to score")
        what = "stance pairs" if corpus.pairs else "topic texts"
        raise DataError(f"{where}: holds {what}, and the model has no component that scores them")
    report = evaluate(model, corpus, quiet=quiet)
    report["model"] = str(model_dir)
    return report


def format_report(report: dict) -> str:
    lines = [f"evaluated on {report['data']['topic_texts']} topic texts and {report['data']['stance_pairs']} stance pairs"]
    for part in ("topic", "stance"):
        r = report.get(part)
        if not r:
            continue
        head = f"{part:9s} accuracy {r['accuracy']:.3f}  macro-F1 {r['macro_f1']:.3f}"
        if "fnc_score" in r:
            f = r["fnc_score"]
            head += f"  FNC score {100 * f['relative']:.1f}% ({f['raw']:.2f} / {f['max']:.2f})"
        if "f_avg" in r:
            head += f"  F_avg {r['f_avg']:.3f}"
        lines.append(head)
        extra = []
        if "related_accuracy" in r:
            extra.append(f"related/unrelated accuracy {r['related_accuracy']:.3f}")
        if "calibration" in r and r["calibration"]["ece"] is not None:
            extra.append(f"ECE {r['calibration']['ece']:.3f}")
        if "disagree_without_negation" in r:
            d = r["disagree_without_negation"]
            extra.append(f"disagree F1 without negation words {d['f1']:.3f} ({d['disagree_pairs']} pairs)")
        if extra:
            lines.append("          " + "  ".join(extra))
        for name, b in r.get("by_source", {}).items():
            more = f"  related/unrelated {b['related_accuracy']:.3f}" if "related_accuracy" in b else ""
            lines.append(f"    {name}: {b['n']} pairs, accuracy {b['accuracy']:.3f}, macro-F1 {b['macro_f1']:.3f}{more}")
        groups = r.get("per_group") or []
        if len(groups) > 1:
            top = groups[:TOP_GROUPS]
            lines.append(f"  largest {len(top)} of {len(groups)} groups (headline / target):")
            for g in top:
                fa = f", F_avg {g['f_avg']:.3f}" if "f_avg" in g else ""
                lines.append(f"    {one_line(str(g['group']), 60)}: {g['n']} pairs, accuracy {g['accuracy']:.3f}, "
                             f"macro-F1 {g['macro_f1']:.3f}{fa}")
        labels = r["confusion"]["labels"]
        lines.append("          " + "  ".join(f"{k:>13s}" for k in ("precision", "recall", "F1", "support")))
        for k in labels:
            c = r["per_class"][k]
            lines.append(f"  {k:14s}" + "  ".join(f"{c[m]:13.3f}" for m in ("precision", "recall", "f1-score"))
                         + f"  {int(c['support']):13d}")
        width = max(len(k) for k in labels) + 2
        lines.append("  confusion (rows gold, columns predicted):")
        lines.append(" " * (width + 2) + "".join(f"{k[:10]:>11s}" for k in labels))
        for k, row in zip(labels, r["confusion"]["matrix"]):
            lines.append(f"  {k:{width}s}" + "".join(f"{v:11d}" for v in row))
    c = report.get("clustering")
    if c:
        if "nmi" in c:
            named = f"  accuracy of cluster names {c['named_accuracy']:.3f}" if "named_accuracy" in c else ""
            lines.append(f"clustering NMI {c['nmi']:.3f}  ARI {c['ari']:.3f}  accuracy (best matching) "
                         f"{c['accuracy']:.3f}{named}")
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
        lines.append(f"clustering silhouette {fmt(c.get('silhouette'))} ({c.get('silhouette_space')}; "
                     f"training {fmt(c.get('training_silhouette'))}, {c.get('training_silhouette_space', 'n/a')})  "
                     f"{c.get('n_clusters')} clusters")
        for name, n in c.get("sizes", {}).items():
            lines.append(f"  {n:6d}  {name}  (training {c.get('training_sizes', {}).get(name, 0)})")
    return "\n".join(lines)
