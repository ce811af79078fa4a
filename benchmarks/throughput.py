"""Encoder backends side by side, and `predict` against a bare encode, on the same texts.

The sample dumps in data/dumps are scaled up to a few thousand texts (each copy's texts are made distinct,
so neither the cache nor de-duplication can skip them). Prints, in one run:
  - per backend (torch, onnx, onnx-int8, static): load / first-use build time, texts/s of a bare encode of
    those texts (no cache; best of --rounds, backends interleaved so a busy machine hits them alike),
    cosine agreement with the torch vectors (mean / min), and the held-out topic accuracy / macro-F1 of a
    LogisticRegression trained on data/topics/train.jsonl embeddings, scored on data/topics/test.jsonl;
  - predict with the model's own backend (default: torch), cold cache: parse + embed + topic + cluster +
    stance into an empty cache; warm cache: the same run again.
Goals: cold >= 0.9x bare encode (issue 11; 0.8x in issue 2), warm >= 10x cold; onnx-int8 >= 1.8x torch
texts/s with topic accuracy within 0.01 of torch, static >= 20x torch.
  - with a stance cross-encoder in the model: its weights scored by each runtime (torch, onnx, onnx-int8) on
    the page corpus's held-out pairs: pairs/s, agreement with torch, and its own accuracy on their labels.

ONNX exports and the static distillation are built into a temporary cache by default (so their build time
is shown); --cache DIR reuses a cache folder instead.

    python benchmarks/throughput.py [--model models/default] [--copies 20] [--rounds 2] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KEEP = re.compile(r"^\s*(\d+|·.*read|Recommended Stories)\s*$")  # structure lines stay as they are
BACKENDS = ("torch", "onnx", "onnx-int8", "static")


def scaled_dumps(folder: Path, copies: int) -> list[bytes]:
    """Each dump `copies` times; copy k tags every headline and snippet line with '(k)' so all texts differ."""
    out = []
    for path in sorted((ROOT / "data" / "dumps").glob("*.txt")):
        raw = path.read_bytes().decode("utf-8", "replace")
        for k in range(copies):
            lines = [line if not line.strip() or KEEP.match(line) else f"{line} ({k})" for line in raw.splitlines()]
            target = folder / f"{path.stem}_{k:03d}.txt"
            target.write_text("\n".join(lines), encoding="utf-8")
            out.append(target)
    return out


def topic_texts(name: str) -> tuple[list[str], list[str]]:
    from classify.dumps import join_text

    rows = [json.loads(line) for line in (ROOT / "data" / "topics" / name).read_text().splitlines() if line.strip()]
    return [join_text(r["title"], str(r.get("snippet") or "").strip()) for r in rows], [r["topic"] for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "default"))
    ap.add_argument("--copies", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2, help="timed encodes per backend (best is kept)")
    ap.add_argument("--cache", default=None, help="cache folder for ONNX exports / static model (default: fresh)")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    args = ap.parse_args()

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    from classify.dumps import read_dumps
    from classify.embed import Embedder
    from classify.model import load_model
    from classify.pipeline import predict_dumps
    from classify.stance import pair_embedding_texts

    model = load_model(args.model)
    e = model.config.embedding
    backends = [b for b in args.backends.split(",") if b]
    if "torch" not in backends:
        backends.insert(0, "torch")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "dumps").mkdir()
        paths = [str(p) for p in scaled_dumps(tmp / "dumps", args.copies)]
        dumps, _ = read_dumps(paths)
        rows = sum(1 + len(d.related) for d in dumps)
        texts = [t for d in dumps for t in [d.text] + [r.text for r in d.related]]
        texts += pair_embedding_texts([d.headline for d in dumps for _ in d.related],
                                      [r.text for d in dumps for r in d.related],
                                      model.stance.context if model.stance is not None else "body")
        texts = list(dict.fromkeys(texts))
        print(f"{len(dumps)} dumps, {rows} rows; {len(texts)} distinct texts embedded (articles, related stories, "
              f"headlines); model {e.model}, batch {e.batch_size}", flush=True)

        # --- backends: bare encode of the same texts, no embedding cache
        cache = Path(args.cache) if args.cache else tmp / "cache"
        encoders, built = {}, {}
        for b in backends:
            t = time.perf_counter()
            encoders[b] = Embedder(e.model, batch_size=e.batch_size, cache_dir=str(cache), show_progress=False,
                                   use_cache=False, backend=b).encoder
            encoders[b].encode(texts[:64], batch_size=e.batch_size)  # warm-up
            built[b] = time.perf_counter() - t
            print(f"  {b}: loaded / built in {built[b]:.1f} s", flush=True)
        seconds = {b: [] for b in backends}
        vectors = {}
        for _ in range(args.rounds):
            for b in backends:
                t = time.perf_counter()
                vectors[b] = encoders[b].encode(texts, batch_size=e.batch_size)
                seconds[b].append(time.perf_counter() - t)
        bare = min(seconds["torch"])

        train_x, train_y = topic_texts("train.jsonl")
        test_x, test_y = topic_texts("test.jsonl")
        topics = {}
        for b in backends:
            X = encoders[b].encode(train_x + test_x, batch_size=e.batch_size)
            clf = LogisticRegression(C=model.config.topic.C, class_weight=model.config.topic.class_weight,
                                     max_iter=model.config.topic.max_iter).fit(X[:len(train_x)], train_y)
            pred = clf.predict(X[len(train_x):])
            topics[b] = (accuracy_score(test_y, pred), f1_score(test_y, pred, average="macro"))

        # --- predict with the model's own backend, cold then warm embedding cache
        embedder = Embedder(e.model, batch_size=e.batch_size, cache_dir=str(tmp / "predict-cache"),
                            show_progress=False, backend=e.backend)
        embedder.encoder  # load once, outside every timing
        timings = {}
        for run in ("cold", "warm"):
            t = time.perf_counter()
            parsed, _ = read_dumps(paths)
            df = predict_dumps(model, parsed, embedder=embedder, quiet=True)
            timings[run] = time.perf_counter() - t
            embedder._store.close()  # the warm run reads the cache back from disk (a fresh connection)

    print(f"\nbare encode of the {len(texts)} texts (best of {args.rounds}); topics: {len(train_x)} train / "
          f"{len(test_x)} test texts, LogisticRegression(C={model.config.topic.C})")
    print(f"{'backend':10s} {'build s':>8s} {'texts/s':>9s} {'x torch':>8s} {'cos mean':>9s} {'cos min':>8s} "
          f"{'topic acc':>10s} {'macro-F1':>9s}")
    for b in backends:
        best = min(seconds[b])
        if vectors[b].shape == vectors["torch"].shape:
            cos = (vectors[b] * vectors["torch"]).sum(1)
            agree = f"{cos.mean():9.4f} {cos.min():8.4f}"
        else:
            agree = f"{'-':>9s} {'-':>8s}"
        print(f"{b:10s} {built[b]:8.1f} {len(texts) / best:9.1f} {bare / best:8.2f} {agree} "
              f"{topics[b][0]:10.3f} {topics[b][1]:9.3f}")
    own = min(seconds.get(e.backend, seconds["torch"]))
    print(f"\npredict with backend {e.backend} (model {args.model}):")
    print(f"predict, cold cache : {rows / timings['cold']:8.1f} rows/s   ({timings['cold']:.1f} s)  "
          f"{own / timings['cold']:.2f}x bare {e.backend} encode (goal >= 0.9)")
    print(f"predict, warm cache : {rows / timings['warm']:8.1f} rows/s   ({timings['warm']:.2f} s)  "
          f"{timings['cold'] / timings['warm']:.1f}x faster than cold (goal >= 10)")
    assert len(df) == rows
    if getattr(model.stance, "cross_encoder_", None) is not None:
        cross_encoder_runtimes(Path(args.model), args.rounds)


def cross_encoder_runtimes(model_dir: Path, rounds: int) -> None:
    """The model's cross-encoder weights scored by each runtime on the page corpus's held-out pairs: pairs/s (best
    of ``rounds``), agreement with torch, and the cross-encoder's own accuracy against the gold labels."""
    from classify.config import load_config
    from classify.crossencoder import CrossEncoder
    from classify.data import load_corpus

    config = load_config(ROOT / "configs" / "default.yaml")
    pages = [src for src in config.data.test if Path(src.path).parts[-2:] == ("pages", "test.jsonl")]
    pairs = load_corpus(pages, config).pairs
    heads, stories, gold = [p.headline for p in pairs], [p.body for p in pairs], np.array([p.label for p in pairs])
    print(f"\ncross-encoder runtimes on the same weights ({model_dir}), {len(heads)} held-out page pairs:")
    print(f"{'runtime':10s} {'load s':>7s} {'pairs/s':>8s} {'x torch':>8s} {'same top':>9s} {'max dp':>7s} {'accuracy':>9s}")
    results = {}
    for runtime in ("torch", "onnx", "onnx-int8"):
        t = time.perf_counter()
        ce = CrossEncoder.load(model_dir, runtime=runtime)
        ce.predict_proba(heads[:8], stories[:8])  # warm-up (session, threads)
        load = time.perf_counter() - t
        best = float("inf")
        for _ in range(rounds):
            t = time.perf_counter()
            proba = ce.predict_proba(heads, stories)
            best = min(best, time.perf_counter() - t)
        results[runtime] = (load, best, proba)
        ref = results["torch"]
        top = ce.classes_[proba.argmax(1)]
        print(f"{runtime:10s} {load:7.1f} {len(heads) / best:8.1f} {ref[1] / best:8.2f} "
              f"{(proba.argmax(1) == ref[2].argmax(1)).mean():9.3f} {np.abs(proba - ref[2]).max():7.3f} "
              f"{(top == gold).mean():9.3f}")


if __name__ == "__main__":
    main()
