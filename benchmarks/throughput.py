"""Throughput of `predict` against a bare SentenceTransformer.encode on the same texts.

The sample dumps in data/dumps are scaled up to a few thousand texts (each copy's texts are made distinct,
so neither the cache nor de-duplication can skip them). Prints texts/s of:
  - bare encode: SentenceTransformer.encode of the texts predict embeds (model already loaded);
  - predict, cold cache: parse + embed + topic + cluster + stance, into an empty cache;
  - predict, warm cache: the same run again.
Goals (issue 2): cold >= 0.8x bare encode; warm >= 10x cold.

    python benchmarks/throughput.py [--model models/default] [--copies 20]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEEP = re.compile(r"^\s*(\d+|·.*read|Recommended Stories)\s*$")  # structure lines stay as they are


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "default"))
    ap.add_argument("--copies", type=int, default=20)
    args = ap.parse_args()

    from classify.dumps import read_dumps
    from classify.embed import Embedder
    from classify.model import load_model
    from classify.pipeline import predict_dumps
    from classify.stance import pair_embedding_texts

    model = load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "dumps").mkdir()
        paths = [str(p) for p in scaled_dumps(tmp / "dumps", args.copies)]
        dumps, _ = read_dumps(paths)
        rows = sum(1 + len(d.related) for d in dumps)
        texts = [t for d in dumps for t in [d.text] + [r.text for r in d.related]]
        texts += pair_embedding_texts([d.headline for d in dumps for _ in d.related],
                                      [r.text for d in dumps for r in d.related])
        texts = list(dict.fromkeys(texts))
        e = model.config.embedding

        embedder = Embedder(e.model, batch_size=e.batch_size, cache_dir=str(tmp / "cache"), show_progress=False)
        st = embedder.sentence_transformer  # load once, outside every timing
        st.encode(texts[:64], batch_size=e.batch_size)  # warm-up

        t = time.perf_counter()
        st.encode(texts, batch_size=e.batch_size, normalize_embeddings=True, show_progress_bar=False)
        bare = time.perf_counter() - t

        timings = {}
        for run in ("cold", "warm"):
            t = time.perf_counter()
            parsed, _ = read_dumps(paths)
            df = predict_dumps(model, parsed, embedder=embedder, quiet=True)
            timings[run] = time.perf_counter() - t
            embedder._store.close()  # the warm run reads the cache back from disk (a fresh connection)

    print(f"{len(dumps)} dumps, {rows} rows; {len(texts)} distinct texts embedded (articles, related stories, headlines)")
    print(f"bare SentenceTransformer.encode : {len(texts) / bare:8.1f} texts/s  ({bare:.1f} s)")
    print(f"predict, cold cache             : {rows / timings['cold']:8.1f} rows/s   ({timings['cold']:.1f} s)  "
          f"{bare / timings['cold']:.2f}x bare encode (goal >= 0.8)")
    print(f"predict, warm cache             : {rows / timings['warm']:8.1f} rows/s   ({timings['warm']:.2f} s)  "
          f"{timings['cold'] / timings['warm']:.1f}x faster than cold (goal >= 10)")
    assert len(df) == rows


if __name__ == "__main__":
    main()
