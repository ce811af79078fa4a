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
