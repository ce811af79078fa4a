"""Tabular input for predict and evaluate: texts and (headline, text) pairs from .jsonl / .csv / .parquet, ids
carried through, bad rows reported one line each while the rest are predicted, streaming, typed output; stance
scores per group and F_avg."""

import csv
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from classify.cli import app
from classify.config import validate_config
from classify.dumps import join_text
from classify.evaluation import format_report
from classify.metrics import f_avg, per_group_report
from classify.pipeline import stance_predict, train
from classify.stream import predict_to_file
from classify.tabular import TABULAR_SCHEMA, choose_input, predict_rows, read_rows
from conftest import STANCE_ROWS, TOPIC_ROWS, write_jsonl

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def write_table(path, records, columns=None):
    """``records`` (dicts) as .jsonl, .csv or .parquet by the suffix of ``path``."""
    columns = columns or list(dict.fromkeys(k for r in records for k in r))
    if path.suffix == ".jsonl":
        write_jsonl(path, records)
    elif path.suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=columns)
            w.writeheader()
            for r in records:
                w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    return path


def read_output(path):
    if path.suffix == ".jsonl":
        return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])
    return pd.read_csv(path, dtype={"id": str}) if path.suffix == ".csv" else pd.read_parquet(path)


TEXT_RECORDS = [{"id": f"t-{i:02d}-{'zyx'[i % 3]}", "title": t, "snippet": s} for i, (t, s, _) in enumerate(TOPIC_ROWS)]
PAIR_RECORDS = [{"id": f"p{i}", "headline": rec["headline"], "text": join_text(st["title"], st["snippet"])}
                for i, (rec, st) in enumerate((rec, st) for rec in STANCE_ROWS for st in rec["stories"])]
# a story of another headline: pairs across headlines (unrelated-looking) too
PAIR_RECORDS.append({"id": "cross", "headline": STANCE_ROWS[0]["headline"],
                     "text": join_text(TOPIC_ROWS[13][0], TOPIC_ROWS[13][1])})


# -- detection -------------------------------------------------------------------------------------------------
def test_choose_input(tmp_path):
    (tmp_path / "d").mkdir()
    assert choose_input([str(tmp_path / "a.csv"), str(tmp_path / "b.parquet")], None) == "auto"
    assert choose_input([str(tmp_path / "d"), str(tmp_path / "x.txt"), "-"], None) is None
    assert choose_input([str(tmp_path / "a.csv")], "dumps") is None
    assert choose_input([str(tmp_path / "a.jsonl")], "pairs") == "pairs"
    with pytest.raises(Exception, match="separate runs"):
        choose_input([str(tmp_path / "a.csv"), str(tmp_path / "x.txt")], None)
    with pytest.raises(Exception, match="not a .jsonl"):
        choose_input([str(tmp_path / "d")], "texts")


# -- predictions ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_texts_get_the_topic_and_cluster_of_their_text_and_keep_their_ids(tmp_path, tiny_model, fake_embedder, suffix):
    records = TEXT_RECORDS[::-1]  # ids not in sorted order: a writer that sorts or renumbers shows
    path = write_table(tmp_path / f"texts{suffix}", records)
    rows, errors = read_rows([str(path)], "auto", tiny_model)
    assert not errors and [r.kind for r in rows] == ["text"] * len(records)
    df = predict_rows(tiny_model, rows, embedder=fake_embedder)
    assert df["id"].tolist() == [r["id"] for r in records]
    assert df["row"].tolist() == list(range(1, len(records) + 1))
    X = fake_embedder.encode([join_text(r["title"], r["snippet"]) for r in records])
    assert df["topic"].tolist() == tiny_model.topic.predict(X).tolist()
    assert df["cluster_id"].tolist() == tiny_model.clusterer.predict(X).tolist()
    assert df["stance"].isna().all() and df["stance_score"].isna().all()


