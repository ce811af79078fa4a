"""Streaming predict: the same rows, in the same order, as one in-memory predict_dumps, whatever the chunk size."""

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

import classify.pipeline
from classify.cli import app
from classify.dumps import read_dumps
from classify.output import write_table
from classify.pipeline import predict_dumps
from classify.stream import ARROW_SCHEMA, chunk_dumps, predict_stream, predict_to_file
from conftest import ROOT
from test_dumps import SAMPLE

runner = CliRunner()
DUMPS = ROOT / "data" / "dumps"
FORMATS = [".jsonl", ".csv", ".parquet"]


@pytest.fixture
def inputs(tmp_path):
    """data/dumps plus renamed copies in another order, so a chunker that reorders or drops dumps shows."""
    extra = tmp_path / "extra"
    extra.mkdir()
    for i, f in enumerate(sorted(DUMPS.glob("*.txt"))[::-1][:6]):
        shutil.copy(f, extra / f"{i:02d}_{f.name}")
    return [str(DUMPS), str(extra), str(DUMPS / "03_leopard_tanks.txt")]  # a file twice: its rows twice


def read(path):
    suffix = path.suffix
    if suffix == ".jsonl":
        return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])
    return pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)


def test_chunks_hold_whole_dumps_in_order(inputs):
    dumps, _ = read_dumps(inputs)
    for size in [1, 5, 12, 40, 10**6]:
        chunks = list(chunk_dumps(iter(dumps), size))
        assert [d for c in chunks for d in c] == dumps  # nothing dropped, nothing reordered
        for c in chunks:
            texts = sum(1 + len(d.related) for d in c)
            assert texts <= size or len(c) == 1
        if size == 1:
            assert len(chunks) == len(dumps)
    with pytest.raises(Exception, match="chunk-size"):
        list(chunk_dumps(iter(dumps), 0))


@pytest.mark.parametrize("suffix", FORMATS)
def test_streamed_rows_equal_in_memory_rows(tmp_path, tiny_model, fake_embedder, inputs, suffix):
    dumps, _ = read_dumps(inputs)
    expected = predict_dumps(tiny_model, dumps, embedder=fake_embedder)
    assert len(expected) > 150 and expected["stance"].notna().any()
    write_table(expected, tmp_path / f"memory{suffix}")
    for size in [1, 7, 30, 10**6]:
        out = tmp_path / f"stream{size}{suffix}"
        result = predict_to_file(tiny_model, inputs, out, chunk_size=size, embedder=fake_embedder, quiet=True)
        assert result.rows == len(expected) and result.dumps == len(dumps) and not result.errors
        if suffix != ".parquet":  # the very same bytes as the in-memory writer
            assert out.read_bytes() == (tmp_path / f"memory{suffix}").read_bytes(), size
        got = read(out)
        assert got[["dump", "item"]].values.tolist() == expected[["dump", "item"]].values.tolist()
        pd.testing.assert_frame_equal(got, read(tmp_path / f"memory{suffix}"), check_dtype=False)
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_parquet_is_typed_and_written_by_row_group(tmp_path, tiny_model, fake_embedder, inputs):
    import pyarrow.parquet as pq

    out = tmp_path / "p.parquet"
    predict_to_file(tiny_model, inputs, out, chunk_size=40, embedder=fake_embedder, quiet=True)
    f = pq.ParquetFile(out)
    assert f.schema_arrow == ARROW_SCHEMA
    dumps, _ = read_dumps(inputs)
    assert f.num_row_groups == len(list(chunk_dumps(iter(dumps), 40))) > 1


def test_stream_yields_chunks_one_embedder(tiny_model, fake_embedder, inputs):
    seen, before = [], fake_embedder.calls
    for dumps, df in predict_stream(tiny_model, inputs, chunk_size=25, embedder=fake_embedder):
        seen.append((len(dumps), len(df)))
        assert len(df) == sum(1 + len(d.related) for d in dumps)
    assert len(seen) > 3 and fake_embedder.calls - before == len(seen)  # one encode per chunk


def test_error_midway_leaves_no_file(tmp_path, tiny_model, fake_embedder, inputs, monkeypatch):
    (tmp_path / "o").mkdir()
    out = tmp_path / "o" / "out.jsonl"
    out.write_text("previous run\n")
    calls = []

    def failing(model, dumps, embedder=None, quiet=False):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return predict_dumps(model, dumps, embedder=embedder, quiet=quiet)

    monkeypatch.setattr(classify.pipeline, "predict_dumps", failing)
    with pytest.raises(RuntimeError):
        predict_to_file(tiny_model, inputs, out, chunk_size=10, embedder=fake_embedder, quiet=True)
    assert out.read_text() == "previous run\n"
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["out.jsonl"]  # the temporary file is gone


@pytest.mark.parametrize("suffix", FORMATS)
def test_cli_streams_with_bad_files(tmp_path, model_dir, suffix):
    (tmp_path / "good.txt").write_text(SAMPLE)
    (tmp_path / "other.txt").write_text(SAMPLE.replace("Ministers agree new rail deal", "Kyiv loses power"))
    (tmp_path / "empty.txt").write_bytes(b"")
    out = tmp_path / f"preds{suffix}"
    result = runner.invoke(app, ["predict", str(tmp_path / "good.txt"), str(tmp_path / "empty.txt"),
                                 str(tmp_path / "other.txt"), str(tmp_path / "missing.txt"), "--model", str(model_dir),
                                 "--output", str(out), "--chunk-size", "1"])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and "empty.txt: empty file" in errors[0] and "missing.txt" in errors[1]
    assert "6 rows from 2 dumps written" in result.stderr and "Traceback" not in result.stderr
    df = read(out)
    assert df["dump"].tolist() == [str(tmp_path / "good.txt")] * 3 + [str(tmp_path / "other.txt")] * 3


def test_cli_rejects_a_bad_chunk_size(tmp_path, model_dir):
    (tmp_path / "a.txt").write_text(SAMPLE)
    result = runner.invoke(app, ["predict", str(tmp_path / "a.txt"), "--model", str(model_dir), "-o",
                                 str(tmp_path / "p.jsonl"), "--chunk-size", "0"])
    assert result.exit_code == 2 and not (tmp_path / "p.jsonl").exists()


def test_no_rows_still_writes_a_valid_file(tmp_path, tiny_model, fake_embedder):
    (tmp_path / "empty.txt").write_bytes(b"")
    for suffix in FORMATS:
        out = tmp_path / f"none{suffix}"
        result = predict_to_file(tiny_model, [str(tmp_path / "empty.txt")], out, embedder=fake_embedder, quiet=True)
        assert result.rows == 0 and len(result.errors) == 1
        assert len(read(out)) == 0 if suffix != ".jsonl" else out.read_text() == ""
