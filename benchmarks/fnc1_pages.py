"""A trained model's stance on real text laid out like a news page: FNC-1 claims, each with its related articles'
leads and the leads of the articles about *other* claims that are closest to its headline.

Our own held-out split is written by the team; this is text nobody on the team wrote. It reads the public FNC-1
set (../shared/datasets/fnc1, never copied here) and builds one "page" per headline:

- its related stories: the first --lead-words words of each body FNC-1 labels agree / disagree / discuss with it
  (a "Recommended Stories" entry is a title and a lead of 30-130 words);
- its other-event stories (`unrelated`): the leads of the bodies of *other claims* closest to the headline by
  cosine of their embeddings (a recommender's picks), so that about --unrelated-share of the page is unrelated
  (the seed page: about 13 of 20). A body counts as the same claim when it is related to this headline or to any
  headline sharing a related body with it (FNC-1 has no claim ids; claims are the connected parts of the
  headline-body graph).

Prints, per page set: pairs, accuracy, related/unrelated accuracy, the share of other-event stories called
`unrelated`, the accuracy on related stories (exact label), macro-F1 and the confusion matrix. The model is the
one given (trained on our data: FNC-1 text is never trained on). Pages are sampled by --seed; the competition test
split is for reporting, the training split may be used to compare settings.

    python benchmarks/fnc1_pages.py --model models/default [--split test|train] [--pages 300]

A model whose cross-encoder is pretrained on FNC-1 (`stance.cross_encoder.pretrain`, configs/default.yaml) has seen
the training split's claims: to choose settings for it, hold out a seeded fifth of the training claims, pretrain on
the rest and score pages of the held-out claims only:

    python benchmarks/fnc1_pages.py --model x --split train --held-out 0.2 --write-pretraining rest.csv
    classify train configs/default.yaml -o m --set 'stance.cross_encoder.pretrain.0.path=rest.csv'
    python benchmarks/fnc1_pages.py --model m --model models/other --split train --held-out 0.2

--mean also scores the mean of the given models' calibrated probabilities as one more model (its argmax the
label, its largest the score): what averaging models trained with other seeds would give. With two or more
models each one's figures also give `same_label_as`: the share of the stories on which it gives each other
model's label (how far apart two trainings really are).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FNC = ROOT.parent / "shared" / "datasets" / "fnc1"
FILES = {"train": ("train_stances.csv", "train_bodies.csv"),
         "test": ("competition_test_stances.csv", "competition_test_bodies.csv")}


def lead(text: str, words: int) -> str:
    from classify.stance import first_words

    return first_words(text, words)


def claims(pairs: list[tuple[str, int, str]]) -> dict[str, int]:
    """Claim id of each headline: connected parts of the graph of related (headline, body) pairs."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    heads = list(dict.fromkeys(h for h, _, _ in pairs))
    nodes = {("h", h): i for i, h in enumerate(heads)}
    for _, b, _ in pairs:
        nodes.setdefault(("b", b), len(nodes))
    edges = [(nodes[("h", h)], nodes[("b", b)]) for h, b, s in pairs if s != "unrelated"]
    rows, cols = zip(*edges) if edges else ((), ())
    graph = coo_matrix((np.ones(len(edges)), (rows, cols)), shape=(len(nodes), len(nodes)))
    _, part = connected_components(graph, directed=False)
    return {h: int(part[nodes[("h", h)]]) for h in heads}


def held_out_claims(claim: dict[str, int], share: float, seed: int) -> set[int]:
    """A seeded draw of about ``share`` of the claims: pages to choose settings on with a model whose
    cross-encoder was pretrained on the other claims (``--write-pretraining``)."""
    ids = sorted(set(claim.values()))
    return {c for c, u in zip(ids, np.random.RandomState(seed).rand(len(ids))) if u < share}


