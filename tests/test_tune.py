"""``classify tune``: grouped K-fold cross-validation over a grid of config settings on data.train."""

import json
import math

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import classify.pipeline
from classify.cli import app
from classify.config import load_config, validate_config
from classify.data import load_corpus
from classify.tune import SCORE_NAMES, format_tune, make_folds, parse_grid, primary_score, tune
from conftest import STANCE_ROWS, TOPIC_ROWS, FakeEmbedder, write_jsonl
from test_tabular import write_table

runner = CliRunner()

TARGETS = ["climate action", "the stadium plan", "rail strikes", "the wind farm", "school meals", "the tram line"]
FAVOR = ["campaigners support {t} and praise it", "residents welcome {t} warmly", "mayor backs {t} with enthusiasm"]
AGAINST = ["critics oppose {t} and condemn it", "residents reject {t} angrily", "unions attack {t} as a disaster"]
NONE = ["weather forecast shows rain on tuesday", "football club signs a new goalkeeper", "museum opens art exhibition"]


def semeval_records():
    """Favor / against / none pairs over six targets (SemEval-2016 style), with an event column per target."""
    out = []
    for i, t in enumerate(TARGETS):
        for label, texts in (("favor", FAVOR), ("against", AGAINST), ("none", NONE)):
            for j, text in enumerate(texts):
                out.append({"id": f"{i}-{label}-{j}", "target": t, "text": text.format(t=t) + f" (report {i}{j})",
                            "stance": label, "event": f"target{i}"})
    return out


