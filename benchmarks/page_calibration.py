"""Is a model's stance on real pages limited by its thresholds or by its reading? Two measurements on FNC-1 claims
laid out as pages (benchmarks/fnc1_pages.py builds them):

- **relatedness AUC** of each part (the feature classifier, the cross-encoder, the mix the model uses): how well
  it ranks the related stories of a page above the other-claim ones, whatever threshold is put on it; and the same
  against only the closest other-claim stories (the top --closest-share of them by the embedding cosine of
  headline and story, all pages together): the look-alikes a real list of same-topic stories is made of;
- **calibration fitted on real pages** against the model's own (temperature and class biases fitted on its
  validation split of our data): the pages' headlines are halved (--halvings seeded halvings), the temperature
  and class biases fitted on one half's pages (all --lead-words lengths together) and both calibrations scored on
  the other half. Prints accuracy, macro-F1, the exact label of related stories, the share of other-claim stories
  called `unrelated` and the ECE, averaged over the halvings, and the fitted biases;
- with --label-prior LABEL=SHARE ..., **the model's own calibration moved to other label shares** (Bayes' rule
  from the shares of its validation split, which models record from step 19 on), scored on the same halves.

Choose with the held-out claims of the training split (a model pretrained on the rest, see fnc1_pages.py); the
competition test split is for reporting:

    python benchmarks/page_calibration.py --model m --split train --held-out 0.2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _pages_module():
    if "fnc1_pages" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fnc1_pages", HERE / "fnc1_pages.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["fnc1_pages"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["fnc1_pages"]


def relatedness_auc(gold, related_score, unrelated: str = "unrelated") -> float:
    """ROC AUC of ``related_score`` (e.g. 1 - P(unrelated)) for telling related stories from the others."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(gold) != unrelated, related_score))


def closest_mask(gold, similarity, share: float, unrelated: str = "unrelated") -> np.ndarray:
    """Every related story and the other-claim (``unrelated``) stories whose headline-story ``similarity`` is in
    their top ``share`` (at or above that quantile of the other-claim stories' similarities)."""
    if not 0 < share <= 1:
        raise ValueError(f"--closest-share must be in (0, 1], not {share}")
    other = np.asarray(gold) == unrelated
    similarity = np.asarray(similarity, dtype=float)
    if not other.any():
        return ~other
    return ~other | (similarity >= np.quantile(similarity[other], 1 - share))


def prior_shift(classes, prior: dict, validation_labels: dict) -> np.ndarray:
    """Log-odds to add to each class's bias so that probabilities calibrated on a validation split of
    ``validation_labels`` (label -> pairs) hold for pages whose labels are shared as ``prior`` (label -> share,
    in any unit): Bayes' rule for a shift in label shares, ``log(prior / validation share)``, the first class's
    set to 0 as the biases' are (a constant on every class changes nothing, so neither needs normalising)."""
    classes = [str(c) for c in classes]
    unknown = sorted(set(prior) - set(classes))
    if unknown:
        raise ValueError(f"--label-prior: {unknown[0]!r} is not one of the model's stance labels ({', '.join(classes)})")
    for name, given in (("--label-prior", prior), ("the model's validation split", validation_labels)):
        missing = [c for c in classes if not given.get(c, 0) > 0]
        if missing:
            raise ValueError(f"{name}: no share for {missing[0]!r}; every stance label needs one above 0")
    target = np.array([prior[c] for c in classes], dtype=float)
    seen = np.array([validation_labels[c] for c in classes], dtype=float)
    shift = np.log(target) - np.log(seen)
    return shift - shift[0]


