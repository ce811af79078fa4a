"""End to end with the real embedding model: train the default config, predict, evaluate, plot."""

import json

import pytest
from typer.testing import CliRunner

from classify.cli import app
from conftest import ROOT, SEED, requires_shared

runner = CliRunner()
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    model = tmp / "model"
    result = runner.invoke(app, ["train", str(ROOT / "configs" / "default.yaml"), "--output", str(model), "-q",
                                 "--set", f"embedding.cache_dir={tmp / 'cache'}"])
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