def write_config(tmp_path, raw, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def fake(monkeypatch):
    emb = FakeEmbedder()
    monkeypatch.setattr(classify.pipeline, "make_embedder", lambda config, quiet=False: emb)
    return emb


@pytest.fixture
def semeval_config(tmp_path):
    table = write_table(tmp_path / "semeval.csv", semeval_records())
    topics = write_jsonl(tmp_path / "topics.jsonl", [{"title": t, "snippet": s, "topic": k} for t, s, k in TOPIC_ROWS])
    return write_config(tmp_path, {
        "seed": 0, "embedding": {"cache_dir": str(tmp_path / "cache")},
        "labels": {"stances": ["favor", "against", "none"], "unrelated": None},
        "data": {"train": [{"type": "table", "path": str(table)}, {"type": "topics_jsonl", "path": str(topics)}]},
        "clustering": {"enabled": False},
        "stance": {"classifier": {"C": 1.0}},
    })


@pytest.fixture
def fnc_config(tmp_path):
    topics = write_jsonl(tmp_path / "topics.jsonl", [{"title": t, "snippet": s, "topic": k} for t, s, k in TOPIC_ROWS * 2])
    stance = write_jsonl(tmp_path / "stance.jsonl", STANCE_ROWS)
    return write_config(tmp_path, {
        "seed": 0, "embedding": {"cache_dir": str(tmp_path / "cache")},
        "data": {"train": [{"type": "topics_jsonl", "path": str(topics)},
                           {"type": "stance_jsonl", "path": str(stance), "unrelated_per_headline": 2}]},
        "clustering": {"reducer": None, "knn": 3, "map_method": "pca"},
        "stance": {"calibrate": False},
    }, "fnc.yaml")


def test_parse_grid_values_are_yaml():
    assert parse_grid(["topic.C=0.5,2", "stance.two_stage=true,false", "clustering.n_clusters=,4", "x.y=a"]) == [
        ("topic.C", [0.5, 2]), ("stance.two_stage", [True, False]), ("clustering.n_clusters", [None, 4]), ("x.y", ["a"])]
    with pytest.raises(Exception, match="given twice"):
        parse_grid(["topic.C=1", "topic.C=2"])
    with pytest.raises(Exception, match="expected KEY=V1,V2"):
        parse_grid(["topic.C"])


def test_grid_of_2x2_on_favor_against_is_chosen_by_f_avg(tmp_path, semeval_config, fake):
    out = tmp_path / "best.yaml"
    result = runner.invoke(app, ["tune", str(semeval_config), "--grid", "stance.classifier.C=0.001,1",
                                 "--grid", "stance.embedding_features=false,true", "--folds", "3", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "setting 4/4" in result.stderr and "fold 3/3" in result.stderr  # progress
    table = result.stdout.splitlines()
    assert table[0].split()[:4] == ["#", "stance.classifier.C", "stance.embedding_features", "stance"]
    rows = [line for line in table[1:] if line.lstrip("* ").split(" ")[0].isdigit()]
    assert len(rows) == 4
    settings = [tuple(line.lstrip("* ").split()[1:3]) for line in rows]
    assert sorted(settings) == sorted([("0.001", "false"), ("0.001", "true"), ("1", "false"), ("1", "true")])
    f_avgs = [float(line.lstrip("* ").split()[3]) for line in rows]
    star = [i for i, line in enumerate(rows) if line.startswith("*")]
    assert len(set(f_avgs)) > 1  # the settings differ, so a wrong pick would show
    assert len(star) == 1 and f_avgs[star[0]] == max(f_avgs)
    assert "chosen by stance F_avg" in result.stdout
    winner = dict(zip(["stance.classifier.C", "stance.embedding_features"], settings[star[0]]))
    cfg = load_config(out)
    assert cfg.stance.classifier.C == float(winner["stance.classifier.C"])
    assert cfg.stance.embedding_features == (winner["stance.embedding_features"] == "true")
    assert cfg.labels.stances == ["favor", "against", "none"]
    assert out.read_text().startswith("# classify tune: best of 4 settings")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".best")] == []


def test_the_winner_is_the_best_mean(tmp_path, fnc_config, fake, monkeypatch):
    """Scores made up from the setting: topic macro-F1 peaks at topic.C=2 whatever the other key is."""
    def scored(model, corpus, embedder=None, quiet=False):
        c = model.config
        return {"topic": {"macro_f1": 1 - (c.topic.C - 2) ** 2 / 100 - c.topic.max_iter / 1e6}}

    monkeypatch.setattr(classify.pipeline, "evaluate", scored)
    result = tune(fnc_config, parse_grid(["topic.C=0.5,2,8", "topic.max_iter=300,100"]), folds=2,
                  overrides=["stance.enabled=false"], quiet=True)
    assert result.score == "topic_macro_f1" and len(result.settings) == 6
    assert result.settings[result.best].values == {"topic.C": 2, "topic.max_iter": 100}
    means = [s.mean("topic_macro_f1") for s in result.settings]
    assert result.best == int(np.argmax(means)) and all(len(s.scores["topic_macro_f1"]) == 2 for s in result.settings)
    text = format_tune(result)
    assert text.count("\n") == 7 and "* " in text.splitlines()[4]  # header, 6 rows, best line; row 4 is C=2, 100
    assert "chosen by topic macro-F1" in text


def test_fnc_labels_are_chosen_by_fnc_score_and_stance_f1_reported(tmp_path, fnc_config, fake):
    result = tune(fnc_config, parse_grid(["stance.classifier.C=0.1,1"]), folds=2, quiet=True)
    assert result.score == "stance_fnc"
    for s in result.settings:
        assert {"stance_fnc", "stance_macro_f1", "topic_macro_f1"} <= set(s.scores)
        assert all(0 <= v <= 1 for v in s.scores["stance_fnc"] if not math.isnan(v))
    assert "stance FNC score *" in format_tune(result) and "stance macro-F1" in format_tune(result)


def test_primary_score_by_scheme(tmp_path):
    def cfg(**kw):
        raw = {"data": {"train": [{"type": "topics_jsonl", "path": "x"}]}}
        for k, v in kw.items():
            raw.setdefault(k.split("__")[0], {})[k.split("__")[1]] = v
        return validate_config(raw, check_files=False)

    from classify.data import Corpus, StancePair

    both = Corpus(["t"], ["other"], [StancePair("h", "b", "agree")])
    assert primary_score(cfg(), both) == "stance_fnc"
    assert primary_score(cfg(labels__stances=["favor", "against", "none"], labels__unrelated=None), both) == "stance_f_avg"
    assert primary_score(cfg(labels__stances=["agree", "disagree", "unrelated"]), both) == "stance_macro_f1"
    assert primary_score(cfg(stance__enabled=False), both) == "topic_macro_f1"
    assert set(SCORE_NAMES) >= {"stance_fnc", "stance_f_avg", "stance_macro_f1", "topic_macro_f1"}


def test_folds_hold_out_whole_groups(tmp_path, fnc_config):
    cfg = load_config(fnc_config)
    corpus = load_corpus(cfg.data.train, cfg)
    folds = make_folds(corpus, 2)
    tgroups = corpus.text_groups()
    pgroups = [p.group for p in corpus.pairs]
    held_all = set()
    for tr_t, te_t, tr_p, te_p in folds:
        held = {tgroups[i] for i in te_t} | {pgroups[j] for j in te_p}
        assert not held & ({tgroups[i] for i in tr_t} | {pgroups[j] for j in tr_p})
        assert not {corpus.pairs[j].body_event for j in tr_p} & held  # no story of a held-out event in training
        assert set(te_p) | set(tr_p) <= set(range(len(corpus.pairs))) and not set(te_p) & set(tr_p)
        held_all |= set(te_p)
    assert held_all == set(range(len(corpus.pairs)))  # every pair is scored once
    # the stance data's headlines are topic texts too: a headline's event is held out of both at once
    assert any(g in pgroups for g in tgroups)
    with pytest.raises(Exception, match="use at most"):
        make_folds(corpus, 10**4)


def test_held_out_folds_are_scored_with_recommender_style_pairs(fnc_config, fake, monkeypatch):
    """With stance.validation_hard_negatives (default 4) each held-out fold also scores, for every held-out headline,
    its closest stories of *other held-out* events as `unrelated`, the same pairs for every setting; with 0, only
    the fold's own pairs."""
    seen = []
    real = classify.pipeline.evaluate

    def spy(model, corpus, **kwargs):
        seen.append(list(corpus.pairs))
        return real(model, corpus, **kwargs)

    monkeypatch.setattr(classify.pipeline, "evaluate", spy)
    cfg = load_config(fnc_config)
    corpus = load_corpus(cfg.data.train, cfg)
    folds = make_folds(corpus, 2)
    mined_run = tune(fnc_config, parse_grid(["stance.classifier.C=0.5,1"]), folds=2, quiet=True)
    assert len(seen) == 8  # per setting and fold: the fold with its mined pairs, then as written
    held, as_written = seen[0::2], seen[1::2]
    for f, (_, _, _, te_p) in enumerate(folds):
        own = [corpus.pairs[j] for j in te_p]
        held_events = {p.group for p in own}
        for scored in (held[f], held[2 + f]):  # setting 1 and setting 2: the same pairs
            extra = scored[len(own):]
            assert scored[:len(own)] == own and extra and extra == (held[2 + f][len(own):])
            assert all(p.label == "unrelated" and p.mined >= 1 for p in extra)
            assert all(p.body_event in held_events and p.body_event != p.group for p in extra)
        assert as_written[f] == own and as_written[2 + f] == own
    seen.clear()
    tune(fnc_config, parse_grid(["stance.classifier.C=1"]), folds=2, quiet=True,
         overrides=["stance.validation_hard_negatives=0"])
    assert [len(s) for s in seen] == [len(te_p) for _, _, _, te_p in folds]
    seen.clear()  # --mined-negatives 0: the held-out pairs as written, whatever the config validates on
    result = tune(fnc_config, parse_grid(["stance.classifier.C=1"]), folds=2, quiet=True, mined_negatives=0)
    assert [len(s) for s in seen] == [len(te_p) for _, _, _, te_p in folds]
    seen.clear()  # ... or another count than the config's
    tune(fnc_config, parse_grid(["stance.classifier.C=1"]), folds=2, quiet=True, mined_negatives=1,
         overrides=["stance.validation_hard_negatives=0"])
    for f, (_, _, _, te_p) in enumerate(folds):
        extra = seen[2 * f][len(te_p):]  # (each fold then scored as written)
        assert extra and all(p.mined == 1 for p in extra)
        assert len({p.headline for p in extra}) == len(extra)  # one per held-out headline
    # accuracy and related/unrelated accuracy are reported beside the deciding score
    s = result.settings[0].scores
    assert {"stance_accuracy", "stance_related_accuracy", "stance_fnc", "stance_macro_f1"} <= set(s)
    assert all(0 <= v <= 1 for v in s["stance_accuracy"]) and s["stance_accuracy"] != s["stance_macro_f1"]
    with pytest.raises(Exception, match="--mined-negatives -1"):
        tune(fnc_config, parse_grid(["stance.classifier.C=1"]), folds=2, quiet=True, mined_negatives=-1)
    # the mined run also scores each fold as written: what a run with --mined-negatives 0 scores, and the mean
    # of the two accuracies (the criterion that weighs a page's close and far other-event stories alike)
    got = mined_run.settings[1].scores  # C=1, as in `result`
    assert got["stance_accuracy_written"] == s["stance_accuracy"]
    assert got["stance_accuracy_written"] != got["stance_accuracy"]
    assert got["stance_accuracy_both"] == [(a + b) / 2 for a, b in zip(got["stance_accuracy"], s["stance_accuracy"])]
    assert "stance_accuracy_written" not in s and "stance_accuracy_both" not in s  # nothing mined: nothing to add
    both = tune(fnc_config, parse_grid(["stance.embedding_features=true,false", "stance.two_stage=true,false"]),
                folds=2, quiet=True, score="stance_accuracy_both")
    means = [x.mean("stance_accuracy_both") for x in both.settings]
    assert both.best == int(np.argmax(means)) and len(set(np.round(means, 9))) > 1
    assert "stance accuracy, mean of mined and as written *" in format_tune(both)
    with pytest.raises(Exception, match="no stance accuracy as written"):
        tune(fnc_config, parse_grid(["stance.classifier.C=1"]), folds=2, quiet=True, mined_negatives=0,
             score="stance_accuracy_written")


def test_cross_encoder_path_runs(tmp_path, semeval_config, fake, monkeypatch):
    class FakeCrossEncoder:
        fits = 0

        def __init__(self, *args, **kwargs):
            pass

        def fit(self, headlines, contexts, labels):
            FakeCrossEncoder.fits += 1
            self.classes_ = np.unique(labels)
            return self

        def predict_proba(self, headlines, contexts):
            return np.full((len(headlines), len(self.classes_)), 1 / len(self.classes_))

    monkeypatch.setattr(classify.pipeline, "CrossEncoder", FakeCrossEncoder)
    result = tune(semeval_config, parse_grid(["stance.cross_encoder.weight=0,0.5"]), folds=2,
                  overrides=["stance.cross_encoder.enabled=true"], quiet=True)
    assert FakeCrossEncoder.fits >= 4 and result.score == "stance_f_avg"
    assert all(len(s.scores["stance_f_avg"]) == 2 for s in result.settings)


def test_settings_that_leave_the_cross_encoder_alone_share_its_fit_per_fold(semeval_config, fake, capsys, monkeypatch):
    """A real (tiny) cross-encoder: a 3-value grid over the mixing weight trains it once per fold (calibrate off:
    one fit per fold, on the fold's training part), the same scores as training it per setting; a grid over
    its own key trains it per setting and fold."""
    import classify.crossencoder as ce_mod

    ce = ["stance.cross_encoder.enabled=true", "stance.cross_encoder.epochs=1", "stance.cross_encoder.max_length=24",
          "stance.cross_encoder.batch_size=8", "stance.calibrate=false"]
    before = ce_mod.FITS_RUN
    scored, real = [], ce_mod.CrossEncoder._score

    def spy(self, headlines, contexts, batch_size):
        scored.extend((id(self.encoder_), h, c) for h, c in zip(headlines, contexts))
        return real(self, headlines, contexts, batch_size)

    monkeypatch.setattr(ce_mod.CrossEncoder, "_score", spy)
    shared = tune(semeval_config, parse_grid(["stance.cross_encoder.weight=0.25,0.5,1"]), folds=2, overrides=ce,
                  quiet=False)
    assert ce_mod.FITS_RUN - before == 2  # 2 folds, not 3 settings x 2 folds
    assert scored and len(scored) == len(set(scored))  # ... and each of its pairs scored once, not per setting
    err = capsys.readouterr().err
    assert "fold 2/2" in err and "cross-encoder:" in err  # the long fit inside a fold shows its progress bar
    alone = tune(semeval_config, parse_grid(["stance.cross_encoder.weight=1"]), folds=2, overrides=ce, quiet=True)
    assert alone.settings[0].scores == shared.settings[2].scores  # sharing changes no score
    before = ce_mod.FITS_RUN
    tune(semeval_config, parse_grid(["stance.cross_encoder.learning_rate=4e-5,8e-5"]), folds=2, overrides=ce,
         quiet=True)
    assert ce_mod.FITS_RUN - before == 4
    assert ce_mod._FITS.get() is None  # the memo lives only inside tune


@pytest.mark.parametrize("grid, words", [
    ("stance.classifer.C=1,2", ["stance.classifer", "unknown key"]),
    ("topic.C=-1,2", ["topic.C", "greater than 0"]),
    ("seed.x=1", ["--grid seed.x"]),
])
def test_bad_grid_is_one_line_exit_2(tmp_path, fnc_config, fake, grid, words):
    result = runner.invoke(app, ["tune", str(fnc_config), "--grid", grid, "-o", str(tmp_path / "t.yaml")])
    assert result.exit_code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and all(w in lines[0] for w in words), lines
    assert not (tmp_path / "t.yaml").exists()


def test_too_many_folds_and_bad_output(tmp_path, fnc_config, fake):
    result = runner.invoke(app, ["tune", str(fnc_config), "--grid", "topic.C=1", "--folds", "1000", "-q",
                                 "-o", str(tmp_path / "t.yaml")])
    assert result.exit_code == 2 and "--folds 1000" in result.stderr and "Traceback" not in result.stderr
    result = runner.invoke(app, ["tune", str(fnc_config), "--grid", "topic.C=1", "-o", str(tmp_path / "t.json")])
    assert result.exit_code == 2 and "unknown format" in result.stderr
    result = runner.invoke(app, ["tune", str(fnc_config), "--grid", "topic.C=1", "--mined-negatives", "-1",
                                 "-o", str(tmp_path / "t.yaml")])
    assert result.exit_code == 2 and "--mined-negatives" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "t.yaml").exists()


