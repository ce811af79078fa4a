"""Scale: streaming predict and the Ray engine on growing input, and cache lookups in a growing vector store.

For each N (default 200, 2000, 20000 dumps) N distinct dumps are derived from data/dumps in a temporary folder
(copy k of a dump gets " (k)" after every headline, paragraph, title and snippet line, so no text repeats), and
it prints:
  - single-process streaming `classify predict DIR --output x.parquet` (a subprocess, cold embedding cache, real
    model, cold model load): rows/s and the subprocess's peak RSS;
  - the same with `--engine ray` (local Ray, one model actor per core: 2 on a 2-core machine): rows/s;
then, for a vector store of 10^4, 10^5 and 10^6 random unit vectors (384-d, written through the store API),
the time to look up 1,000 stored texts (key hashing + batched SELECTs) on one connection, as a run holds one:
median and best of 9 draws of different texts after a warm-up draw, and the CPU time (steadier on a busy machine).

    python benchmarks/scale.py [--model models/default] [--sizes 200,2000] [--lookup-sizes 10000,100000,1000000]
                               [--skip-ray] [--skip-single] [--chunk-size 2000]

Without --model's folder the default config is trained first (about a minute).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEEP = re.compile(r"^\s*(\d+|·.*read|Recommended Stories)\s*$")  # structure lines stay as they are


def make_dumps(folder: Path, n: int) -> None:
    """N distinct dumps: copy k of source dump i for k = 0, 1, ... (i cycles over data/dumps)."""
    sources = [p.read_bytes().decode("utf-8", "replace") for p in sorted((ROOT / "data" / "dumps").glob("*.txt"))]
    folder.mkdir(parents=True)
    for j in range(n):
        raw, k = sources[j % len(sources)], j // len(sources)
        lines = [line if not line.strip() or KEEP.match(line) else f"{line} ({k})" for line in raw.splitlines()]
        sub = folder / f"{j // 1000:03d}"  # at most 1,000 files a folder
        sub.mkdir(exist_ok=True)
        (sub / f"{j:06d}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_cli(args: list[str], cache: Path) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes) of the `classify` subprocess, and its stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLASSIFY_CACHE": str(cache)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "from classify.cli import app; app()", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"classify {' '.join(args)} failed ({proc.returncode}):\n{err}")
    return seconds, usage.ru_maxrss * 1024, err


def count_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def lookup_benchmark(sizes: list[int], folder: Path) -> list[tuple[int, float, float, float]]:
    from classify.embed import model_identity
    from classify.store import VectorStore, make_key

    identity = model_identity("all-MiniLM-L6-v2")
    path = folder / "lookup.sqlite3"
    store = VectorStore(path)
    filled, out = 0, []
    for size in sorted(sizes):
        t = time.perf_counter()
        if size > filled:  # texts "synthetic {i}", i < size: add the ones not stored yet
            _fill_range(store, identity, filled, size)
        fill_seconds = time.perf_counter() - t
        filled = size
        store.close()
        # One connection, as a predict run holds one for all its chunks: a first draw warms its page cache, then
        # 9 draws of 1,000 other stored texts each are timed (wall and this process's CPU time).
        reader = VectorStore(path)
        rng = random.Random(size)
        timings, cpu = [], []
        for draw in range(10):
            texts = [f"synthetic {rng.randrange(size)}" for _ in range(1000)]
            t, c = time.perf_counter(), time.process_time()
            got = reader.get(identity, [make_key(identity, x) for x in texts])
            if draw:
                timings.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            assert len(got) == len(set(texts)), (len(got), len(set(texts)))
        reader.close()
        out.append((size, statistics.median(timings), min(timings), statistics.median(cpu)))
        print(f"  store of {size:>9,} vectors ({path.stat().st_size / 2**20:6.0f} MiB): 1,000 lookups in "
              f"{statistics.median(timings) * 1000:5.1f} ms median, {min(timings) * 1000:5.1f} ms best, "
              f"{statistics.median(cpu) * 1000:5.1f} ms CPU   (store filled in {fill_seconds:.0f} s)", flush=True)
    return out


def _fill_range(store, identity: str, start: int, stop: int, batch: int = 20_000) -> None:
    import numpy as np

    from classify.store import make_key

    rng = np.random.default_rng(start)
    for lo in range(start, stop, batch):
        hi = min(stop, lo + batch)
        v = rng.standard_normal((hi - lo, 384)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        store.put(identity, [make_key(identity, f"synthetic {i}") for i in range(lo, hi)], v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "default"))
    ap.add_argument("--sizes", default="200,2000,20000", help="dump counts, comma-separated")
    ap.add_argument("--lookup-sizes", default="10000,100000,1000000", help="stored vectors, comma-separated; "
                    "empty to skip")
    ap.add_argument("--chunk-size", type=int, default=2000)
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-single", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    lookup_sizes = [int(s) for s in args.lookup_sizes.split(",") if s]

    with tempfile.TemporaryDirectory(prefix="classify-scale-") as tmp:
        tmp = Path(tmp)
        model = Path(args.model)
        if sizes and not (model / "meta.json").exists():
            print(f"{model} not found: training configs/default.yaml", flush=True)
            model = tmp / "model"
            run_cli(["train", str(ROOT / "configs" / "default.yaml"), "-o", str(model), "-q"], tmp / "train-cache")

        results = []
        for n in sizes:
            dumps = tmp / f"dumps{n}"
            make_dumps(dumps, n)
            rows = None
            if not args.skip_single:
                out = tmp / f"single{n}.parquet"
                seconds, rss, _ = run_cli(["predict", str(dumps), "-m", str(model), "-o", str(out), "-q",
                                           "--chunk-size", str(args.chunk_size)], tmp / f"cache-single-{n}")
                rows = count_rows(out)
                print(f"N={n:>6} dumps, {rows:>7} rows | single process: {rows / seconds:6.1f} rows/s "
                      f"({seconds:6.0f} s), peak RSS {rss / 2**20:6.0f} MiB", flush=True)
                results.append((n, rows, rss))
            if not args.skip_ray:
                out = tmp / f"ray{n}.parquet"
                ray_args = ["predict", str(dumps), "-m", str(model), "-o", str(out), "-q", "--engine", "ray",
                            "--chunk-size", str(args.chunk_size)]
                seconds_ray, _, _ = run_cli(ray_args, tmp / f"cache-ray-{n}")
                assert rows is None or count_rows(out) == rows
                rows = count_rows(out)
                print(f"N={n:>6} dumps, {rows:>7} rows | ray, {os.cpu_count()} workers: {rows / seconds_ray:6.1f} rows/s "
                      f"({seconds_ray:6.0f} s)", flush=True)
            for path in (dumps, tmp / f"cache-single-{n}", tmp / f"cache-ray-{n}"):
                subprocess.run(["rm", "-rf", str(path)], check=False)
        if len(results) > 1:
            (n0, _, r0), (n1, _, r1) = results[-2], results[-1]
            print(f"peak RSS {n1} vs {n0} dumps: {r1 / r0:.2f}x (goal < 1.5x)")

        if lookup_sizes:
            print("cache lookups (1,000 stored texts a draw, 9 draws on one warmed connection):", flush=True)
            t = lookup_benchmark(lookup_sizes, tmp)
            if len(t) > 1:
                print(f"  {t[-1][0]:,} vs {t[0][0]:,} vectors: {t[-1][1] / t[0][1]:.2f}x median, "
                      f"{t[-1][2] / t[0][2]:.2f}x best, {t[-1][3] / t[0][3]:.2f}x CPU (goal <= 2x)")


if __name__ == "__main__":
    main()
