"""Evaluation metrics: per-class reports, the FNC-1 score, clustering agreement."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import (accuracy_score, adjusted_rand_score, classification_report, confusion_matrix, f1_score,
                             normalized_mutual_info_score)


def class_report(gold, pred, labels: list[str]) -> dict:
    per_class = classification_report(gold, pred, labels=labels, output_dict=True, zero_division=0)
    return {
        "n": len(gold),
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {k: {m: float(per_class[k][m]) for m in ("precision", "recall", "f1-score", "support")}
                      for k in labels},
        "confusion": {"labels": labels, "matrix": confusion_matrix(gold, pred, labels=labels).tolist()},
    }


def fnc_score(gold, pred, unrelated: str = "unrelated") -> dict:
    """FNC-1 weighted score: +0.25 for the right related/unrelated call, +0.75 more for the exact label of a
    related pair. Returned raw, as the maximum possible, and relative (0-1)."""
    gold, pred = np.asarray(gold), np.asarray(pred)
    same_relatedness = (gold == unrelated) == (pred == unrelated)
    exact_related = (gold != unrelated) & (gold == pred)
    raw = 0.25 * same_relatedness.sum() + 0.75 * exact_related.sum()
    best = 0.25 * len(gold) + 0.75 * (gold != unrelated).sum()
    return {"raw": float(raw), "max": float(best), "relative": float(raw / best) if best else 0.0}


def clustering_accuracy(gold, clusters) -> float:
    """Best one-to-one matching of clusters to classes (Hungarian), as a share of all items."""
    classes, gi = np.unique(np.asarray(gold), return_inverse=True)
    ids, ci = np.unique(np.asarray(clusters), return_inverse=True)
    table = np.zeros((len(ids), len(classes)))
    np.add.at(table, (ci, gi), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(gi))


def clustering_report(gold, clusters) -> dict:
    return {
        "n": len(gold),
        "nmi": float(normalized_mutual_info_score(gold, clusters)),
        "ari": float(adjusted_rand_score(gold, clusters)),
        "accuracy": clustering_accuracy(gold, clusters),
    }


def calibration_report(confidence, correct, bins: int = 10) -> dict:
    """Expected calibration error of the predicted label's probability, with its reliability table.

    Confidences are put in ``bins`` equal-width bins over [0, 1]; ECE is the support-weighted mean of
    |accuracy - mean confidence| over the bins."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        if not n:
            continue
        conf, acc = float(confidence[mask].mean()), float(correct[mask].mean())
        ece += n / len(confidence) * abs(acc - conf)
        table.append({"bin": [float(edges[b]), float(edges[b + 1])], "n": n, "confidence": conf, "accuracy": acc})
    return {"ece": float(ece) if len(confidence) else None, "bins": bins, "reliability": table}


def related_accuracy(gold, pred, unrelated: str = "unrelated") -> float:
    """Share of pairs whose related / unrelated call is right (the first half of the FNC-1 task)."""
    gold, pred = np.asarray(gold), np.asarray(pred)
    return float(np.mean((gold == unrelated) == (pred == unrelated))) if len(gold) else 0.0


def label_f1(gold, pred, label: str) -> float:
    """F1 of one label (0 when it is neither gold nor predicted)."""
    return float(f1_score(gold, pred, labels=[label], average="macro", zero_division=0))


def f_avg(gold, pred, favor: str = "favor", against: str = "against") -> float:
    """SemEval-2016 Task 6's score: the mean of the F1 of ``favor`` and of ``against`` (each over all pairs, so
    a ``none`` predicted for a favor pair costs favor's recall); ``none`` is never averaged in."""
    return float(f1_score(gold, pred, labels=[favor, against], average="macro", zero_division=0))


def has_favor_against(labels) -> bool:
    """Whether a stance label set is scored with F_avg (it holds ``favor`` and ``against``)."""
    return "favor" in labels and "against" in labels


def per_group_report(gold, pred, groups, favor_against: bool = False) -> list[dict]:
    """Scores per group (a headline / target): ``n``, ``accuracy``, ``macro_f1`` over the labels that occur in the
    group (gold or predicted), and ``f_avg`` when ``favor_against``; largest groups first (ties by first appearance)."""
    gold, pred = np.asarray(gold), np.asarray(pred)
    members: dict = {}
    for i, name in enumerate(groups):  # one pass, not one scan of all pairs per group
        members.setdefault(name, []).append(i)
    order = list(members)
    rows = []
    for name in order:
        m = np.asarray(members[name])
        g, p = gold[m], pred[m]
        labels = sorted(set(g.tolist()) | set(p.tolist()))
        row = {"group": name, "n": int(len(m)), "accuracy": float(np.mean(g == p)),
               "macro_f1": float(f1_score(g, p, labels=labels, average="macro", zero_division=0))}
        if favor_against:
            row["f_avg"] = f_avg(g, p)
        rows.append(row)
    rank = {name: i for i, name in enumerate(order)}
    return sorted(rows, key=lambda r: (-r["n"], rank[r["group"]]))