@pytest.mark.parametrize("headline_column", ["headline", "target"])
def test_pairs_get_the_stance_of_each_pair_alone(tmp_path, tiny_model, fake_embedder, headline_column):
    records = [{("target" if k == "headline" else k): v for k, v in r.items()} if headline_column == "target" else r
               for r in PAIR_RECORDS]
    path = write_table(tmp_path / "pairs.csv", records)
    rows, errors = read_rows([str(path)], "auto", tiny_model)
    assert not errors and {r.kind for r in rows} == {"pair"}
    df = predict_rows(tiny_model, rows, embedder=fake_embedder)
    assert df["id"].tolist() == [r["id"] for r in PAIR_RECORDS]
    for i, r in enumerate(PAIR_RECORDS):  # each pair alone: the same label and score as in the batch
        label, score = stance_predict(tiny_model, [r["headline"]], [r["text"]], fake_embedder.encode)
        assert df.loc[i, "stance"] == label[0]
        assert df.loc[i, "stance_score"] == pytest.approx(round(float(score[0]), 4))
        alone = predict_rows(tiny_model, [rows[i]], embedder=fake_embedder)
        pd.testing.assert_frame_equal(alone.reset_index(drop=True), df.iloc[[i]].reset_index(drop=True),
                                      check_dtype=False)
    X = fake_embedder.encode([r["text"] for r in PAIR_RECORDS])  # the topic of the pair's text
    assert df["topic"].tolist() == tiny_model.topic.predict(X).tolist()
    assert df["stance"].notna().all() and len(set(df["stance"])) > 1


def test_no_id_column_gives_row_numbers_blank_lines_not_counted(tmp_path, tiny_model, fake_embedder):
    path = tmp_path / "t.jsonl"
    lines = [json.dumps({"text": join_text(t, s)}) for t, s, _ in TOPIC_ROWS[:4]]
    path.write_text(lines[0] + "\n\n" + "\n".join(lines[1:]) + "\n\n")
    rows, errors = read_rows([str(path)])
    assert not errors
    df = predict_rows(tiny_model, rows, embedder=fake_embedder)
    assert df["id"].tolist() == ["1", "2", "3", "4"] and df["row"].tolist() == [1, 2, 3, 4]


def test_integer_ids_are_carried_as_text(tmp_path, tiny_model, fake_embedder):
    path = write_table(tmp_path / "t.parquet", [{"id": 1000 + i, "text": t} for i, (t, _, _) in enumerate(TOPIC_ROWS[:3])])
    rows, errors = read_rows([str(path)])
    assert not errors and [r.id for r in rows] == ["1000", "1001", "1002"]


def test_bad_rows_are_reported_by_file_and_row_and_the_rest_predicted(tmp_path, tiny_model):
    records = [dict(r) for r in PAIR_RECORDS[:6]]
    records[2]["text"] = None  # row 3: missing
    records[4]["text"] = "   "  # row 5: empty
    path = write_table(tmp_path / "pairs.csv", records)
    jl = tmp_path / "more.jsonl"
    jl.write_text("\n".join([json.dumps(PAIR_RECORDS[0]), json.dumps({**PAIR_RECORDS[1], "text": 42}), "{not json",
                             json.dumps(["a", "list"]), json.dumps({**PAIR_RECORDS[2], "id": None}),
                             json.dumps(PAIR_RECORDS[3])]) + "\n")
    rows, errors = read_rows([str(path), str(jl), str(tmp_path / "gone.parquet")], "auto", tiny_model)
    messages = [str(e) for e in errors]
    assert messages == [f"{path}:3: missing 'text'", f"{path}:5: empty 'text'",
                        f"{jl}:2: 'text' must be text, found int 42", f"{jl}:3: invalid JSON (Expecting property name "
                        "enclosed in double quotes)", f"{jl}:4: expected a JSON object, found list",
                        f"{jl}:5: missing 'id'", f"{tmp_path / 'gone.parquet'}: no such file or directory"]
    assert [(r.file, r.row, r.id) for r in rows] == [(str(path), 1, "p0"), (str(path), 2, "p1"), (str(path), 4, "p3"),
                                                     (str(path), 6, "p5"), (str(jl), 1, "p0"), (str(jl), 6, "p3")]


