"""Fuzzing the dump reader with hypothesis: any bytes or text either parse or raise DumpError, quickly."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classify.dumps import MAX_TEXT_CHARS, Dump, DumpError, decode_dump, parse_dump

# Pieces of real dumps, so random documents hit the parser's branches, not only the "one paragraph" path.
PIECES = [" date 2022-10-20 ", "date 2022-13-45 ", "Recommended Stories", "Recommended Stories:", "  • ", "- ", "* ",
          "·2 min read", "· 3 minutes read", "56", "1,234", "9" * 20, "FILE - ", "(AP Photo/X)", "Getty Images",
          "ALONA MAZURENKO – MONDAY, 31 OCTOBER 2022, 03:55", "By Jane Doe", "31 October 2022", "\n", "\n\n", "\r\n",
          "\r", "\t", "    ", "\ufeff", "\ufffd", "\x00", "\x0b", "\x85", "\u2028", ". ", "! ", "Headline", "Body text."]

documents = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=40)), max_size=60).map("".join)
SETTINGS = settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])


def _check(dump: Dump) -> None:
    assert isinstance(dump, Dump) and dump.headline.strip()
    assert len(dump.text) <= MAX_TEXT_CHARS
    assert all(r.title for r in dump.related)
    assert dump.comments is None or 0 <= dump.comments < 10**12
    assert dump.read_minutes is None or 0 <= dump.read_minutes < 10**4


@SETTINGS
@given(documents)
def test_parse_dump_never_raises_anything_but_dump_error(text):
    start = time.perf_counter()
    try:
        _check(parse_dump(text, "fuzz.txt"))
    except DumpError as err:
        assert str(err).startswith("fuzz.txt") and "\n" not in str(err)
    assert time.perf_counter() - start < 0.5


@SETTINGS
@given(st.one_of(st.binary(max_size=2000), documents.map(lambda t: t.encode("utf-8", "surrogatepass")),
                 documents.map(lambda t: t.encode("cp1252", "replace"))))
def test_decode_then_parse_never_raises_anything_but_dump_error(raw):
    start = time.perf_counter()
    try:
        text, warning = decode_dump(raw, "fuzz.txt")
        assert warning is None or warning.startswith("fuzz.txt") and "\n" not in warning
        _check(parse_dump(text, "fuzz.txt"))
    except DumpError as err:
        assert str(err).startswith("fuzz.txt") and "\n" not in str(err)
    # a guard against catastrophic regex backtracking (minutes), not a speed goal: loose enough for a busy CI machine
    assert time.perf_counter() - start < 5.0


@settings(max_examples=30, deadline=5000)
@given(st.sampled_from(PIECES), st.integers(10_000, 60_000), st.sampled_from(["", "x", ":", "\n"]))
def test_long_runs_of_one_piece_stay_fast(piece, repeat, tail):
    text = "Headline\n\n" + piece[:3] * (repeat // max(len(piece[:3]), 1)) + tail
    start = time.perf_counter()
    try:
        parse_dump(text, "long.txt")
    except DumpError:
        pass
    assert time.perf_counter() - start < 1.0