def write_pretraining(path: str, share: float, seed: int) -> None:
    """The training split's (headline, body, stance) rows of the claims *not* held out, as a stance CSV for
    ``stance.cross_encoder.pretrain`` (bodies: train_bodies.csv); a pair whose body belongs to a held-out claim is
    left out too."""
    stances, _ = FILES["train"]
    with open(FNC / stances, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    pairs = [(r["Headline"], int(r["Body ID"]), r["Stance"]) for r in rows]
    claim = claims(pairs)
    held = held_out_claims(claim, share, seed)
    held_bodies = {b for h, b, s in pairs if s != "unrelated" and claim[h] in held}
    kept = [r for r, (h, b, _) in zip(rows, pairs) if claim[h] not in held and b not in held_bodies]
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["Headline", "Body ID", "Stance"], extrasaction="ignore")
        w.writeheader()
        w.writerows(kept)
    print(f"{path}: {len(kept)} of {len(rows)} training pairs ({len(held)} of {len(set(claim.values()))} claims "
          "held out)")


def build_pages(split: str, n_pages: int, lead_words: int, unrelated_share: float, seed: int, embed,
                held_out: float | None = None):
    stances, bodies_file = FILES[split]
    with open(FNC / bodies_file, encoding="utf-8") as f:
        bodies = {int(r["Body ID"]): r["articleBody"] for r in csv.DictReader(f)}
    with open(FNC / stances, encoding="utf-8") as f:
        pairs = [(r["Headline"], int(r["Body ID"]), r["Stance"]) for r in csv.DictReader(f)]
    claim = claims(pairs)
    if held_out is not None:  # pages of the held-out claims only
        keep = held_out_claims(claim, held_out, seed)
        pairs = [p for p in pairs if claim[p[0]] in keep]
    related = defaultdict(list)
    for h, b, s in pairs:
        if s != "unrelated":
            related[h].append((b, s))
    body_claims = defaultdict(set)
    for h, b, s in pairs:
        if s != "unrelated":
            body_claims[b].add(claim[h])
    heads = sorted(related)
    rng = np.random.RandomState(seed)
    heads = [heads[i] for i in sorted(rng.choice(len(heads), min(n_pages, len(heads)), replace=False))]
    ids = sorted(bodies)
    leads = {b: lead(bodies[b], lead_words) for b in ids}
    H = embed(heads)
    B = embed([leads[b] for b in ids])
    sims = H @ B.T
    out = []
    for i, h in enumerate(heads):
        page = [(h, leads[b], s) for b, s in related[h]]
        k = int(round(len(page) * unrelated_share / (1 - unrelated_share)))
        picked = [ids[j] for j in np.argsort(-sims[i], kind="stable")
                  if claim[h] not in body_claims[ids[j]]][:k]
        page += [(h, leads[b], "unrelated") for b in picked]
        out.append(page)
    return out


def flatten(pages) -> tuple[list[str], list[str], list[str]]:
    """The pages' (headline, story, label) triples as three lists: headlines, stories, labels."""
    return ([h for p in pages for h, _, _ in p], [s for p in pages for _, s, _ in p],
            [g for p in pages for _, _, g in p])


