"""The dump reader's details, pinned exactly (messages, dates, sentences, folder walking): kills mutants of
classify/dumps.py that the parser-level tests let live. No CLI, no model: fast."""

from __future__ import annotations

import io
import os
import socket
import sys
from datetime import date

import numpy as np
import pytest

import classify.clusters as clusters
import classify.dumps as d
from classify.dumps import MAX_DUMP_BYTES, DumpError, decode_dump, iter_dump_files, parse_dump, read_dumps
from classify.metrics import class_report
from test_dumps import SAMPLE


@pytest.mark.parametrize("line,expected", [
    ("ALONA MAZURENKO – MONDAY, 31 OCTOBER 2022, 03:55", date(2022, 10, 31)),
    ("JANE DOE, 5 March 2021", date(2021, 3, 5)),
    ("JANE DOE, Nov. 9, 2023", date(2023, 11, 9)),
    ("By Jane Doe, Sept 7 2020", date(2020, 9, 7)),
    ("JANE DOE 2019-04-02", date(2019, 4, 2)),
    ("JANE DOE, 31 February 2022 10:00", None),
    ("JANE DOE, 2022-13-40", None),
    ("no date here", None),
])
def test_dates_in_datelines(line, expected):
    assert d._date_in(line) == expected


def test_months():
    assert [d._month(m) for m in ("Jan", "feb", "MARCH", "Sept", "june", "Jul", "dec")] == [1, 2, 3, 9, 6, 7, 12]


def test_first_sentence():
    assert d._first_sentence('He said "no." Then he left.') == ('He said "no."', "Then he left.")
    assert d._first_sentence("Short line without an end") == ("Short line without an end", "")
    words = "word " * 100  # 500 characters, no sentence end
    head, rest = d._first_sentence(words.strip())
    assert head.endswith("…") and len(head) <= 201 and head[:-1] == words[: len(head) - 1].strip()
    assert rest == words.strip()
    head, rest = d._first_sentence("x" * 500)  # no space to cut at: 200 characters
    assert head == "x" * 200 + "…"
    late = "a " * 160 + "end. More"  # a sentence end after 300 characters does not count
    assert d._first_sentence(late)[0].endswith("…")


def test_size_and_binary_messages():
    with pytest.raises(DumpError, match=r"^big: 20\.5 MB, over the 20 MB limit for a dump$"):
        decode_dump(b"x" * (MAX_DUMP_BYTES + 2**19), "big")
    decode_dump(b"x" * MAX_DUMP_BYTES, "exactly-at-the-limit")
    with pytest.raises(DumpError, match=r"^b: binary or non-UTF-8 file \(3 control or undecodable characters\), "
                                        r"expected a plain-text dump$"):
        decode_dump(b"ab\x01\x02\x03", "b")
    with pytest.raises(DumpError, match=r"^e: empty file, expected a news page dump$"):
        decode_dump(b" \n\t ", "e")


def test_encodings_exactly():
    assert decode_dump("café • x".encode("cp1252"), "c") == ("café • x", "c: not valid UTF-8; read as Windows-1252 (cp1252)")
    assert decode_dump("café — x yz".encode() * 3 + b"\xff\xfe", "u") == (
        "café — x yz" * 3 + "\ufffd\ufffd", "u: 2 invalid UTF-8 byte sequences replaced")
    assert decode_dump(b"abcdefghijk \x81 def", "m") == ("abcdefghijk \ufffd def", "m: 1 invalid UTF-8 byte sequence replaced")  # 0x81: not cp1252
    assert decode_dump(b"\xef\xbb\xbfa\r\nb\rc", "bom") == ("a\nb\nc", None)
    assert decode_dump("a\u2028b".encode(), "ok") == ("a\u2028b", None)


def test_read_dumps_carries_the_warning(tmp_path):
    (tmp_path / "a.txt").write_bytes(SAMPLE.encode("cp1252"))
    (tmp_path / "b.txt").write_text(SAMPLE)
    dumps, errors = read_dumps([str(tmp_path)])
    assert not errors and [x.warning for x in dumps] == [f"{tmp_path / 'a.txt'}: not valid UTF-8; read as Windows-1252 (cp1252)", None]