def compare_calibrations(proba: dict, gold: dict, heads: dict, classes, temperature: float, bias,
                         halvings: int = 10, seed: int = 0, unrelated: str = "unrelated", shift=None) -> dict:
    """``proba[L]``: a model's probabilities before calibration on the pages of lead length L (columns in
    ``classes`` order), ``gold[L]`` their labels, ``heads[L]`` their headlines. For each of ``halvings`` seeded
    halvings of the headlines, fits a temperature and class biases on half A's pairs of every length and scores the
    other half at each length with the model's own (``temperature``, ``bias``) and with that fit. Returns
    ``{"own": {L: figures}, "pages": {L: figures}, "fitted": {"temperature", "bias": {label: value}}}``, each
    figure the mean over the halvings (``page_scores``' accuracy, macro_f1, related_exact,
    other_events_called_unrelated, ece). With ``shift`` (``prior_shift``), also ``"prior"``: the model's own
    calibration with the shift added to its biases, scored on the same halves."""
    from classify.stance import _calibrated, fit_calibration

    pages_mod = _pages_module()
    classes = [str(c) for c in classes]
    lengths = list(proba)
    gold = {L: np.asarray(gold[L]) for L in lengths}
    index = {L: np.searchsorted(classes, gold[L]) for L in lengths}
    names = np.unique(np.concatenate([np.asarray(heads[L]) for L in lengths]))
    keys = ("accuracy", "macro_f1", "related_exact", "other_events_called_unrelated", "ece")
    runs: dict = {"own": {L: [] for L in lengths}, "pages": {L: [] for L in lengths}}
    given = [("own", (temperature, bias))]  # the model's own calibrations: the same for every halving
    if shift is not None:
        runs["prior"] = {L: [] for L in lengths}
        given.append(("prior", (temperature, np.asarray(bias, dtype=float) + shift)))
    fits = []
    for s in range(halvings):
        order = names.copy()
        np.random.RandomState(seed + s).shuffle(order)
        half = set(order[: len(order) // 2].tolist())
        in_a = {L: np.isin(heads[L], list(half)) for L in lengths}
        t_fit, b_fit = fit_calibration(np.vstack([proba[L][in_a[L]] for L in lengths]),
                                       np.concatenate([index[L][in_a[L]] for L in lengths]))
        fits.append((t_fit, b_fit))
        for L in lengths:
            other = ~in_a[L]
            for name, (t, b) in [*given, ("pages", (t_fit, b_fit))]:
                q = _calibrated(proba[L][other], t, b)
                pred = np.asarray(classes)[q.argmax(axis=1)]
                res = pages_mod.page_scores(gold[L][other], pred, q.max(axis=1), classes, pages=0,
                                            unrelated=unrelated)
                runs[name][L].append([res[k] for k in keys])
    out = {name: {L: dict(zip(keys, np.round(np.mean(v, axis=0), 3).tolist())) for L, v in per.items()}
           for name, per in runs.items()}
    out["fitted"] = {"temperature": round(float(np.mean([t for t, _ in fits])), 3),
                     "bias": {c: round(float(np.mean([b[i] for _, b in fits])), 3) for i, c in enumerate(classes)}}
    return out


def _cosines(heads, stories, embed) -> np.ndarray:
    a, b = np.asarray(embed(list(heads)), dtype=float), np.asarray(embed(list(stories)), dtype=float)
    return (a * b).sum(axis=1) / np.clip(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="model directory (repeat to compare)")
    ap.add_argument("--split", choices=["test", "train"], default="test")
    ap.add_argument("--held-out", type=float, metavar="SHARE", help="training split only: as in fnc1_pages.py")
    ap.add_argument("--pages", type=int, default=300)
    ap.add_argument("--closest-share", type=float, default=0.25,
                    help="the share of other-claim stories, the closest to their headline, for relatedness_auc_closest")
    ap.add_argument("--lead-words", type=int, nargs="+", default=[20, 40, 60])
    ap.add_argument("--unrelated-share", type=float, default=0.65)
    ap.add_argument("--halvings", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label-prior", nargs="+", metavar="LABEL=SHARE",
                    help="also score the model's own calibration moved to these label shares (Bayes' rule from its "
                         "validation split's, which the model records), e.g. FNC-1 training's: agree=0.074 "
                         "disagree=0.017 discuss=0.178 unrelated=0.731")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if args.held_out is not None and args.split != "train":
        ap.error("--held-out draws claims of the training split: add --split train")
    if not 0 < args.closest_share <= 1:
        ap.error(f"--closest-share must be in (0, 1], not {args.closest_share}")

    prior = None
    if args.label_prior:
        prior = {}
        for item in args.label_prior:
            label, _, share = item.partition("=")
            try:
                prior[label] = float(share)
            except ValueError:
                ap.error(f"--label-prior: expected LABEL=SHARE (a number), found {item!r}")
            if not np.isfinite(prior[label]) or prior[label] <= 0:
                ap.error(f"--label-prior: {label}'s share must be a number above 0, not {share!r}")

    from classify.model import load_model
    from classify.pipeline import make_embedder

    pages_mod = _pages_module()
    results, pages = {}, {}
    for path in args.model:
        model = load_model(path)
        sm = model.stance
        classes = [str(c) for c in sm.classes_]
        shift = None
        if prior is not None:
            counts = (sm.validation_ or {}).get("labels")
            if not counts:
                sys.exit(f"{path}: the model records no validation label counts (meta.json's "
                         "training.stance_validation.labels; models trained before step 19 lack them, and so do "
                         "models without a validation split, e.g. stance.calibrate: false): --label-prior needs them")
            try:
                shift = prior_shift(classes, prior, counts)
            except ValueError as err:
                sys.exit(f"{path}: {err}")
        embed = make_embedder(model.config, quiet=True).encode
        if not pages:  # one set of pages per length for every model (picked with the first model's embedder),
            # with the other-claim stories that count as the closest
            for L in args.lead_words:
                H, B, G = pages_mod.flatten(pages_mod.build_pages(args.split, args.pages, L, args.unrelated_share,
                                                                  args.seed, embed, held_out=args.held_out))
                pages[L] = H, B, G, closest_mask(G, _cosines(H, B, embed), args.closest_share)
        unrelated = model.config.labels.unrelated
        col = classes.index(unrelated)
        proba, gold, heads, auc, closest = {}, {}, {}, {}, {}
        for L in args.lead_words:
            H, B, gold[L], keep = pages[L]
            heads[L] = H
            scored = sm.part_proba(H, B, embed)  # each part scores every pair once
            proba[L] = sm._normalise(scored["mix"])
            parts = {"classifier": scored["classifier"], "mix": proba[L]}
            if "cross_encoder" in scored:
                parts["cross_encoder"] = scored["cross_encoder"]
            auc[L] = {k: round(relatedness_auc(gold[L], 1 - v[:, col], unrelated), 3) for k, v in parts.items()}
            closest[L] = {k: round(relatedness_auc(np.asarray(gold[L])[keep], 1 - v[keep, col], unrelated), 3)
                          for k, v in parts.items()}
        res = compare_calibrations(proba, gold, heads, classes, sm.temperature_, sm.bias_, args.halvings,
                                   args.seed, unrelated, shift=shift)
        if shift is not None:
            res["prior_shift"] = {c: round(float(v), 3) for c, v in zip(classes, shift)}
        res["relatedness_auc"] = auc
        res["relatedness_auc_closest"] = {"share": args.closest_share, **closest}
        res["own_calibration"] = {"temperature": round(float(sm.temperature_), 3),
                                  "bias": {c: round(float(b), 3) for c, b in zip(classes, sm.bias_)}}
        results[path] = res
        print(f"{path}: FNC-1 {args.split} pages, leads of {args.lead_words} words")
        print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    from classify.errors import run_script

    run_script(main, "page_calibration.py")
