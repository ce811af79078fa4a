import json

import pytest

from classify.dumps import DumpError, decode, parse_dump, read_dumps
from conftest import ROOT, SEED, requires_shared

DUMPS = ROOT / "data" / "dumps"

SAMPLE = """ date 2022-11-02 Ministers agree new rail deal

Rail workers at a picket line in London. (PA Photo)
12
JANE DOE
·3 min read

LONDON (PA) — Ministers agreed a deal on Wednesday.

The unions welcomed it.

Recommended Stories

  • Unions reject rail deal

    Union leaders said the offer was not enough.

  • Storm hits Florida

    A hurricane made landfall overnight.
"""


@requires_shared(SEED)
def test_seed_dump_parses_into_article_and_related_stories():
    dumps, errors = read_dumps([str(SEED)])
    assert not errors
    d = dumps[0]
    assert d.headline == "US: Iranian troops in Crimea backing Russian drone strikes"
    assert str(d.date) == "2022-10-20"
    assert d.comments == 56
    assert d.byline == "AAMER MADHANI and ZEKE MILLER"
    assert d.read_minutes == 2
    assert d.caption.startswith("FILE - National Security Council spokesman")
    assert d.body[0].startswith("WASHINGTON (AP)")
    assert len(d.body) == 11
    # The seed has 20 bullets, every one with a headline and a snippet.
    assert len(d.related) == 20
    assert d.related[0].title == "EU preparing sanctions against Iran over Russia drone sales"
    assert d.related[0].snippet.startswith("The European Union has gathered evidence")
    assert d.related[-1].title.startswith("Top agent leads calls to have Kanye West")


def test_full_format():
    d = parse_dump(SAMPLE, "x.txt")
    assert (d.headline, d.comments, d.byline, d.read_minutes) == ("Ministers agree new rail deal", 12, "JANE DOE", 3)
    assert d.caption == "Rail workers at a picket line in London. (PA Photo)"
    assert d.body == ("LONDON (PA) — Ministers agreed a deal on Wednesday.", "The unions welcomed it.")
    assert [r.title for r in d.related] == ["Unions reject rail deal", "Storm hits Florida"]
    assert d.related[0].text == "Unions reject rail deal. Union leaders said the offer was not enough."


@pytest.mark.parametrize("transform", [
    lambda s: s.replace("\n", "\r\n").encode(),
    lambda s: b"\xef\xbb\xbf" + s.encode(),
    lambda s: s.replace("\n", "\r").encode(),
    lambda s: s.replace("  •", "  -").encode(),
    lambda s: s.replace("  •", "*").encode(),
    lambda s: s.replace("\n\n", "\n\n\n").replace("    ", "\t   ").encode(),
    lambda s: s.encode().replace(b"welcomed", b"welc\xff\xfeomed"),
])
def test_format_variants_are_tolerated(transform):
    d = parse_dump(decode(transform(SAMPLE), "v.txt"), "v.txt")
    assert d.headline == "Ministers agree new rail deal"
    assert [r.title for r in d.related] == ["Unions reject rail deal", "Storm hits Florida"]
    assert d.body[0] == "LONDON (PA) — Ministers agreed a deal on Wednesday."


def test_missing_parts():
    no_date = SAMPLE.replace(" date 2022-11-02 ", " ")
    assert parse_dump(no_date).date is None
    assert parse_dump(no_date).headline == "Ministers agree new rail deal"
    no_caption = SAMPLE.replace("Rail workers at a picket line in London. (PA Photo)\n", "")
    d = parse_dump(no_caption)
    assert d.caption is None and d.comments == 12 and d.byline == "JANE DOE"
    no_count_byline = SAMPLE.replace("12\nJANE DOE\n", "")
    d = parse_dump(no_count_byline)
    assert d.comments is None and d.byline is None and d.caption.startswith("Rail workers")
    no_related = SAMPLE.split("Recommended Stories")[0]
    d = parse_dump(no_related)
    assert d.related == () and len(d.body) == 2
    bare = " date 2022-11-02 Headline only\n\nFirst paragraph.\n"
    assert parse_dump(bare).body == ("First paragraph.",)


@pytest.mark.parametrize("raw,message", [
    (b"", "empty file"),
    (b"   \n\n  ", "empty file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    (bytes(range(128, 256)) * 20, "binary"),
])
def test_non_dumps_are_refused_with_the_file_name(raw, message):
    with pytest.raises(DumpError, match=message) as err:
        parse_dump(decode(raw, "bad.txt"), "bad.txt")
    assert str(err.value).startswith("bad.txt")


def test_no_headline():
    with pytest.raises(DumpError, match="no headline"):
        parse_dump("Recommended Stories\n\n  • A story\n", "x.txt")
    with pytest.raises(DumpError, match="bad.txt:1: no headline"):
        parse_dump(" date 2022-01-01 \n\nbody\n", "bad.txt")


def test_read_dumps_keeps_going_after_bad_files(tmp_path):
    (tmp_path / "a.txt").write_text(SAMPLE)
    (tmp_path / "b.txt").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text(SAMPLE.replace("Ministers", "MPs"))
    dumps, errors = read_dumps([str(tmp_path), str(tmp_path / "missing.txt")])
    assert [d.headline for d in dumps] == ["Ministers agree new rail deal", "MPs agree new rail deal"]
    assert len(errors) == 2 and "b.txt" in str(errors[0]) and "missing.txt" in str(errors[1])


def test_sample_dumps_match_their_labels():
    labels = json.loads((DUMPS / "labels.json").read_text())
    dumps, errors = read_dumps([str(DUMPS)])
    assert not errors
    by_name = {d.path.split("/")[-1]: d for d in dumps}
    for name, entry in labels.items():
        d = by_name[name]
        assert [r.title for r in d.related] == [r["title"] for r in entry["related"]], name
        if name != "16_no_related.txt":  # the variant with no Recommended Stories section
            assert 5 <= len(d.related) <= 15, name
    assert "16_no_related.txt" in by_name and by_name["16_no_related.txt"].related == ()
