"""Hostile inputs of issue 10, measured: ReDoS time and peak memory of reading huge dumps.

    python benchmarks/hostile.py [--mb 50]

Prints, for each case, the wall time of parsing and the peak RSS of a fresh child process that reads it
(``read_dumps``), so one case's memory does not hide another's. Goals: every line parses in well under a
second; a 50 MB one-paragraph dump is refused (size limit) and a 19 MB one is read with a peak RSS under 1 GB.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REDOS = {
    "Recommended Stories + 40,000 spaces + x": "Recommended Stories" + " " * 40_000 + "x",
    "bullet + 40,000 spaces": "  •" + " " * 40_000,
    "read time with 40,000 digits": "·" + "1" * 40_000 + " min read x",
    "comment count of 40,000 digits": "9" * 40_000,
    "date prefix + 40,000 spaces + x": "date 2022-01-01" + " " * 40_000 + "x",
    "8,000 '(photo ' caption credits": "(" + "photo " * 8_000 + "x",
}

CHILD = """
import resource, sys, time
sys.path.insert(0, {root!r})
from classify.dumps import read_dumps
start = time.perf_counter()
dumps, errors = read_dumps([{path!r}])
took = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
what = errors[0] if errors else f"parsed: headline {{len(dumps[0].headline)}} chars, text {{len(dumps[0].text)}} chars"
print(f"{{took:.2f}}\\t{{peak:.0f}}\\t{{what}}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=50.0, help="size of the big one-paragraph dump (default 50)")
    args = ap.parse_args()
    from classify.dumps import MAX_DUMP_BYTES, parse_dump

    print("ReDoS (parse_dump of a dump holding the line, twice):")
    for name, line in REDOS.items():
        text = f"Headline\n\n{line}\n\nbody\n\nRecommended Stories\n\n  • t\n\n{line}\n"
        start = time.perf_counter()
        parse_dump(text, "x.txt")
        print(f"  {name:45s} {1000 * (time.perf_counter() - start):8.1f} ms")

    print("\nHuge one-paragraph dumps (read_dumps in a fresh process): seconds, peak RSS MB, outcome")
    with tempfile.TemporaryDirectory() as tmp:
        for label, size in [(f"{args.mb:g} MB", int(args.mb * 2**20)), ("just under the limit", MAX_DUMP_BYTES - 1024)]:
            path = Path(tmp) / "big.txt"
            with open(path, "w", encoding="utf-8") as fh:
                word = "lorem ipsum dolor sit amet, "
                fh.write(" date 2022-01-01 Headline\n\n")
                fh.write(word * (size // len(word)))
            out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), path=str(path))],
                                 capture_output=True, text=True, check=True).stdout.strip()
            took, peak, what = out.split("\t")
            print(f"  {label:25s} {float(took):6.2f} s {float(peak):8.0f} MB   {what}")
            os.unlink(path)
    print(f"\n(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB peak RSS)")


if __name__ == "__main__":
    main()
