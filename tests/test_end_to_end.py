"""End to end with the real embedding model: train the default config, predict, evaluate, plot."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from classify.cli import app
from classify.model import load_model
from conftest import ROOT, SEED, requires_shared

runner = CliRunner()
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    model = tmp / "model"
    # the default config with 2 cross-encoder epochs instead of 8 and 1,000 of FNC-1's pairs mixed in instead of
    # 7,300: the same pipeline end to end in a quarter of the steps (the full training takes ~20 minutes in fp32
    # on a 2-core CPU without AMX, more than the rest of the suite)
    result = runner.invoke(app, ["train", str(ROOT / "configs" / "default.yaml"), "--output", str(model), "-q",
                                 "--set", f"embedding.cache_dir={tmp / 'cache'}",
                                 "--set", "stance.cross_encoder.epochs=2",
                                 "--set", "stance.cross_encoder.pretrain_pairs=1000"])
    assert result.exit_code == 0, result.stderr
    return model


@requires_shared(SEED)
def test_seed_dump_is_about_the_war(trained, tmp_path):
    out = tmp_path / "seed.jsonl"
    result = runner.invoke(app, ["predict", str(SEED), "--model", str(trained), "--output", str(out), "-q"])
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 21  # the article and its 20 related stories
    assert rows[0]["kind"] == "article" and rows[0]["topic"] == "ukraine_war"
    assert rows[0]["stance"] is None and all(r["stance"] for r in rows[1:])
    # A Florida bridge reopening is neither the war nor about the headline's claim.
    sanibel = next(r for r in rows if r["title"].startswith("Washed-out bridge to Sanibel"))
    assert sanibel["topic"] == "other" and sanibel["stance"] == "unrelated"


def test_alone_equals_batch_and_held_out_scores(trained, tmp_path):
    dumps = sorted((ROOT / "data" / "dumps").glob("*.txt"))
    batch, alone = tmp_path / "batch.jsonl", tmp_path / "alone.jsonl"
    assert runner.invoke(app, ["predict", str(ROOT / "data" / "dumps"), "--model", str(trained), "-o", str(batch), "-q"]).exit_code == 0
    assert runner.invoke(app, ["predict", str(dumps[3]), "--model", str(trained), "-o", str(alone), "-q"]).exit_code == 0
    one = [json.loads(line) for line in alone.read_text().splitlines()]
    all_rows = [json.loads(line) for line in batch.read_text().splitlines()]
    assert one == [r for r in all_rows if r["dump"] == str(dumps[3])]

    report_path = tmp_path / "report.json"
    result = runner.invoke(app, ["evaluate", str(trained), "--output", str(report_path), "-q"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(report_path.read_text())
    # Held-out data of the team's corpus: far above chance (0.25) for every part.
    assert report["topic"]["accuracy"] > 0.8
    assert report["stance"]["macro_f1"] > 0.5
    assert report["clustering"]["nmi"] > 0.4


def test_map_and_report(trained, tmp_path):
    png = tmp_path / "map.png"
    result = runner.invoke(app, ["plot", str(ROOT / "data" / "dumps"), "--model", str(trained), "-o", str(png), "-q"])
    assert result.exit_code == 0, result.stderr
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 20_000


def _fitted_arrays(estimator, prefix=""):
    """Every learned array of an estimator and its fitted sub-estimators, by dotted name."""
    out = {}
    for name, value in vars(estimator).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        if isinstance(value, np.ndarray):
            out[prefix + name] = value
        elif hasattr(value, "steps"):  # a Pipeline: its steps hold the arrays
            for step, part in value.steps:
                out.update(_fitted_arrays(part, f"{prefix}{name}.{step}."))
        elif hasattr(value, "get_params"):
            out.update(_fitted_arrays(value, f"{prefix}{name}."))
    return out


def _small_config(tmp_path, name, topic_rows, stance_rows, cache):
    import yaml

    (tmp_path / f"{name}-topics.jsonl").write_text("".join(topic_rows))
    (tmp_path / f"{name}-stance.jsonl").write_text("".join(stance_rows))
    config = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    config["data"] = {"train": [{"type": "topics_jsonl", "path": str(tmp_path / f"{name}-topics.jsonl")},
                                {"type": "stance_jsonl", "path": str(tmp_path / f"{name}-stance.jsonl"),
                                 "unrelated_per_headline": 2}]}
    config["embedding"]["cache_dir"] = str(cache)
    config["stance"]["cross_encoder"]["enabled"] = False
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_cold_and_warm_cache_train_the_same_model(tmp_path):
    """A model must not depend on which texts the embedding cache already held (their vectors would otherwise
    change in the last bits with the company they were encoded in)."""
    topics = (ROOT / "data" / "topics" / "train.jsonl").read_text().splitlines(keepends=True)
    stance = (ROOT / "data" / "stance" / "train.jsonl").read_text().splitlines(keepends=True)
    cold, warm = tmp_path / "cold-cache", tmp_path / "warm-cache"
    config = _small_config(tmp_path, "small", topics[::12], stance[:12], cold)
    # warm the other cache with part of the same texts, in another order and other company
    warmer = _small_config(tmp_path, "warmer", topics[::24][::-1] + topics[5::40], stance[6:20][::-1], warm)
    assert runner.invoke(app, ["train", str(warmer), "-o", str(tmp_path / "warmer"), "-q"]).exit_code == 0
    models = {}
    for label, cache in (("cold", cold), ("warm", warm)):
        models[label] = tmp_path / label
        result = runner.invoke(app, ["train", str(config), "-o", str(models[label]), "-q",
                                     "--set", f"embedding.cache_dir={cache}"])
        assert result.exit_code == 0, result.stderr
    cold_model, warm_model = load_model(models["cold"]), load_model(models["warm"])
    assert (models["cold"] / "reference.safetensors").read_bytes() == (models["warm"] / "reference.safetensors").read_bytes()
    # skops files name their members by object id, so compare what they hold
    np.testing.assert_array_equal(cold_model.topic.coef_, warm_model.topic.coef_)
    cold_arrays, warm_arrays = _fitted_arrays(cold_model.stance.classifier_), _fitted_arrays(warm_model.stance.classifier_)
    assert cold_arrays.keys() == warm_arrays.keys() and any(n.endswith("coef_") for n in cold_arrays)
    for name, array in cold_arrays.items():
        np.testing.assert_array_equal(array, warm_arrays[name], err_msg=name)
    for name in ("stance.json", "clusters.json"):
        assert (models["cold"] / name).read_text() == (models["warm"] / name).read_text(), name
    outputs = []
    for label in ("cold", "warm"):
        out = tmp_path / f"{label}.jsonl"
        result = runner.invoke(app, ["predict", str(ROOT / "data" / "dumps"), "--model", str(models[label]),
                                     "-o", str(out), "-q"])
        assert result.exit_code == 0, result.stderr
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1]


def test_two_predict_processes_share_one_cache(tmp_path):
    """Two `classify predict` processes on overlapping dumps, started together on one empty cache, five times:
    the rows of separate runs every time, and a sound store with each text stored once."""
    import os
    import subprocess
    import sys

    from classify.store import VectorStore, store_path

    topics = (ROOT / "data" / "topics" / "train.jsonl").read_text().splitlines(keepends=True)
    stance = (ROOT / "data" / "stance" / "train.jsonl").read_text().splitlines(keepends=True)
    config = _small_config(tmp_path, "small", topics[::20], stance[:6], tmp_path / "train-cache")
    model = tmp_path / "model"
    assert runner.invoke(app, ["train", str(config), "-o", str(model), "-q"]).exit_code == 0
    dumps = sorted(str(p) for p in (ROOT / "data" / "dumps").glob("*.txt"))
    jobs = {"a": dumps[0:4], "b": dumps[2:6]}  # two dumps in common: both processes write their texts

    def start(name, files, cache, out):
        env = {**os.environ, "CLASSIFY_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
        return subprocess.Popen([sys.executable, "-c", "from classify.cli import app; app()", "predict", *files,
                                 "--model", str(model), "-o", str(out), "-q"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    expected = {}
    for name, files in jobs.items():  # separate runs, each on its own cache
        proc = start(name, files, tmp_path / f"alone-{name}", tmp_path / f"alone-{name}.jsonl")
        assert proc.wait(300) == 0, proc.stderr.read()
        expected[name] = (tmp_path / f"alone-{name}.jsonl").read_text()
    for round_ in range(5):
        cache = tmp_path / f"shared-{round_}"
        procs = {name: start(name, files, cache, tmp_path / f"{round_}-{name}.jsonl") for name, files in jobs.items()}
        for name, proc in procs.items():
            assert proc.wait(300) == 0, proc.stderr.read()
            assert (tmp_path / f"{round_}-{name}.jsonl").read_text() == expected[name]
        store = VectorStore(store_path(cache))
        info = store.info(check=True)
        stored = store.conn.execute("SELECT count(*) FROM vectors").fetchone()[0]
        store.close()
        assert info["integrity"] == "ok" and info["rows"] == stored > 0  # the per-model counts match the rows