def test_cli_bad_row_one_line_each_exit_1_rest_written(tmp_path, model_dir):
    records = [{**r, "id": f"{r['id']}-{k}"} for k in range(2) for r in PAIR_RECORDS]
    records[16]["text"] = None  # row 17
    path = write_table(tmp_path / "pairs.csv", records)
    out = tmp_path / "out.jsonl"
    code, _, err = run("predict", path, "--model", model_dir, "-o", out, "-q")
    assert code == 1
    assert err.splitlines() == [f"error: {path}:17: missing 'text'"]
    df = read_output(out)
    assert df["id"].tolist() == [r["id"] for i, r in enumerate(records) if i != 16]
    assert df["stance"].notna().all()


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_streamed_output_equals_one_pass_whatever_the_chunk_size(tmp_path, tiny_model, fake_embedder, suffix):
    texts = write_table(tmp_path / "texts.csv", TEXT_RECORDS)
    pairs = write_table(tmp_path / "pairs.parquet", PAIR_RECORDS)
    inputs = [str(texts), str(pairs)]
    rows, _ = read_rows(inputs, "auto", tiny_model)
    expected = predict_rows(tiny_model, rows, embedder=fake_embedder)
    outputs = []
    for size in [1, 5, 10**6]:
        out = tmp_path / f"s{size}{suffix}"
        result = predict_to_file(tiny_model, inputs, out, chunk_size=size, embedder=fake_embedder, quiet=True,
                                 table_kind="auto")
        assert result.rows == len(expected) and result.files == 2 and not result.errors
        outputs.append(out.read_bytes())
        got = read_output(out)
        assert got["id"].astype(str).tolist() == expected["id"].tolist()
        assert got["stance"].fillna("-").tolist() == expected["stance"].fillna("-").tolist()
        assert got["topic"].tolist() == expected["topic"].tolist()
    if suffix != ".parquet":
        assert outputs[0] == outputs[1] == outputs[2]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_parquet_output_is_typed(tmp_path, tiny_model, fake_embedder):
    pairs = write_table(tmp_path / "pairs.jsonl", PAIR_RECORDS)
    out = tmp_path / "o.parquet"
    predict_to_file(tiny_model, [str(pairs)], out, chunk_size=4, embedder=fake_embedder, quiet=True, table_kind="auto")
    f = pq.ParquetFile(out)
    assert f.schema_arrow == TABULAR_SCHEMA and f.num_row_groups == 4  # 13 rows, 4 at a time


def test_jsonl_output_has_no_nan(tmp_path, model_dir):
    texts = write_table(tmp_path / "texts.jsonl", TEXT_RECORDS)
    out = tmp_path / "o.jsonl"
    code, _, err = run("predict", texts, "--model", model_dir, "-o", out, "-q")
    assert code == 0, err
    assert "NaN" not in out.read_text()
    first = json.loads(out.read_text().splitlines()[0])
    assert first["stance"] is None and first["stance_score"] is None and first["id"] == TEXT_RECORDS[0]["id"]
    assert set(first) == set(TABULAR_SCHEMA.names)


def test_input_format_names_the_kind(tmp_path, model_dir):
    pairs = write_table(tmp_path / "pairs.csv", PAIR_RECORDS)
    texts = write_table(tmp_path / "texts.csv", TEXT_RECORDS)
    out = tmp_path / "o.csv"
    code, _, err = run("predict", pairs, "--model", model_dir, "-o", out, "--input-format", "texts", "-q")
    assert code == 0, err
    df = read_output(out)
    assert set(df["kind"]) == {"text"} and df["stance"].isna().all()
    code, _, err = run("predict", texts, "--model", model_dir, "-o", out, "--input-format", "pairs", "-q")
    assert code == 1 and "texts.csv: pairs need a 'headline' (or 'target') column" in err and "Traceback" not in err
    code, _, err = run("predict", texts, "--model", model_dir, "-o", out, "--input-format", "csv")
    assert code == 2 and "Traceback" not in err


