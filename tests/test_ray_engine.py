"""``predict --engine ray``: the same rows as the single-process engine, on a local Ray (skipped without Ray)."""

import builtins
import glob
import json
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from classify.cli import app
from classify.model import save_model
from classify.stream import predict_to_file
from conftest import ROOT, FakeEmbedder
from test_dumps import SAMPLE

runner = CliRunner()
DUMPS = ROOT / "data" / "dumps"


def _ray_available():
    try:
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


needs_ray = pytest.mark.skipif(not _ray_available(), reason="ray is not installed (pip install 'classify[ray]')")


@pytest.fixture
def bad_inputs(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_bytes(b"")
    (bad / "binary.txt").write_bytes(b"\x00\x01\x02\xff" * 100)
    return [str(DUMPS), str(bad), str(tmp_path / "missing.txt")]


@needs_ray
@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_ray_engine_gives_the_single_process_rows(tmp_path, tiny_model, fake_embedder, bad_inputs, suffix):
    import ray

    from classify.ray_engine import predict_ray
    import conftest

    ray.cloudpickle.register_pickle_by_value(conftest)  # the workers build the fake embedder from this module
    model_dir = save_model(tiny_model, tmp_path / "model")
    before = set(glob.glob("/tmp/classify-ray-*"))

    single_errors, ray_errors = [], []
    single = predict_to_file(tiny_model, bad_inputs, tmp_path / f"single{suffix}", chunk_size=30,
                             embedder=fake_embedder, quiet=True, on_error=single_errors.append)
    out = tmp_path / f"ray{suffix}"
    result = predict_ray(model_dir, bad_inputs, out, chunk_size=30, workers=2, quiet=True,
                         on_error=ray_errors.append, embedder_factory=FakeEmbedder)

    assert result.rows == single.rows == 156 and result.dumps == single.dumps == 16
    assert sorted(map(str, ray_errors)) == sorted(map(str, single_errors)) and len(ray_errors) == 3
    files = sorted(out.iterdir())
    assert len(files) > 1 and all(f.suffix == suffix for f in files)  # one file per block
    if suffix == ".parquet":
        got, expected = pd.read_parquet(out), pd.read_parquet(tmp_path / "single.parquet")
        pd.testing.assert_frame_equal(got, expected)  # same rows, same order (files read in name order)
    else:
        assert b"".join(f.read_bytes() for f in files) == (tmp_path / "single.jsonl").read_bytes()
    assert not ray.is_initialized()
    assert set(glob.glob("/tmp/classify-ray-*")) <= before  # its temporary folder is removed (others' may go)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_engine_ray_without_ray_is_one_line(tmp_path, model_dir, monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    for mod in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, mod)
    (tmp_path / "a.txt").write_text(SAMPLE)
    result = runner.invoke(app, ["predict", str(tmp_path / "a.txt"), "--model", str(model_dir), "--engine", "ray",
                                 "--output", str(tmp_path / "out.parquet")])
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "pip install 'classify[ray]'" in errors[0], result.stderr
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize("args, words", [
    (["--engine", "spark"], ["--engine", "spark"]),
    (["--address", "10.0.0.1:6379"], ["--address needs --engine ray"]),
    (["--engine", "ray", "--output", "out.csv"], ["out.csv", "unknown format"]),
])
def test_engine_usage_errors(tmp_path, model_dir, args, words):
    if "--engine" in args and "ray" in args and not _ray_available():
        pytest.skip("ray is not installed")
    (tmp_path / "a.txt").write_text(SAMPLE)
    result = runner.invoke(app, ["predict", str(tmp_path / "a.txt"), "--model", str(model_dir), *args])
    assert result.exit_code == 2, result.stderr
    assert all(w in result.stderr for w in words) and "Traceback" not in result.stderr


def test_dump_survives_the_trip_through_arrow():
    from classify.dumps import parse_dump
    from classify.ray_engine import dump_from_json, dump_to_json

    dump = parse_dump(SAMPLE, "a.txt")
    assert dump_from_json(dump_to_json(dump)) == dump
    assert json.loads(dump_to_json(dump))["path"] == "a.txt"