def test_result_as_json(tmp_path, fnc_config, fake):
    result = tune(fnc_config, parse_grid(["topic.C=1"]), folds=2, overrides=["stance.enabled=false"], quiet=True)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["score"] == "topic_macro_f1" and data["settings"][0]["values"] == {"topic.C": 1}


def test_a_fold_too_small_to_calibrate_is_one_line(tmp_path, fnc_config, fake):
    """Four headlines, two folds: the stance validation split of a fold's two headlines leaves a label out."""
    result = runner.invoke(app, ["tune", str(fnc_config), "--grid", "stance.calibrate=true", "--folds", "2", "-q",
                                 "-o", str(tmp_path / "t.yaml")])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "fold 1/2" in lines[0] and "stance.validation_size" in lines[0], lines


def test_settings_share_topic_and_cluster_fits_per_fold_and_skip_the_map(fnc_config, fake, monkeypatch):
    """A grid over a stance key fits the topic classifier and the clusterer once per fold (not per setting), a
    grid over topic.C fits the topic classifier per setting but the clusterer still once; no 2-D map is drawn;
    the scores are those of separate runs."""
    counts = {"topic": 0, "clusterer": 0, "map": 0}

    class CountingLogReg(classify.pipeline.LogisticRegression):
        def fit(self, X, y, sample_weight=None):
            counts["topic"] += 1
            return super().fit(X, y, sample_weight)

    def counting(name, fit):
        def wrapped(self, *args, **kwargs):
            counts[name] += 1
            return fit(self, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(classify.pipeline, "LogisticRegression", CountingLogReg)
    monkeypatch.setattr(classify.pipeline.TopicClusterer, "fit", counting("clusterer", classify.pipeline.TopicClusterer.fit))
    monkeypatch.setattr(classify.pipeline.MapProjector, "fit", counting("map", classify.pipeline.MapProjector.fit))
    features = []
    real_features = classify.stance.pair_features
    monkeypatch.setattr(classify.stance, "pair_features", lambda *a, **k: features.append(1) or real_features(*a, **k))
    shared = tune(fnc_config, parse_grid(["stance.classifier.C=0.5,1,2"]), folds=2, quiet=True)
    assert counts == {"topic": 2, "clusterer": 2, "map": 0}
    shared_features, features[:] = len(features), []
    alone = tune(fnc_config, parse_grid(["stance.classifier.C=2"]), folds=2, quiet=True)
    assert alone.settings[0].scores == shared.settings[2].scores
    assert shared_features == len(features) > 0  # stance features too: computed per fold, not per setting
    features.clear()
    tune(fnc_config, parse_grid(["stance.top_sentences=2,3"]), folds=2, quiet=True)
    assert len(features) == 2 * shared_features  # a feature setting computes its own
    assert {"topic_macro_f1", "clustering_nmi", "stance_fnc"} <= set(alone.settings[0].scores)
    counts.update(topic=0, clusterer=0)
    by_topic = tune(fnc_config, parse_grid(["topic.C=0.01,4"]), folds=2, quiet=True)
    assert counts == {"topic": 4, "clusterer": 2, "map": 0}
    assert by_topic.settings[0].scores["topic_macro_f1"] != by_topic.settings[1].scores["topic_macro_f1"]


def test_score_option_picks_the_winner_by_the_named_score(tmp_path, fnc_config, semeval_config, fake):
    result = tune(fnc_config, parse_grid(["stance.classifier.C=0.01,1,100"]), folds=2, quiet=True,
                  score="stance_accuracy", overrides=["stance.validation_hard_negatives=0"])
    assert result.score == "stance_accuracy"
    means = [s.mean("stance_accuracy") for s in result.settings]
    assert result.best == int(np.argmax(means))
    assert "stance accuracy *" in format_tune(result) and "chosen by stance accuracy" in format_tune(result)
    # what each scheme gives: F_avg only with favor/against, the FNC score only for FNC-1's labels,
    # related/unrelated accuracy only with an unrelated label
    from classify.tune import available_scores
    fnc = ({"stance_fnc", "stance_related_accuracy", "stance_accuracy"}, {"stance_f_avg"})
    semeval = ({"stance_f_avg", "stance_accuracy"}, {"stance_fnc", "stance_related_accuracy"})
    for path, (has, lacks) in ((fnc_config, fnc), (semeval_config, semeval)):
        cfg = load_config(path)
        given = available_scores(cfg, load_corpus(cfg.data.train, cfg))
        assert has <= given and not lacks & given, (path, given)
    # the CLI's choices are the scores tune knows
    from classify.cli import TuneScore
    assert {s.value for s in TuneScore} == set(SCORE_NAMES)


@pytest.mark.parametrize("args, words", [
    (["--score", "stance_f_avg"], ["--score stance_f_avg", "no stance F_avg", "stance_accuracy"]),
    (["--score", "loss"], ["--score"]),
])
def test_a_score_the_config_does_not_give_is_one_line(tmp_path, fnc_config, fake, args, words):
    result = runner.invoke(app, ["tune", str(fnc_config), "--grid", "stance.classifier.C=1", "--folds", "2", "-q",
                                 "-o", str(tmp_path / "t.yaml")] + args)
    assert result.exit_code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and all(w in result.stderr for w in words), lines
    assert not (tmp_path / "t.yaml").exists()