def test_multi_line_snippets_are_joined_with_spaces():
    dump = parse_dump("H\n\nRecommended Stories\n\n  • Title\n    line one\n    line two\n  • Next\n", "x")
    assert [(r.title, r.snippet) for r in dump.related] == [("Title", "line one line two"), ("Next", "")]


def test_caption_length_bound():
    caption = "FILE - " + "x" * (d._CAPTION_MAX - 7)
    assert d._is_caption(caption) and not d._is_caption(caption + "x")


# ------------------------------------------------------------------------------------------------------------
# Walking folders


def _errors(paths):
    return [(name, str(item)) for name, item in iter_dump_files(paths) if isinstance(item, DumpError)]


def test_walk_reports_every_unreadable_entry_and_reads_the_rest(tmp_path):
    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "b.txt").write_text("b")
    (root / "sub" / "a.txt").write_text("a")
    (root / "sub" / "deeper" / "c.txt").write_text("c")
    (root / "notes.md").write_text("ignored: not *.txt")
    (root / "folder.txt").mkdir()  # a folder named *.txt is walked, not read
    (root / "folder.txt" / "d.txt").write_text("d")
    os.mkfifo(root / "pipe.txt")
    os.mkfifo(root / "pipe.other")  # not *.txt: ignored
    (root / "sub" / "loop").symlink_to("..")
    (root / "self.txt").symlink_to("self.txt")
    (root / "selfdir").symlink_to("selfdir")  # a loop not named *.txt is still reported
    (root / "gone.txt").symlink_to("missing")
    (root / "gone.md").symlink_to("missing")  # broken, not *.txt: ignored
    (root / "again").symlink_to("sub")  # the same folder twice: read once
    items = list(iter_dump_files([str(root)]))
    names = [name for name, _ in items]
    assert names == sorted(names, key=lambda n: n.split(os.sep))
    read = {os.path.relpath(name, root): raw for name, raw in items if isinstance(raw, bytes)}
    assert read == {"b.txt": b"b", "folder.txt/d.txt": b"d", "sub/deeper/c.txt": b"c", "sub/a.txt": b"a"} or \
        read == {"b.txt": b"b", "folder.txt/d.txt": b"d", "again/deeper/c.txt": b"c", "again/a.txt": b"a"}
    errors = {os.path.relpath(name, root): message for name, message in _errors([str(root)])}
    [loop] = [k for k in errors if k.endswith("loop")]  # sub/loop or again/loop: the folder is walked once
    assert errors.pop(loop) == f"{root / loop}: symlink loop (leads back to {root.resolve()}), skipped"
    assert errors == {
        "pipe.txt": f"{root / 'pipe.txt'}: a FIFO, not a regular file, skipped",
        "self.txt": f"{root / 'self.txt'}: symlink loop, skipped",
        "selfdir": f"{root / 'selfdir'}: symlink loop, skipped",
        "gone.txt": f"{root / 'gone.txt'}: broken symlink, skipped",
    }


def test_socket_and_device(tmp_path):
    sock = socket.socket(socket.AF_UNIX)
    path = tmp_path / "s.txt"
    sock.bind(str(path))
    try:
        assert _errors([str(tmp_path)]) == [(str(path), f"{path}: a socket, not a regular file, skipped")]
        assert _errors([str(path)]) == [(str(path), f"{path}: a socket, not a regular file, skipped")]
    finally:
        sock.close()
    assert _errors(["/dev/null"]) == [("/dev/null", "/dev/null: a character device, not a regular file, skipped")]


