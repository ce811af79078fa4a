import json

import numpy as np
import pytest

from classify.dumps import parse_dump
from classify.errors import ModelError
from classify.model import load_model, save_model
from conftest import reseal
from classify.pipeline import PREDICTION_COLUMNS, evaluate, predict_dumps, train
from classify.data import load_corpus
from test_dumps import SAMPLE

OTHER = SAMPLE.replace("Ministers agree new rail deal", "Russian missiles knock out power in Kyiv")


def test_train_predict_roundtrip(tmp_path, tiny_model, fake_embedder):
    save_model(tiny_model, tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["clusters.json", "config.json", "meta.json", "reference.safetensors", "stance.json", "stance.skops",
                     "topic.skops"]
    loaded = load_model(tmp_path / "m")
    dumps = [parse_dump(SAMPLE, "a.txt"), parse_dump(OTHER, "b.txt")]
    before = predict_dumps(tiny_model, dumps, embedder=fake_embedder)
    after = predict_dumps(loaded, dumps, embedder=fake_embedder)
    assert list(after.columns) == PREDICTION_COLUMNS
    assert before.equals(after)
    assert after["kind"].tolist() == ["article", "related", "related"] * 2
    assert after["item"].tolist() == [0, 1, 2] * 2
    assert after.loc[after.kind == "article", "stance"].isna().all()
    assert set(after.loc[after.kind == "related", "stance"]) <= {"agree", "disagree", "discuss", "unrelated"}
    assert set(after["topic"]) <= {"ukraine_war", "iran_protests", "uk_politics", "other"}
    assert after.loc[3, "topic"] == "ukraine_war"


def test_a_dump_alone_gets_the_same_labels_as_in_a_batch(tiny_model, fake_embedder):
    dumps = [parse_dump(SAMPLE, "a.txt"), parse_dump(OTHER, "b.txt")]
    batch = predict_dumps(tiny_model, dumps, embedder=fake_embedder)
    alone = predict_dumps(tiny_model, dumps[1:], embedder=fake_embedder)
    assert batch[batch.dump == "b.txt"].reset_index(drop=True).equals(alone)


def test_all_texts_of_a_run_are_embedded_in_one_pass(tiny_model, fake_embedder):
    fake_embedder.calls = 0
    predict_dumps(tiny_model, [parse_dump(SAMPLE, "a.txt"), parse_dump(OTHER, "b.txt")], embedder=fake_embedder)
    assert fake_embedder.calls == 1


def test_same_config_and_data_give_the_same_model(tmp_path, tiny_config, fake_embedder):
    a = save_model(train(tiny_config, quiet=True, embedder=fake_embedder), tmp_path / "a")
    b = save_model(train(tiny_config, quiet=True, embedder=fake_embedder), tmp_path / "b")
    for name in ["clusters.json", "reference.safetensors"]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ma, mb = load_model(a), load_model(b)  # skops zips carry timestamps: compare the learned state
    np.testing.assert_array_equal(ma.topic.coef_, mb.topic.coef_)
    np.testing.assert_array_equal(ma.stance.classifier_.model_[-1].coef_, mb.stance.classifier_.model_[-1].coef_)
    assert (a / "stance.json").read_bytes() == (b / "stance.json").read_bytes()


def test_evaluate_reports_every_metric(tiny_model, tiny_config, fake_embedder):
    report = evaluate(tiny_model, load_corpus(tiny_config.data.test, tiny_config), embedder=fake_embedder)
    for part, key in [("topic", "accuracy"), ("topic", "macro_f1"), ("stance", "accuracy"), ("stance", "macro_f1"),
                      ("clustering", "nmi"), ("clustering", "ari")]:
        assert 0 <= report[part][key] <= 1 or part == "clustering"
    assert 0 <= report["stance"]["fnc_score"]["relative"] <= 1
    assert report["stance"]["confusion"]["labels"] == ["agree", "disagree", "discuss", "unrelated"]
    assert report["topic"]["accuracy"] > 0.5  # training data, bag-of-words embedder: must fit


def test_model_directory_errors(tmp_path, tiny_model):
    with pytest.raises(ModelError, match="model directory not found"):
        load_model(tmp_path / "nothing")
    d = save_model(tiny_model, tmp_path / "m")
    (d / "stance.skops").unlink()
    with pytest.raises(ModelError, match="missing stance.skops"):
        load_model(d)
    d = save_model(tiny_model, tmp_path / "m")
    (d / "topic.skops").write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match="topic.skops differs from the file the model was saved with"):
        load_model(d)
    reseal(d)  # a damaged file saved as such still ends in one line
    with pytest.raises(ModelError, match="topic.skops: corrupt"):
        load_model(d)
    d = save_model(tiny_model, tmp_path / "m")
    meta = json.loads((d / "meta.json").read_text())
    (d / "meta.json").write_text(json.dumps({**meta, "stance_features_version": 1}))
    with pytest.raises(ModelError, match="stance features version 1.*retrain"):
        load_model(d)
    (d / "meta.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelError, match="not a classify model"):
        load_model(d)
    (d / "meta.json").write_text("{truncated")
    with pytest.raises(ModelError, match="corrupt model file"):
        load_model(d)


def test_no_pickle_in_model_directory(tmp_path, tiny_model):
    d = save_model(tiny_model, tmp_path / "m")
    for f in d.iterdir():
        assert f.suffix in {".json", ".safetensors", ".skops"}
        assert not f.read_bytes().startswith(b"\x80")  # pickle protocol header


def test_unrelated_pairs_are_drawn_from_other_headlines(tiny_config):
    corpus = load_corpus(tiny_config.data.train, tiny_config)
    unrelated = [p for p in corpus.pairs if p.label == "unrelated"]
    assert len(unrelated) == 2 * 4
    own = {}
    for p in corpus.pairs:
        if p.label != "unrelated":
            own.setdefault(p.headline, set()).add(p.body)
    assert all(p.body not in own[p.headline] for p in unrelated)


def test_story_views_reach_training_and_keep_the_cross_encoder_steps(tiny_config, fake_embedder, monkeypatch):
    import classify.pipeline as pipeline
    from classify.stance import StanceModel

    seen = {}
    real_fit = StanceModel.fit

    def spy(self, headlines, bodies, labels, embed, groups=None, tune_on=None, **kwargs):
        seen["bodies"], seen["tune_on"] = list(bodies), tune_on
        return real_fit(self, headlines, bodies, labels, embed, groups, tune_on, **kwargs)

    monkeypatch.setattr(StanceModel, "fit", spy)
    plain = pipeline.train(tiny_config, quiet=True, embedder=fake_embedder)
    one = seen["bodies"]
    views = tiny_config.model_copy(deep=True)
    views.stance.views = ["full", "title"]
    viewed = pipeline.train(views, quiet=True, embedder=fake_embedder)
    titles = {pipeline.story_view(b, "title") for b in one}
    assert len(one) < len(seen["bodies"]) <= 2 * len(one) and titles <= set(seen["bodies"])
    # calibration is tuned on the full stories only: the same validation pairs as without views
    assert sum(seen["tune_on"]) == len(one)
    assert viewed.stance.validation_["pairs"] == plain.stance.validation_["pairs"]
    views.stance.cross_encoder.enabled, views.stance.cross_encoder.epochs = True, 3.0
    assert pipeline.build_stance(views, quiet=True).cross_encoder.epochs == 1.5


def test_train_mines_hard_negatives_with_the_configured_count_and_cap(tiny_config, fake_embedder, monkeypatch):
    import classify.pipeline as pipeline

    calls = []
    real = pipeline.hard_negatives
    monkeypatch.setattr(pipeline, "hard_negatives",
                        lambda pairs, embed, k, unrelated, cap=None: calls.append((k, unrelated, cap)) or
                        real(pairs, embed, k, unrelated, cap))
    config = tiny_config.model_copy(deep=True)
    config.stance.hard_negatives, config.stance.hard_negative_max_similarity = 3, 0.41
    config.stance.validation_hard_negatives = 5
    pipeline.train(config, quiet=True, embedder=fake_embedder)
    assert calls == [(5, "unrelated", 0.41)]  # a validation split: enough for it too (ranks 4-5 only tune)
    config.stance.validation_hard_negatives = 2
    pipeline.train(config, quiet=True, embedder=fake_embedder)
    assert calls[-1] == (3, "unrelated", 0.41)
    config.stance.calibrate, config.stance.cross_encoder.weight = False, 0.5  # no validation split
    config.stance.validation_hard_negatives = 5
    pipeline.train(config, quiet=True, embedder=fake_embedder)
    assert calls[-1] == (3, "unrelated", 0.41)
    config.stance.hard_negatives = 0
    calls.clear()
    pipeline.train(config, quiet=True, embedder=fake_embedder)
    assert calls == []  # nothing to train on, nothing to validate on: nothing mined
