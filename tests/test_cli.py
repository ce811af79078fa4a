"""The CLI on bad input: one clear line, a non-zero exit, no traceback; good inputs of the run still processed."""

import json

import pytest
from typer.testing import CliRunner

from classify.cli import app
from conftest import ROOT
from test_dumps import SAMPLE

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(stderr, *words):
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors and all(w in errors[0] for w in words), stderr
    assert "Traceback" not in stderr


def test_typo_in_config_key(tmp_path):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text((ROOT / "configs" / "default.yaml").read_text().replace("class_weight: balanced\n", "class_wieght: balanced\n", 1))
    code, _, err = run("train", cfg, "--output", tmp_path / "m")
    assert code == 2
    assert_one_line_error(err, "typo.yaml", "topic.class_wieght", "unknown key")
    assert not (tmp_path / "m").exists()


def test_bad_override_and_missing_data_file(tmp_path):
    code, _, err = run("train", ROOT / "configs" / "default.yaml", "--output", tmp_path / "m", "--set", "data.test.0.path=nope.jsonl")
    assert code == 2
    assert_one_line_error(err, "data.test.0.path", "nope.jsonl")


def test_predict_bad_files_reported_good_ones_processed(tmp_path, model_dir):
    (tmp_path / "good.txt").write_text(SAMPLE)
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02\xff" * 100)
    out = tmp_path / "preds.jsonl"
    code, _, err = run("predict", tmp_path / "good.txt", tmp_path / "empty.txt", tmp_path / "binary.txt",
                       "--model", model_dir, "--output", out, "--quiet")
    assert code == 1
    assert_one_line_error(err, "empty.txt", "empty file")
    assert "binary.txt: binary file" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and {r["dump"] for r in rows} == {str(tmp_path / "good.txt")}
    assert {"dump", "item", "kind", "title", "topic", "topic_score", "cluster", "stance", "stance_score"} <= set(rows[0])
    scores = [r[k] for r in rows for k in ("topic_score", "stance_score") if r[k] is not None]
    assert scores and all(v == round(v, 4) for v in scores)  # 4 decimals, no float32 noise (0.6880999803543091)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predict_other_formats(tmp_path, model_dir, suffix):
    import pandas as pd

    (tmp_path / "a.txt").write_text(SAMPLE)
    out = tmp_path / f"preds{suffix}"
    code, _, err = run("predict", tmp_path / "a.txt", "--model", model_dir, "--output", out, "-q")
    assert code == 0, err
    df = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert len(df) == 3 and df.loc[0, "kind"] == "article"


def test_predict_terminal_table_and_stdin(tmp_path, model_dir):
    result = runner.invoke(app, ["predict", "-", "--model", str(model_dir), "-q"], input=SAMPLE)
    assert result.exit_code == 0, result.stderr
    assert "Unions reject rail deal" in result.stdout and "article" in result.stdout


def test_model_with_a_file_missing(tmp_path, model_dir):
    (model_dir / "topic.skops").unlink()
    (tmp_path / "a.txt").write_text(SAMPLE)
    code, _, err = run("predict", tmp_path / "a.txt", "--model", model_dir)
    assert code == 1
    assert_one_line_error(err, str(model_dir), "missing topic.skops")


def test_unknown_output_format(tmp_path, model_dir):
    (tmp_path / "a.txt").write_text(SAMPLE)
    code, _, err = run("predict", tmp_path / "a.txt", "--model", model_dir, "--output", tmp_path / "x.xlsx")
    assert code == 2
    assert_one_line_error(err, "x.xlsx", "unknown format")


def test_evaluate_writes_report(tmp_path, model_dir):
    code, out, err = run("evaluate", model_dir, "--output", tmp_path / "r.json", "-q")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert {"accuracy", "macro_f1", "per_class", "confusion"} <= set(report["topic"])
    assert {"nmi", "ari"} <= set(report["clustering"]) and "fnc_score" in report["stance"]
    assert "macro-F1" in out


@pytest.mark.parametrize("suffix", [".png", ".svg", ".html"])
@pytest.mark.parametrize("color_by", ["topic", "cluster", "stance"])
def test_plot_formats(tmp_path, model_dir, suffix, color_by):
    (tmp_path / "a.txt").write_text(SAMPLE)
    out = tmp_path / f"map{suffix}"
    code, _, err = run("plot", tmp_path / "a.txt", "--model", model_dir, "--output", out, "--color-by", color_by, "-q")
    assert code == 0, err
    data = out.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG")
    elif suffix == ".svg":
        assert b"<svg" in data[:2000]
    else:
        text = data.decode()
        assert "<title>Unions reject rail deal" in text and "<script src" not in text


def test_plot_bad_color_by(tmp_path, model_dir):
    (tmp_path / "a.txt").write_text(SAMPLE)
    code, _, err = run("plot", tmp_path / "a.txt", "--model", model_dir, "--output", tmp_path / "m.png", "--color-by", "mood")
    assert code == 2
    assert_one_line_error(err, "--color-by", "mood")