def test_command_line_paths(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    assert _errors([str(tmp_path / "empty")]) == [(str(tmp_path / "empty"), f"{tmp_path / 'empty'}: directory has no *.txt dumps")]
    assert _errors([str(tmp_path / "nope.txt")]) == [(str(tmp_path / "nope.txt"), f"{tmp_path / 'nope.txt'}: no such file or directory")]
    (tmp_path / "dangling").symlink_to("nowhere")
    assert _errors([str(tmp_path / "dangling")]) == [(str(tmp_path / "dangling"), f"{tmp_path / 'dangling'}: broken symlink")]
    (tmp_path / "loop").symlink_to("loop")
    assert _errors([str(tmp_path / "loop")]) == [(str(tmp_path / "loop"), f"{tmp_path / 'loop'}: symlink loop, skipped")]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin")))
    assert list(iter_dump_files(["-"])) == [("<stdin>", b"from stdin")]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"x" * (MAX_DUMP_BYTES + 1))))
    assert _errors(["-"]) == [("<stdin>", "<stdin>: more than 20 MB, over the limit for a dump")]


def test_read_limits_and_errors(tmp_path, monkeypatch):
    big = tmp_path / "big.txt"
    with open(big, "wb") as fh:
        fh.truncate(MAX_DUMP_BYTES + 2**19)
    assert _errors([str(big)]) == [(str(big), f"{big}: 20.5 MB, over the 20 MB limit for a dump")]
    at_limit = tmp_path / "limit.txt"
    with open(at_limit, "wb") as fh:
        fh.truncate(MAX_DUMP_BYTES)
    assert [type(raw) for _, raw in iter_dump_files([str(at_limit)])] == [bytes]
    assert d._read_file(str(at_limit), "grown", 10) == bytes(MAX_DUMP_BYTES)  # stat said small: read bounded
    with open(at_limit, "ab") as fh:
        fh.write(b"x")
    assert str(d._read_file(str(at_limit), "grown", 10)) == "grown: more than 20 MB, over the 20 MB limit for a dump"

    secret = tmp_path / "secret.txt"
    secret.write_text("s")

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(d, "open", denied, raising=False)
    assert _errors([str(secret)]) == [(str(secret), f"{secret}: cannot read (permission denied), skipped")]

    def io_error(path, *args, **kwargs):
        raise OSError(5, "Input/output error", str(path))

    monkeypatch.setattr(d, "open", io_error, raising=False)
    assert _errors([str(secret)]) == [(str(secret), f"{secret}: cannot read (Input/output error), skipped")]


def test_unreadable_folder_message(tmp_path, monkeypatch):
    (tmp_path / "locked").mkdir()
    (tmp_path / "ok.txt").write_text("ok")
    real = os.scandir

    def scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(d.os, "scandir", scandir)
    items = list(iter_dump_files([str(tmp_path)]))
    assert [(n, str(x)) for n, x in items if isinstance(x, DumpError)] == [
        (str(tmp_path / "locked"), f"{tmp_path / 'locked'}: cannot read directory (permission denied), skipped")]
    assert [raw for _, raw in items if isinstance(raw, bytes)] == [b"ok"]


# ------------------------------------------------------------------------------------------------------------
# metrics and clusters details


def test_class_report_counts_labels_absent_from_the_data():
    r = class_report(["a", "a"], ["a", "b"], ["a", "b", "c"])
    # a: precision 1/1, recall 1/2 -> f1 2/3; b: predicted once wrongly -> 0; c: never seen -> 0 (not 1)
    assert r["macro_f1"] == pytest.approx((2 / 3) / 3)
    assert r["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0.0}


def test_map_projector_passes_its_settings_to_umap(monkeypatch):
    calls = []

    def fake_reducer(*args, **kwargs):
        calls.append(args)
        from sklearn.decomposition import PCA

        return PCA(2)

    monkeypatch.setattr(clusters, "make_reducer", fake_reducer)
    X = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    clusters.MapProjector(method="umap", n_neighbors=15, min_dist=0.3, random_state=7).fit(X)
    clusters.MapProjector(method="umap", n_neighbors=3, min_dist=0.0, random_state=1, verbose=True).fit(X)
    assert calls == [(2, 7, 0.3, "cosine", 7, False), (2, 3, 0.0, "cosine", 1, True)]