def test_usage_errors_are_one_line(tmp_path, model_dir):
    texts = write_table(tmp_path / "texts.csv", TEXT_RECORDS)
    (tmp_path / "a.txt").write_text("x")
    code, _, err = run("predict", texts, tmp_path / "a.txt", "--model", model_dir, "-o", tmp_path / "o.csv")
    assert code == 2 and err.startswith("error: ") and "separate runs" in err and len(err.splitlines()) == 1
    code, _, err = run("predict", texts, "--model", model_dir, "-o", tmp_path / "o.parquet", "--engine", "ray")
    assert code == 2 and "--engine ray reads dumps only" in err and len(err.splitlines()) == 1
    bad = write_table(tmp_path / "bad.csv", [{"headline_x": "a", "body": "b"}])
    code, _, err = run("predict", bad, "--model", model_dir, "-o", tmp_path / "o.csv")
    assert code == 1 and "bad.csv: no 'text' (or 'title' + 'snippet') column" in err
    (tmp_path / "empty.jsonl").write_text("\n")
    code, _, err = run("predict", tmp_path / "empty.jsonl", "--model", model_dir, "-o", tmp_path / "o.csv")
    assert code == 1 and "empty.jsonl: empty table" in err
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    code, _, err = run("predict", tmp_path / "junk.parquet", "--model", model_dir, "-o", tmp_path / "o.csv")
    assert code == 1 and "junk.parquet: not a Parquet file" in err and "Traceback" not in err


def test_pairs_need_a_stance_model(tmp_path, tiny_config, fake_embedder):
    cfg = tiny_config.model_copy(deep=True)
    cfg.stance.enabled = False
    model = train(cfg, quiet=True, embedder=fake_embedder)
    pairs = write_table(tmp_path / "pairs.csv", PAIR_RECORDS)
    rows, errors = read_rows([str(pairs)], "auto", model)
    assert not rows and len(errors) == 1 and "needs a model with a stance classifier" in str(errors[0])


def test_terminal_table(tmp_path, model_dir):
    pairs = write_table(tmp_path / "pairs.csv", PAIR_RECORDS[:3])
    code, out, err = run("predict", pairs, "--model", model_dir, "-q")
    assert code == 0, err
    assert "p0" in out and "p2" in out and "stance" in out


# -- evaluate ------------------------------------------------------------------------------------------------------
def test_evaluate_labelled_pairs_table(tmp_path, model_dir, tiny_model, fake_embedder):
    records = [{**r, "stance": st["stance"]} for r, st in zip(PAIR_RECORDS, (st for rec in STANCE_ROWS for st in rec["stories"]))]
    path = write_table(tmp_path / "gold.csv", records)
    out = tmp_path / "r.json"
    code, text, err = run("evaluate", model_dir, "--data", path, "-o", out, "-q")
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["data"] == {"topic_texts": 0, "stance_pairs": 12} and "topic" not in report
    pred, _ = stance_predict(tiny_model, [r["headline"] for r in records], [r["text"] for r in records],
                             fake_embedder.encode)
    gold = np.array([r["stance"] for r in records])
    assert report["stance"]["accuracy"] == pytest.approx(float(np.mean(pred == gold)))
    groups = report["stance"]["per_group"]
    assert [g["group"] for g in groups] == [rec["headline"] for rec in STANCE_ROWS] and all(g["n"] == 3 for g in groups)
    first = gold[:3] == pred[:3]
    assert groups[0]["accuracy"] == pytest.approx(float(first.mean()))
    assert "f_avg" not in report["stance"]  # FNC labels: no favor / against
    assert "largest 4 of 4 groups" in text


