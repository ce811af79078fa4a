"""Long texts, truncated or chunked: does a news body's embedding find its own headline? (FNC-1, no labels used
beyond which headlines were written about which body.)

    python benchmarks/long_texts.py [--split test|train] [--limit N] [--seed 0]

For every body of the split with at least one related pair (stance not `unrelated`), the nearest headline by
cosine among all the split's distinct headlines: is it one of the body's related headlines? Printed for the
body embedded truncated to the encoder's window (`embedding.long_texts: truncate`) and chunked (`chunk`:
sentences packed into windows, each embedded, averaged and L2-normalised), over all bodies and over the bodies
longer than the window (the only ones the mode changes); also the mean reciprocal rank of the first related
headline and hits in the top 5. ``--limit N`` scores N bodies drawn with ``--seed`` (the headline pool stays
the whole split). ``--variants`` also scores other ways to combine the windows of a long body (weighted by
their word pieces, by 1 / (1 + position), the first two only, truncated + mean), from one more encoding of the
windows. Reads ../shared/datasets/fnc1/ (see its README); the embedding cache is not used."""

from __future__ import annotations

import argparse
import csv
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from classify.embed import Embedder, chunk_spans

ROOT = Path(__file__).resolve().parents[1]
FNC1 = ROOT.parent / "shared" / "datasets" / "fnc1"
FILES = {"test": ("competition_test_stances.csv", "competition_test_bodies.csv"),
         "train": ("train_stances.csv", "train_bodies.csv")}


def load(split: str) -> tuple[dict[str, str], list[str], dict[str, set[str]]]:
    """Bodies by id, the split's distinct headlines, and each body's related headlines."""
    stances, bodies = FILES[split]
    with open(FNC1 / bodies, encoding="utf-8", newline="") as fh:
        body = {r["Body ID"]: r["articleBody"] for r in csv.DictReader(fh)}
    headlines, related = {}, defaultdict(set)
    with open(FNC1 / stances, encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            headlines.setdefault(r["Headline"], None)
            if r["Stance"] != "unrelated":
                related[r["Body ID"]].add(r["Headline"])
    return body, list(headlines), related


def scores(B: np.ndarray, H: np.ndarray, ids: list[str], headlines: list[str], related) -> dict[str, np.ndarray]:
    """Per body: top-1 hit, top-5 hit, reciprocal rank of its first related headline."""
    sims = B @ H.T
    order = np.argsort(-sims, axis=1, kind="stable")
    index = {h: j for j, h in enumerate(headlines)}
    top1, top5, rr = [], [], []
    for i, bid in enumerate(ids):
        mine = np.zeros(len(headlines), bool)
        mine[[index[h] for h in related[bid]]] = True
        ranked = mine[order[i]]
        first = int(np.argmax(ranked))
        top1.append(ranked[0])
        top5.append(ranked[:5].any())
        rr.append(1 / (first + 1))
    return {"top1": np.array(top1), "top5": np.array(top5), "rr": np.array(rr)}


def variants(embedder: Embedder, texts: list[str], long: dict, budget: int, B_trunc: np.ndarray) -> dict:
    """Long bodies' window vectors combined other ways than the plain mean (short bodies: as truncated)."""
    pieces, owner, tokens, position = [], [], [], []
    for i in sorted(long):
        spans = chunk_spans(texts[i], long[i], budget)
        for p, (a, b) in enumerate(spans):
            pieces.append(texts[i][a:b])
            owner.append(i)
            tokens.append(sum(a <= s < b for s, _ in long[i]))
            position.append(p)
    W = embedder.encoder.encode(pieces, batch_size=embedder.batch_size)
    owner, tokens, position = np.array(owner), np.array(tokens, float), np.array(position, float)

    def combine(weights, add=None):
        out = B_trunc.copy()
        for i in sorted(long):
            m = owner == i
            v = (W[m] * weights[m][:, None]).sum(axis=0) + (0 if add is None else add[i])
            out[i] = v / np.linalg.norm(v)
        return out

    return {"chunk, by tokens": combine(tokens), "chunk, 1/(1+pos)": combine(1 / (1 + position)),
            "first 2 windows": combine((position < 2).astype(float)),
            "truncate + mean": combine(np.ones(len(owner)) / np.bincount(owner)[owner], add=B_trunc)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=sorted(FILES), default="test")
    ap.add_argument("--limit", type=int, default=None, help="score this many bodies (drawn with --seed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--variants", action="store_true", help="also score other ways to combine the windows")
    args = ap.parse_args()

    body, headlines, related = load(args.split)
    ids = sorted((b for b in related if b in body), key=int)
    if args.limit and args.limit < len(ids):
        ids = sorted(random.Random(args.seed).sample(ids, args.limit), key=int)
    texts = [body[b] for b in ids]
    make = lambda mode: Embedder(batch_size=args.batch_size, show_progress=False, use_cache=False, long_texts=mode)
    truncate, chunk = make("truncate"), make("chunk")

    start = time.perf_counter()
    H = truncate.encode(headlines)
    t_head = time.perf_counter() - start
    long = truncate.long_offsets(texts)
    start = time.perf_counter()
    B_trunc = truncate.encode(texts)
    t_trunc = time.perf_counter() - start
    start = time.perf_counter()
    long_ids = sorted(long)
    B_chunk = B_trunc.copy()
    if long_ids:
        B_chunk[long_ids] = chunk.encode([texts[i] for i in long_ids])
    t_chunk = time.perf_counter() - start
    budget = chunk.window - 2
    windows = [len(chunk_spans(texts[i], long[i], budget)) for i in long_ids]
    tokens = [len(long[i]) for i in long_ids]

    print(f"FNC-1 {args.split}: {len(ids)} bodies with a related headline, {len(headlines)} distinct headlines "
          f"in the pool; {len(long_ids)} bodies longer than the {chunk.window}-token window "
          f"(median {int(np.median(tokens)) if tokens else 0} word pieces, {sum(windows)} windows, "
          f"{np.mean(windows) if windows else 0:.2f} per long body)")
    print(f"time: headlines {t_head:.0f} s, bodies truncated {t_trunc:.0f} s, long bodies chunked {t_chunk:.0f} s")
    mask = np.zeros(len(ids), bool)
    mask[long_ids] = True
    vectors = {"truncate": B_trunc, "chunk": B_chunk}
    if args.variants:
        vectors.update(variants(truncate, texts, long, budget, B_trunc))
    results = {mode: scores(B, H, ids, headlines, related) for mode, B in vectors.items()}
    print(f"{'':16s} {'nearest headline is related':>28s} {'(long bodies)':>14s} {'top-5':>7s} {'MRR':>7s}")
    for mode, r in results.items():
        print(f"{mode:16s} {r['top1'].mean():28.3f} {r['top1'][mask].mean() if mask.any() else float('nan'):14.3f} "
              f"{r['top5'].mean():7.3f} {r['rr'].mean():7.3f}")
    changed = results["chunk"]["top1"] != results["truncate"]["top1"]
    gained = int((results["chunk"]["top1"] & changed).sum())
    print(f"bodies whose top-1 changed: {int(changed.sum())} (chunk right, truncate wrong: {gained}; "
          f"the reverse: {int(changed.sum()) - gained})")


if __name__ == "__main__":
    main()