def mean_of(probas: list[np.ndarray], classes: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Several models as one: the mean of their calibrated probabilities (columns in ``classes[i]`` order), its
    argmax as the label and its largest value as the score. The models must share one label order."""
    first = [str(c) for c in classes[0]]
    for other in classes[1:]:
        if [str(c) for c in other] != first:
            raise ValueError(f"--mean: the models' stance labels differ ({first} against {[str(c) for c in other]})")
    mean = np.mean(np.stack(probas), axis=0)
    return np.asarray(first)[mean.argmax(axis=1)], mean.max(axis=1)


def label_agreement(names: list[str], preds: list) -> dict[str, dict[str, float]]:
    """For each model, the share of the stories on which each other model gives the same label."""
    return {a: {b: round(float(np.mean(np.asarray(p) == np.asarray(q))), 3)
                for j, (b, q) in enumerate(zip(names, preds)) if j != i}
            for i, (a, p) in enumerate(zip(names, preds))}


def page_scores(gold, pred, score, labels: list[str], pages: int, unrelated: str = "unrelated") -> dict:
    """The figures printed per model: accuracy and macro-F1 over ``labels``, related/unrelated accuracy, how the
    other-claim stories and the related ones fare, and the ECE of ``score`` (the predicted label's probability,
    ``stance_score``) with its reliability table."""
    from classify.metrics import calibration_report, class_report

    gold, pred = np.asarray(gold), np.asarray(pred)
    rep = class_report(gold.tolist(), pred.tolist(), labels)
    rel_gold, rel_pred = gold != unrelated, pred != unrelated
    calib = calibration_report(np.asarray(score, dtype=float), gold == pred)
    return {"pages": pages, "pairs": len(gold), "unrelated_share": round(float((~rel_gold).mean()), 3),
            "accuracy": round(rep["accuracy"], 3),
            "related_unrelated": round(float((rel_gold == rel_pred).mean()), 3),
            "other_events_called_unrelated": round(float((~rel_pred[~rel_gold]).mean()), 3),
            "related_exact": round(float((gold == pred)[rel_gold].mean()), 3),
            "related_called_unrelated": round(float((~rel_pred[rel_gold]).mean()), 3),
            "macro_f1": round(rep["macro_f1"], 3), "ece": round(calib["ece"], 3),
            "reliability": calib["reliability"], "confusion": rep["confusion"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="model directory (repeat to compare)")
    ap.add_argument("--split", choices=["test", "train"], default="test")
    ap.add_argument("--pages", type=int, default=300)
    ap.add_argument("--lead-words", type=int, default=60)
    ap.add_argument("--unrelated-share", type=float, default=0.65)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--mean", action="store_true",
                    help="also score the mean of the models' probabilities (two or more --model)")
    ap.add_argument("--held-out", type=float, metavar="SHARE",
                    help="training split only: pages of a seeded draw of this share of the claims (to choose a "
                         "setting with a model pretrained on the rest, see --write-pretraining)")
    ap.add_argument("--write-pretraining", metavar="CSV",
                    help="write the training split's pairs of the claims --held-out leaves out, then exit")
    args = ap.parse_args()
    if args.pages < 1 or args.lead_words < 1:
        ap.error(f"--pages and --lead-words must be at least 1 (got {args.pages} and {args.lead_words})")
    if not 0 <= args.unrelated_share < 1:
        ap.error(f"--unrelated-share is the other-claim share of a page, in [0, 1); got {args.unrelated_share}")
    if args.held_out is not None and not 0 < args.held_out < 1:
        ap.error(f"--held-out is a share of the claims, in (0, 1); got {args.held_out}")
    if args.held_out is not None and args.split != "train":
        ap.error("--held-out draws claims of the training split: add --split train")
    if args.mean and len(args.model) < 2:
        ap.error("--mean averages models: give two or more --model")
    if args.write_pretraining:
        if args.held_out is None:
            ap.error("--write-pretraining needs --held-out SHARE")
        write_pretraining(args.write_pretraining, args.held_out, args.seed)
        return

    from classify.model import load_model
    from classify.pipeline import make_embedder, stance_proba

    results, pages, probas, classes, preds = {}, None, [], [], []
    for path in args.model:
        model = load_model(path)
        embedder = make_embedder(model.config, quiet=True)
        if pages is None:  # one set of pages for every model (picked with the first model's embedder)
            pages = build_pages(args.split, args.pages, args.lead_words, args.unrelated_share, args.seed,
                                embedder.encode, held_out=args.held_out)
        heads, stories, gold = flatten(pages)
        gold = np.array(gold)
        proba = stance_proba(model, heads, stories, embedder.encode)
        pred, score = np.asarray(model.stance.decide(proba)), proba.max(axis=1)
        probas.append(proba)
        preds.append(pred)
        classes.append(list(model.stance.classes_))
        results[path] = page_scores(gold, pred, score, list(model.stances), pages=len(pages))
    if len(args.model) > 1:
        for path, same in label_agreement(args.model, preds).items():
            results[path]["same_label_as"] = same
    for path in args.model:
        print(f"{path}: FNC-1 {args.split} pages ({args.pages} sampled, leads of {args.lead_words} words)")
        print(json.dumps(results[path], indent=1))
    if args.mean:
        try:
            pred, score = mean_of(probas, classes)
        except ValueError as e:
            raise SystemExit(f"fnc1_pages.py: {e}") from None
        name = "mean(" + " + ".join(args.model) + ")"
        results[name] = page_scores(gold, pred, score, list(model.stances), pages=len(pages))
        print(f"{name}: FNC-1 {args.split} pages ({args.pages} sampled, leads of {args.lead_words} words)")
        print(json.dumps(results[name], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    from classify.errors import run_script

    run_script(main, "fnc1_pages.py")