def test_evaluate_labelled_texts_table_and_bad_label(tmp_path, model_dir):
    path = write_table(tmp_path / "gold.parquet", [{"text": join_text(t, s), "topic": k} for t, s, k in TOPIC_ROWS])
    code, text, err = run("evaluate", model_dir, "--data", path, "-q")
    assert code == 0, err
    assert "evaluated on 16 topic texts and 0 stance pairs" in text and "topic" in text
    bad = write_table(tmp_path / "bad.jsonl", [{"text": "a text", "topic": "sports"}])
    code, _, err = run("evaluate", model_dir, "--data", bad, "-q")
    assert code == 2 and "bad.jsonl:1: topic 'sports' is not one of labels.topics" in err and "Traceback" not in err
    unlabelled = write_table(tmp_path / "u.csv", [{"text": "a text"}])
    code, _, err = run("evaluate", model_dir, "--data", unlabelled, "-q")
    assert code == 2 and "u.csv:1: missing 'topic'" in err


# -- metrics -------------------------------------------------------------------------------------------------------
def test_f_avg_averages_favor_and_against_only():
    gold = ["favor", "favor", "against", "against", "none", "none"]
    pred = ["favor", "none", "against", "favor", "none", "none"]
    # favor: tp 1, fp 1, fn 1 -> F1 0.5; against: tp 1, fp 0, fn 1 -> F1 2/3; none: tp 2, fp 1 -> 0.8 (not averaged)
    assert f_avg(gold, pred) == pytest.approx((0.5 + 2 / 3) / 2)
    assert f_avg(gold, pred) != pytest.approx((0.5 + 2 / 3 + 0.8) / 3)
    assert f_avg(["favor", "against"], ["against", "favor"]) == 0.0


def test_per_group_report_by_hand():
    gold = ["a", "b", "a", "a", "b"]
    pred = ["a", "a", "a", "b", "b"]
    groups = ["h1", "h2", "h2", "h2", "h1"]
    rows = per_group_report(gold, pred, groups)
    assert [r["group"] for r in rows] == ["h2", "h1"] and [r["n"] for r in rows] == [3, 2]
    assert rows[0]["accuracy"] == pytest.approx(1 / 3) and rows[1]["accuracy"] == 1.0
    # h2: gold b,a,a / pred a,a,b -> a: tp 1 fp 1 fn 1 (F1 .5); b: tp 0 (F1 0) -> macro .25
    assert rows[0]["macro_f1"] == pytest.approx(0.25) and rows[1]["macro_f1"] == 1.0
    fa = per_group_report(["favor", "none"], ["favor", "against"], ["t", "t"], favor_against=True)
    assert fa[0]["f_avg"] == pytest.approx(0.5)


def test_format_report_shows_f_avg_and_the_largest_groups():
    stance = {"accuracy": 0.5, "macro_f1": 0.4, "f_avg": 0.55,
              "per_group": [{"group": f"target {i}", "n": 10 - i, "accuracy": 0.5, "macro_f1": 0.4, "f_avg": 0.3}
                            for i in range(8)],
              "per_class": {k: {"precision": 0, "recall": 0, "f1-score": 0, "support": 1} for k in ("favor", "against", "none")},
              "confusion": {"labels": ["favor", "against", "none"], "matrix": [[1, 0, 0]] * 3}}
    text = format_report({"data": {"topic_texts": 0, "stance_pairs": 9}, "stance": stance})
    assert "F_avg 0.550" in text and "largest 5 of 8 groups" in text
    assert "target 4: 6 pairs" in text and "target 5" not in text


def test_stance_report_f_avg_only_with_favor_and_against(tmp_path):
    from classify.pipeline import stance_report

    cfg = validate_config({"labels": {"stances": ["favor", "against", "none"], "unrelated": None},
                           "data": {"train": [{"type": "topics_jsonl", "path": "x"}]}}, check_files=False)
    gold, pred = ["favor", "against", "none", "favor"], ["favor", "favor", "none", "none"]
    r = stance_report(gold, pred, [0.9] * 4, ["b"] * 4, ["s"] * 4, cfg, groups=["t1", "t1", "t2", "t2"])
    assert r["f_avg"] == pytest.approx(f_avg(gold, pred)) and "fnc_score" not in r
    assert [g["group"] for g in r["per_group"]] == ["t1", "t2"] and "f_avg" in r["per_group"][0]
