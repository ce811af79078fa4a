"""The cross-encoder's pretraining on other stance data (`stance.cross_encoder.pretrain`, e.g. FNC-1): how the
pairs are drawn, that pretraining reaches the weights (and its settings matter), that `classify tune`'s folds
share one pretraining, and the config, data and meta around it."""

import csv
import json

import numpy as np
import pytest

from classify.config import validate_config
from classify.crossencoder import CrossEncoder, reuse_fits
from classify.data import StancePair
from classify.errors import ConfigError, DataError
from classify.pipeline import draw_pretraining, train

HEADS = ["Dam destroyed in the south", "Grain deal collapses"] * 4
STORIES = ["Flood waters rise after the dam blast.", "Moscow quits the Black Sea accord."] * 4
LABELS = ["agree", "discuss", "disagree", "agree", "unrelated", "agree", "discuss", "unrelated"]
PRE = (["Pope says aliens exist", "Singer dies in crash", "Hospital bombed in city"] * 2,
       ["Vatican denies the Pope said any such thing.", "The singer's agent says reports are false.",
        "Officials confirm the hospital was hit overnight.", "Nobody has confirmed the claim so far.",
        "Fans mourn as the crash is confirmed.", "Reports of a strike on the hospital are being checked."],
       ["disagree", "disagree", "agree", "discuss", "agree", "discuss"])
SETTINGS = dict(epochs=1, batch_size=4, max_length=32, show_progress=False)


def _pairs(counts: dict[str, int]) -> list[StancePair]:
    return [StancePair(f"h{label}{i}", f"b{label}{i}", label) for label, n in counts.items() for i in range(n)]


def test_draw_gives_each_label_an_equal_share_and_passes_on_what_a_small_label_leaves():
    pairs = _pairs({"agree": 10, "disagree": 2, "discuss": 30, "unrelated": 30})
    drawn = draw_pretraining(pairs, 20, seed=0)
    counts = {label: sum(p.label == label for p in drawn) for label in ("agree", "disagree", "discuss", "unrelated")}
    assert counts == {"agree": 6, "disagree": 2, "discuss": 6, "unrelated": 6}
    assert drawn == [p for p in pairs if p in drawn]  # in the order of the data
    assert draw_pretraining(pairs, 20, seed=0) == drawn
    assert draw_pretraining(pairs, 20, seed=1) != drawn
    assert draw_pretraining(pairs, 1000, seed=0) == pairs
    # a label with fewer than its share gives all it has; the others split the rest
    counts = [sum(p.label == "agree" for p in draw_pretraining(pairs, n, seed=0)) for n in (8, 60)]
    assert counts == [2, 10]


def test_draw_gives_the_unrelated_label_its_share_when_asked():
    pairs = _pairs({"agree": 10, "disagree": 2, "discuss": 30, "unrelated": 30})
    counts = lambda drawn: {label: sum(p.label == label for p in drawn)  # noqa: E731
                            for label in ("agree", "disagree", "discuss", "unrelated")}
    assert counts(draw_pretraining(pairs, 20, seed=0, share=("unrelated", 0.5))) == {
        "agree": 4, "disagree": 2, "discuss": 4, "unrelated": 10}
    assert counts(draw_pretraining(pairs, 20, seed=0, share=("unrelated", 0.2))) == {
        "agree": 7, "disagree": 2, "discuss": 7, "unrelated": 4}
    # more than the label holds: all of it, the rest to the others
    assert counts(draw_pretraining(pairs, 60, seed=0, share=("unrelated", 0.9))) == {
        "agree": 10, "disagree": 2, "discuss": 18, "unrelated": 30}
    # the share's pairs are the same ones the equal draw would take first (closest first with closeness)
    closeness = [0.0] * 42 + [i / 30 for i in range(30)]
    drawn = draw_pretraining(pairs, 20, seed=0, closeness=closeness, closest="unrelated", share=("unrelated", 0.5))
    assert sorted(p.body for p in drawn if p.label == "unrelated") == sorted(f"bunrelated{i}" for i in range(20, 30))
    assert draw_pretraining(pairs, 20, seed=0, share=("other", 0.5)) == draw_pretraining(pairs, 20, seed=0)


def test_pretraining_moves_the_weights_its_epochs_count_and_labels_must_be_known():
    plain = CrossEncoder(**SETTINGS).fit(HEADS, STORIES, LABELS)
    pre = CrossEncoder(**SETTINGS).fit(HEADS, STORIES, LABELS, pretrain=PRE)
    again = CrossEncoder(**SETTINGS).fit(HEADS, STORIES, LABELS, pretrain=PRE)
    longer = CrossEncoder(**SETTINGS, pretrain_epochs=3).fit(HEADS, STORIES, LABELS, pretrain=PRE)
    p_plain, p_pre = plain.predict_proba(HEADS, STORIES), pre.predict_proba(HEADS, STORIES)
    assert not np.allclose(p_plain, p_pre, atol=1e-6)
    np.testing.assert_array_equal(p_pre, again.predict_proba(HEADS, STORIES))
    assert not np.allclose(p_pre, longer.predict_proba(HEADS, STORIES), atol=1e-6)
    empty = CrossEncoder(**SETTINGS).fit(HEADS, STORIES, LABELS, pretrain=([], [], []))
    np.testing.assert_array_equal(p_plain, empty.predict_proba(HEADS, STORIES))
    with pytest.raises(ValueError, match="'disagree' is not a label"):
        CrossEncoder(**SETTINGS).fit(HEADS, STORIES, ["agree", "discuss"] * 4, pretrain=PRE)


def test_pretrained_stance_head_learns_the_pretraining_labels():
    # 30 passes over the pretraining pairs and none over the stance pairs' labels it lacks: it has learnt them
    ce = CrossEncoder(**{**SETTINGS, "epochs": 0.01}, pretrain_epochs=30)
    ce.fit(HEADS, STORIES, LABELS, pretrain=PRE)
    pred = ce.classes_[ce.predict_proba(PRE[0], PRE[1]).argmax(axis=1)]
    assert (pred == np.array(PRE[2])).mean() >= 5 / 6


def test_folds_share_one_pretraining(monkeypatch):
    runs = []
    original = CrossEncoder._train

    def counting(self, batches, tasks, params, desc, **kwargs):
        runs.append(desc)
        return original(self, batches, tasks, params, desc, **kwargs)

    monkeypatch.setattr(CrossEncoder, "_train", counting)
    alone = CrossEncoder(**SETTINGS).fit(HEADS[2:], STORIES[2:], LABELS[2:], pretrain=PRE)
    runs.clear()
    with reuse_fits():
        a = CrossEncoder(**SETTINGS).fit(HEADS, STORIES, LABELS, pretrain=PRE)
        b = CrossEncoder(**SETTINGS).fit(HEADS[2:], STORIES[2:], LABELS[2:], pretrain=PRE)
    assert runs == ["cross-encoder pretraining", "cross-encoder", "cross-encoder"]
    # loading the shared pretraining gives the same model as running it (to float noise of memory layout)
    np.testing.assert_allclose(b.predict_proba(HEADS, STORIES), alone.predict_proba(HEADS, STORIES), atol=1e-6)
    assert not np.allclose(a.predict_proba(HEADS, STORIES), b.predict_proba(HEADS, STORIES), atol=1e-6)


def _fnc_files(tmp_path, rows):
    bodies = tmp_path / "bodies.csv"
    with open(bodies, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Body ID", "articleBody"])
        for i, (_, body, _) in enumerate(rows):
            w.writerow([i, body])
    stances = tmp_path / "stances.csv"
    with open(stances, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Headline", "Body ID", "Stance"])
        for i, (head, _, label) in enumerate(rows):
            w.writerow([head, i, label])
    return {"type": "headline_body_csv", "path": str(stances), "bodies": str(bodies)}


def test_train_pretrains_on_the_configured_source_and_says_so(tmp_path, tiny_config, fake_embedder):
    rows = list(zip(*PRE)) + [("Pope says aliens exist", "Stocks rose on Tuesday.", "unrelated")] * 3
    raw = tiny_config.model_dump()
    ce = {"enabled": True, "labels": "all", "weight": 0.5, "epochs": 1, "batch_size": 4, "max_length": 32,
          "pretrain": [_fnc_files(tmp_path, rows)], "pretrain_pairs": 5}
    raw["stance"].update(calibrate=False, cross_encoder=ce)
    model = train(validate_config(raw, check_files=False), quiet=True, embedder=fake_embedder)
    info = model.meta["cross_encoder_pretrain"]
    assert info["pairs"] == 5 and info["of"] == 9 and info["epochs"] == 1.0
    assert info["counts"] == {"agree": 1, "disagree": 1, "discuss": 1, "unrelated": 2}
    json.dumps(model.meta, allow_nan=False)
    raw["stance"]["cross_encoder"] = {k: v for k, v in ce.items() if not k.startswith("pretrain")}
    plain = train(validate_config(raw, check_files=False), quiet=True, embedder=fake_embedder)
    assert "cross_encoder_pretrain" not in plain.meta
    h, b = ["Pope says aliens exist"], ["Vatican denies it."]
    assert not np.allclose(model.stance.cross_encoder_.predict_proba(h, b),
                           plain.stance.cross_encoder_.predict_proba(h, b), atol=1e-6)


def test_pretraining_labels_and_paths_are_checked(tmp_path, tiny_config, fake_embedder):
    raw = tiny_config.model_dump()
    bad = _fnc_files(tmp_path, [("Pope says aliens exist", "A body.", "refutes")])
    raw["stance"].update(calibrate=False, cross_encoder={"enabled": True, "epochs": 1, "batch_size": 4,
                                                         "max_length": 32, "pretrain": [bad]})
    with pytest.raises(DataError, match=r"stances.csv:2: .*'refutes'"):
        train(validate_config(raw, check_files=False), quiet=True, embedder=fake_embedder)
    raw["stance"]["cross_encoder"]["pretrain"] = [{**bad, "path": str(tmp_path / "missing.csv")}]
    with pytest.raises(ConfigError, match=r"stance\.cross_encoder\.pretrain\.0\.path: file not found"):
        validate_config(raw)
    raw["stance"]["cross_encoder"]["pretrain"] = []
    raw["stance"]["cross_encoder"]["pretrain_pairs"] = 0
    with pytest.raises(ConfigError, match="pretrain_pairs"):
        validate_config(raw, check_files=False)


def test_draw_takes_the_closest_unrelated_pairs_when_asked():
    pairs = _pairs({"agree": 4, "unrelated": 6})
    closeness = [0.0] * 4 + [0.1, 0.9, 0.3, 0.8, 0.2, 0.7]
    drawn = draw_pretraining(pairs, 6, seed=0, closeness=closeness, closest="unrelated")
    assert [p.body for p in drawn if p.label == "unrelated"] == ["bunrelated1", "bunrelated3", "bunrelated5"]
    assert sum(p.label == "agree" for p in drawn) == 3
    random = draw_pretraining(pairs, 6, seed=0)
    assert [p for p in random if p.label == "agree"] == [p for p in drawn if p.label == "agree"]


def test_mixed_order_spreads_the_pretraining_batches_in_one_run(monkeypatch):
    runs = []
    original = CrossEncoder._train

    def counting(self, batches, tasks, params, desc, **kwargs):
        runs.append((desc, sorted({task for task, _ in batches})))
        return original(self, batches, tasks, params, desc, **kwargs)

    monkeypatch.setattr(CrossEncoder, "_train", counting)
    before = CrossEncoder(**SETTINGS).fit(HEADS, STORIES, LABELS, pretrain=PRE)
    mixed = CrossEncoder(**SETTINGS, pretrain_order="mixed").fit(HEADS, STORIES, LABELS, pretrain=PRE)
    again = CrossEncoder(**SETTINGS, pretrain_order="mixed").fit(HEADS, STORIES, LABELS, pretrain=PRE)
    assert runs == [("cross-encoder pretraining", ["pretrain"]), ("cross-encoder", ["stance"]),
                    ("cross-encoder", ["pretrain", "stance"]), ("cross-encoder", ["pretrain", "stance"])]
    p_mixed = mixed.predict_proba(HEADS, STORIES)
    np.testing.assert_array_equal(p_mixed, again.predict_proba(HEADS, STORIES))
    assert not np.allclose(p_mixed, before.predict_proba(HEADS, STORIES), atol=1e-6)


def test_closest_unrelated_pretraining_pairs_are_the_recommenders_picks(tmp_path, tiny_config, fake_embedder):
    from classify.pipeline import pretraining_pairs

    rows = list(zip(*PRE)) + [("Pope says aliens exist", "Stocks rose on Tuesday.", "unrelated"),
                              ("Pope says aliens exist", "Pope says aliens exist, say critics.", "unrelated"),
                              ("Singer dies in crash", "Rain is due on Friday.", "unrelated")]
    raw = tiny_config.model_dump()
    raw["stance"]["cross_encoder"] = {"enabled": True, "pretrain": [_fnc_files(tmp_path, rows)], "pretrain_pairs": 4,
                                      "pretrain_unrelated": "closest"}
    (heads, contexts, labels), info, _, _ = pretraining_pairs(validate_config(raw, check_files=False), fake_embedder,
                                                        quiet=True)
    assert info["unrelated"] == "closest" and labels.count("unrelated") == 1
    assert contexts[labels.index("unrelated")] == "Pope says aliens exist, say critics."
    raw["stance"]["cross_encoder"]["pretrain_unrelated_share"] = 0.5  # 2 of the 4: the two closest
    (heads, contexts, labels), info, _, _ = pretraining_pairs(validate_config(raw, check_files=False), fake_embedder,
                                                        quiet=True)
    assert info["unrelated_share"] == 0.5 and info["counts"]["unrelated"] == 2 and len(labels) == 4
    assert "Pope says aliens exist, say critics." in contexts
    for bad in (0, 1, 1.5):
        raw["stance"]["cross_encoder"]["pretrain_unrelated_share"] = bad
        with pytest.raises(ConfigError, match="pretrain_unrelated_share"):
            validate_config(raw, check_files=False)


def test_pretraining_contexts_are_chosen_as_the_model_chooses_its_own(tmp_path, tiny_config, fake_embedder):
    """``stance.context`` reaches the pretraining pairs: the cross-encoder must read FNC-1's articles as it reads ours."""
    from classify.pipeline import pretraining_pairs

    body = "Stocks rose on Tuesday. Pope says aliens exist, critics say. Rain is due on Friday."
    raw = tiny_config.model_dump()
    raw["stance"]["top_sentences"] = 1
    raw["stance"]["cross_encoder"] = {"enabled": True, "pretrain": [_fnc_files(tmp_path, [("Pope says aliens exist",
                                                                                        body, "discuss")])]}
    for context, expected in (("body", body), ("sentences", "Pope says aliens exist, critics say.")):
        raw["stance"]["context"] = context
        (_, contexts, _), _, _, _ = pretraining_pairs(validate_config(raw, check_files=False), fake_embedder, quiet=True)
        assert contexts == [expected], context


def test_pretraining_settings_are_saved_with_the_weights(tmp_path):
    ce = CrossEncoder(**SETTINGS, pretrain_epochs=2, pretrain_order="mixed").fit(HEADS, STORIES, LABELS, pretrain=PRE)
    ce.save(tmp_path)
    params = json.loads((tmp_path / "cross_encoder.json").read_text())["params"]
    assert params["pretrain_epochs"] == 2 and params["pretrain_order"] == "mixed"
    loaded = CrossEncoder.load(tmp_path)
    assert (loaded.pretrain_epochs, loaded.pretrain_order) == (2, "mixed")
    np.testing.assert_allclose(loaded.predict_proba(HEADS, STORIES), ce.predict_proba(HEADS, STORIES), atol=1e-6)


def test_pretraining_settings_reach_the_cross_encoder(tiny_config):
    from classify.pipeline import build_stance

    raw = tiny_config.model_dump()
    raw["stance"]["cross_encoder"] = {"enabled": True, "pretrain_epochs": 2.5, "pretrain_order": "mixed"}
    ce = build_stance(validate_config(raw, check_files=False), quiet=True).cross_encoder
    assert (ce.pretrain_epochs, ce.pretrain_order) == (2.5, "mixed")
    raw["stance"]["cross_encoder"]["pretrain_order"] = "after"
    with pytest.raises(ConfigError, match="pretrain_order"):
        validate_config(raw, check_files=False)


def _counted_pretraining(tmp_path, tiny_config, monkeypatch):
    """A tiny config that pretrains on PRE, its training corpus, and the list every read of the pretraining data
    (``pipeline.pretraining_pairs``) appends to."""
    import classify.pipeline as pipeline
    from classify.data import load_corpus

    calls = []
    original = pipeline.pretraining_pairs
    monkeypatch.setattr(pipeline, "pretraining_pairs", lambda *a, **k: calls.append(1) or original(*a, **k))
    raw = tiny_config.model_dump()
    raw["stance"].update(calibrate=False, cross_encoder={
        "enabled": True, "weight": 0.5, "epochs": 1, "batch_size": 4, "max_length": 32,
        "pretrain": [_fnc_files(tmp_path, list(zip(*PRE)))], "pretrain_pairs": 4})
    config = validate_config(raw, check_files=False)
    return raw, config, load_corpus(config.data.train, config), calls


def test_settings_of_a_fold_read_the_pretraining_data_once(tmp_path, tiny_config, fake_embedder, monkeypatch):
    import classify.pipeline as pipeline

    raw, config, corpus, calls = _counted_pretraining(tmp_path, tiny_config, monkeypatch)
    fitted = {}
    first = pipeline.train_corpus(config, corpus, quiet=True, embedder=fake_embedder, fitted=fitted)
    raw["stance"]["cross_encoder"]["weight"] = 0.25  # another setting, the same pretraining pairs
    pipeline.train_corpus(validate_config(raw, check_files=False), corpus, quiet=True, embedder=fake_embedder,
                          fitted=fitted)
    assert len(calls) == 1
    raw["stance"]["cross_encoder"]["pretrain_pairs"] = 3  # other pairs: read again
    pipeline.train_corpus(validate_config(raw, check_files=False), corpus, quiet=True, embedder=fake_embedder,
                          fitted=fitted)
    assert len(calls) == 2 and first.meta["cross_encoder_pretrain"]["pairs"] == 4


def test_the_pretraining_draw_is_reused_across_passes_but_not_across_draw_settings(tmp_path, tiny_config,
                                                                                   fake_embedder, monkeypatch):
    import classify.pipeline as pipeline

    raw, _, corpus, calls = _counted_pretraining(tmp_path, tiny_config, monkeypatch)
    fitted = {}
    metas = []
    for change in ({}, {"pretrain_epochs": 2.0, "pretrain_order": "mixed"}, {"pretrain_unrelated": "closest"}):
        raw["stance"]["cross_encoder"].update(change)
        model = pipeline.train_corpus(validate_config(raw, check_files=False), corpus, quiet=True,
                                      embedder=fake_embedder, fitted=fitted)
        metas.append(model.meta["cross_encoder_pretrain"])
    assert len(calls) == 2  # the passes and order reuse the draw; another draw reads again
    raw["stance"]["context"] = "sentences"  # the contexts it holds are chosen by stance.context: read again
    pipeline.train_corpus(validate_config(raw, check_files=False), corpus, quiet=True, embedder=fake_embedder,
                          fitted=fitted)
    assert len(calls) == 3
    raw["stance"]["cross_encoder"].update(pretrain_classifier_words=3, pretrain_classifier_stage="all")  # again
    pipeline.train_corpus(validate_config(raw, check_files=False), corpus, quiet=True, embedder=fake_embedder,
                          fitted=fitted)
    assert len(calls) == 4
    raw["stance"]["cross_encoder"]["pretrain_words"] = 5  # the contexts are cut otherwise: read again
    cut = pipeline.train_corpus(validate_config(raw, check_files=False), corpus, quiet=True, embedder=fake_embedder,
                                fitted=fitted)
    assert len(calls) == 5 and cut.meta["cross_encoder_pretrain"]["words"] == 5
    raw["stance"]["cross_encoder"]["pretrain_unrelated_share"] = 0.5  # another draw: read again
    share = pipeline.train_corpus(validate_config(raw, check_files=False), corpus, quiet=True, embedder=fake_embedder,
                                  fitted=fitted)
    assert len(calls) == 6 and share.meta["cross_encoder_pretrain"]["unrelated_share"] == 0.5
    raw["stance"]["calibrate"] = True
    for n, (key, value) in enumerate((("pretrain_calibration", 0.55), ("pretrain_calibration_pages", 1),
                                      ("pretrain_calibration_words", [3]),
                                      ("pretrain_calibration_unrelated_share", 0.3)), start=7):
        raw["stance"]["cross_encoder"][key] = value  # claims held out and laid out otherwise: read again
        held = pipeline.train_corpus(validate_config(raw, check_files=False), corpus, quiet=True,
                                     embedder=fake_embedder, fitted=fitted)
        assert len(calls) == n and held.meta["cross_encoder_pretrain"]["calibration"][
            {"pretrain_calibration": "share", "pretrain_calibration_pages": "pages", "pretrain_calibration_words":
             "words", "pretrain_calibration_unrelated_share": "unrelated_share"}[key]] == value
    assert metas[0]["unrelated_share"] is None and metas[0]["words"] == 0
    assert [(m["epochs"], m["order"], m["unrelated"]) for m in metas] == [
        (1.0, "before", "random"), (2.0, "mixed", "random"), (2.0, "mixed", "closest")]


def test_classifier_snippets_are_the_drawn_pairs_cut_to_their_first_words(tmp_path, tiny_config, fake_embedder):
    from classify.pipeline import pretraining_pairs

    raw = tiny_config.model_dump()
    raw["stance"]["cross_encoder"] = {"enabled": True, "pretrain": [_fnc_files(tmp_path, list(zip(*PRE)))],
                                      "pretrain_pairs": 4}
    (heads, _, labels), _, none, _ = pretraining_pairs(validate_config(raw, check_files=False), fake_embedder, quiet=True)
    assert none is None  # 0 (the default): the feature classifier learns from data.train alone
    raw["stance"]["two_stage"] = True
    raw["stance"]["cross_encoder"]["pretrain_classifier_words"] = 3
    (_, _, same), _, snippets, _ = pretraining_pairs(validate_config(raw, check_files=False), fake_embedder, quiet=True)
    full = dict(zip(zip(*PRE[:1], PRE[2]), PRE[1]))  # (headline, label) -> body; unique in PRE
    assert snippets[0] == heads and snippets[2] == labels == same and len(heads) == 4
    assert snippets[1] == [" ".join(full[(h, y)].split()[:3]) for h, y in zip(heads, labels)]


def test_pretraining_words_cut_what_the_cross_encoder_reads_of_each_article(tmp_path, tiny_config, fake_embedder):
    from classify.pipeline import pretraining_pairs

    raw = tiny_config.model_dump()
    raw["stance"]["context"] = "body"
    raw["stance"]["cross_encoder"] = {"enabled": True, "pretrain": [_fnc_files(tmp_path, list(zip(*PRE)))],
                                      "pretrain_pairs": 6}
    (heads, whole, labels), _, _, _ = pretraining_pairs(validate_config(raw, check_files=False), fake_embedder, True)
    full = dict(zip(zip(*PRE[:1], PRE[2]), PRE[1]))  # (headline, label) -> body; unique in PRE
    assert whole == [full[(h, y)] for h, y in zip(heads, labels)]  # 0 (the default): a short article whole
    raw["stance"]["cross_encoder"]["pretrain_words"] = 3
    (same_heads, cut, same), _, _, _ = pretraining_pairs(validate_config(raw, check_files=False), fake_embedder, True)
    assert same_heads == heads and same == labels
    assert cut == [" ".join(full[(h, y)].split()[:3]) for h, y in zip(heads, labels)]  # the first 3 words, whole
    raw["stance"]["cross_encoder"]["pretrain_words"] = -1
    with pytest.raises(ConfigError, match=r"stance\.cross_encoder\.pretrain_words"):
        validate_config(raw, check_files=False)


def test_related_stage_classifier_pretraining_needs_a_second_stage(tmp_path, tiny_config):
    raw = tiny_config.model_dump()
    raw["stance"]["cross_encoder"] = {"enabled": True, "pretrain_classifier_words": 60}
    validate_config(raw, check_files=False)  # no pretraining pairs: nothing to learn from, as for pretrain_epochs
    raw["stance"]["two_stage"] = True
    raw["stance"]["cross_encoder"]["pretrain"] = [_fnc_files(tmp_path, list(zip(*PRE)))]
    validate_config(raw, check_files=False)
    raw["stance"]["two_stage"] = False
    with pytest.raises(ConfigError, match=r"stance\.cross_encoder\.pretrain_classifier_stage: related .*two_stage"):
        validate_config(raw, check_files=False)
    raw["stance"]["cross_encoder"]["enabled"] = False  # the cross-encoder off: no pretraining pairs are drawn
    validate_config(raw, check_files=False)
    raw["stance"]["cross_encoder"].update(enabled=True, pretrain_classifier_stage="all")
    validate_config(raw, check_files=False)


def test_the_feature_classifier_learns_from_the_pretraining_pairs_in_every_fit(fake_embedder):
    """``classifier_pretrain`` rows join the data's in the fitted part's classifier (so they move the validation
    probabilities the weight and calibration are tuned on) and in the final one, with their own labels; a label
    outside the data's is left out."""
    from sklearn.base import clone

    from classify.stance import StanceClassifier, StanceModel

    heads = [f"Claim number {i} about the dam" for i in range(24)]
    bodies = [f"Story {i} says the dam {'was' if i % 3 else 'was not'} hit" for i in range(24)]
    labels = ["agree", "disagree", "unrelated"] * 8
    pre = (["Pope says aliens exist"] * 6 + ["Singer dies in crash"] * 6,
           [f"Report {i}: the Vatican {'denies' if i % 2 else 'confirms'} it" for i in range(12)],
           ["disagree", "agree"] * 5 + ["discuss", "discuss"])  # discuss: not a label of the data
    clf = StanceClassifier(C=1.0, max_iter=500)
    embed = fake_embedder.encode
    plain = StanceModel(clf, calibrate=True, random_state=0).fit(heads, bodies, labels, embed)
    model = StanceModel(clf, calibrate=True, random_state=0, classifier_pretrain_stage="all").fit(
        heads, bodies, labels, embed, classifier_pretrain=pre)
    F = model.features(heads + pre[0][:10], bodies + pre[1][:10], embed)
    expected = clone(clf).fit(F, np.array(labels + pre[2][:10]))
    X = model.features(pre[0], pre[1], embed)
    np.testing.assert_allclose(model.classifier_.predict_proba(X), expected.predict_proba(X))
    assert not np.allclose(plain.classifier_.predict_proba(X), model.classifier_.predict_proba(X))
    assert list(model.classes_) == ["agree", "disagree", "unrelated"]
    assert model.validation_ != plain.validation_  # the fitted part learnt from them too
    with pytest.raises(ValueError, match="two_stage"):  # "related" (the default) teaches a second stage only
        StanceModel(clf, calibrate=True).fit(heads, bodies, labels, embed, classifier_pretrain=pre)


def test_related_stage_pretraining_teaches_which_related_label_only(fake_embedder):
    """``classifier_pretrain_stage="related"``: the first stage (related or not) is the data's alone; the second
    learns from the data's related pairs and the pretraining pairs' related ones."""
    from sklearn.base import clone

    from classify.stance import StanceClassifier, StanceModel

    heads = [f"Claim number {i} about the dam" for i in range(24)]
    bodies = [f"Story {i} says the dam {'was' if i % 3 else 'was not'} hit" for i in range(24)]
    labels = ["agree", "disagree", "unrelated"] * 8
    pre = (["Pope says aliens exist"] * 8, [f"Report {i}: the Vatican {'denies' if i % 2 else 'confirms'} it"
                                            for i in range(8)], ["disagree", "agree", "unrelated", "agree"] * 2)
    clf = StanceClassifier(C=1.0, max_iter=500, two_stage=True)
    embed = fake_embedder.encode
    model = StanceModel(clf, calibrate=True, random_state=0).fit(heads, bodies, labels, embed,
                                                               classifier_pretrain=pre)
    ours, theirs = model.features(heads, bodies, embed), model.features(*pre[:2], embed)
    alone = clone(clf).fit(ours, np.array(labels))
    X = np.vstack([ours, theirs])
    np.testing.assert_allclose(model.classifier_.stage1_.predict_proba(X), alone.stage1_.predict_proba(X))
    rel, rel_pre = np.array(labels) != "unrelated", np.array(pre[2]) != "unrelated"
    stage2 = clone(clf._base()).fit(np.vstack([ours[rel], theirs[rel_pre]]),
                                    np.r_[np.array(labels)[rel], np.array(pre[2])[rel_pre]])
    np.testing.assert_allclose(model.classifier_.stage2_.predict_proba(X), stage2.predict_proba(X))
    assert not np.allclose(alone.stage2_.predict_proba(X), stage2.predict_proba(X))
    assert model.state()["classifier_pretrain_stage"] == "related"


def test_train_gives_the_feature_classifier_the_pretraining_snippets(tmp_path, tiny_config, fake_embedder,
                                                                     monkeypatch):
    import classify.stance as stance

    seen = []
    original = stance.StanceModel.fit
    monkeypatch.setattr(stance.StanceModel, "fit", lambda self, *a, **k: seen.append(k.get("classifier_pretrain"))
                        or original(self, *a, **k))
    rows = list(zip(*PRE))
    raw = tiny_config.model_dump()
    ce = {"enabled": True, "weight": 0.5, "epochs": 1, "batch_size": 4, "max_length": 32,
          "pretrain": [_fnc_files(tmp_path, rows)], "pretrain_pairs": 6}
    raw["stance"].update(calibrate=False, cross_encoder=ce, two_stage=True)
    plain = train(validate_config(raw, check_files=False), quiet=True, embedder=fake_embedder)
    raw["stance"]["cross_encoder"]["pretrain_classifier_words"] = 4
    model = train(validate_config(raw, check_files=False), quiet=True, embedder=fake_embedder)
    assert seen[0] is None and sorted(zip(seen[1][0], seen[1][2])) == sorted((h, y) for h, _, y in rows)
    assert all(len(s.split()) <= 4 for s in seen[1][1])
    assert plain.meta["cross_encoder_pretrain"]["classifier_words"] == 0
    assert model.meta["cross_encoder_pretrain"]["classifier_words"] == 4
    assert model.meta["cross_encoder_pretrain"]["classifier_stage"] == "related"
    assert model.stance.classifier_pretrain_stage == "related"
    h, b = ["Pope says aliens exist"], ["Vatican denies it."]
    F = model.stance.features(h, b, fake_embedder.encode)
    assert not np.allclose(model.stance.classifier_.stage2_.predict_proba(F),
                           plain.stance.classifier_.stage2_.predict_proba(F))


def test_an_unknown_classifier_pretraining_stage_is_refused_not_read_as_all(fake_embedder):
    from classify.stance import StanceClassifier, StanceModel

    model = StanceModel(StanceClassifier(two_stage=True), classifier_pretrain_stage="first")
    with pytest.raises(ValueError, match="classifier_pretrain_stage.*'first'"):
        model.fit(["Dam hit"] * 4, ["It was hit.", "It was not.", "Rain.", "It was."],
                  ["agree", "disagree", "unrelated", "agree"], fake_embedder.encode,
                  classifier_pretrain=(["Pope"], ["Denied."], ["disagree"]))


def test_claims_and_mined_unrelated_pairs_by_hand(monkeypatch):
    import classify.pipeline as pipeline
    from classify.pipeline import claim_parts, mined_unrelated

    pairs = [StancePair("H1", "b1", "agree"), StancePair("H1", "b2", "unrelated"), StancePair("H2", "b2", "discuss"),
             StancePair("H2", "b3", "unrelated"), StancePair("H3", "b3", "agree"), StancePair("H3", "b1", "unrelated"),
             StancePair("H4", "b4", "disagree"), StancePair("H1", "b4", "discuss")]
    claim = claim_parts(pairs, "unrelated")
    # H1-b1, H1-b4, H4-b4 are one claim (joined through H1 and b4); H2-b2 and H3-b3 one each
    assert claim[("h", "H1")] == claim[("b", "b1")] == claim[("b", "b4")] == claim[("h", "H4")]
    assert len({claim[("h", "H1")], claim[("h", "H2")], claim[("h", "H3")]}) == 3
    assert claim[("b", "b2")] == claim[("h", "H2")] and claim[("b", "b3")] == claim[("h", "H3")]
    vec = {"H1": [1, 0, 0], "H2": [0, 1, 0], "H3": [0, 0, 1], "H4": [1, 1, 0],
           "b1": [1, 0.1, 0], "b2": [0.5, 1, 0], "b3": [0.6, 0, 1], "b4": [0, 1, 0.2]}
    embed = lambda texts: np.array([vec[t] for t in texts], dtype=float)  # noqa: E731
    mined, near = mined_unrelated(pairs, embed, "unrelated", per_headline=1)
    # H1's closest bodies are b1 (its own claim) then b3 (0.514) over b2 (0.447); H2 takes b4 (0.981), another
    # claim's; H3 b4 (0.196); H4 skips its own b4 for b2 (0.949)
    assert [(p.headline, p.body, p.label) for p in mined] == [
        ("H1", "b3", "unrelated"), ("H2", "b4", "unrelated"), ("H3", "b4", "unrelated"), ("H4", "b2", "unrelated")]
    np.testing.assert_allclose(near, [0.6 / np.hypot(0.6, 1), 1 / np.hypot(1, 0.2), 0.2 / np.hypot(1, 0.2),
                                      1.5 / np.hypot(0.5, 1) / np.sqrt(2)], atol=1e-9)
    two, two_near = mined_unrelated(pairs, embed, "unrelated", per_headline=2)
    # H3's second is a tie at 0 (b1, b2): the first-seen body
    assert [(p.headline, p.body) for p in two] == [("H1", "b3"), ("H1", "b2"), ("H2", "b4"), ("H2", "b1"),
                                                   ("H3", "b4"), ("H3", "b1"), ("H4", "b2"), ("H4", "b3")]
    assert all(claim[("h", p.headline)] != claim[("b", p.body)] for p in two)
    monkeypatch.setattr(pipeline, "MINING_BLOCK", 3)  # headlines in blocks of 3 (H4 alone in the second): the same
    assert mined_unrelated(pairs, embed, "unrelated", per_headline=2) == (two, two_near)
    seen = []  # bodies are embedded by their openings (the first PRETRAIN_LEAD_CHARS characters)
    monkeypatch.setattr(pipeline, "PRETRAIN_LEAD_CHARS", 1)
    mined_unrelated(pairs, lambda texts: seen.extend(texts) or np.ones((len(texts), 2)), "unrelated")
    assert seen == ["H1", "H2", "H3", "H4", "b", "b", "b", "b"]


def test_mined_unrelated_pretraining_pairs_replace_the_datas_own(tmp_path, tiny_config, fake_embedder, monkeypatch):
    import classify.pipeline as pipeline

    rows = list(zip(*PRE)) + [("Pope says aliens exist", "Stocks rose on Tuesday.", "unrelated"),
                              ("Singer dies in crash", "Rain is due on Friday.", "unrelated")]
    raw = tiny_config.model_dump()
    raw["stance"]["cross_encoder"] = {"enabled": True, "pretrain": [_fnc_files(tmp_path, rows)], "pretrain_pairs": 100,
                                      "pretrain_unrelated": "mined"}
    calls = []
    real = pipeline.mined_unrelated

    def spy(pairs, embed, unrelated, per_headline=pipeline.PRETRAIN_MINED_PER_HEADLINE):
        calls.append(per_headline)
        return real(pairs, embed, unrelated, per_headline)
    monkeypatch.setattr(pipeline, "mined_unrelated", spy)
    (heads, contexts, labels), info, _, _ = pipeline.pretraining_pairs(validate_config(raw, check_files=False),
                                                                   fake_embedder, quiet=True)
    assert calls == [2] and info["unrelated"] == "mined"
    # the data's own unrelated pairs are dropped for mined_unrelated's: each headline with its 2 closest bodies of
    # other claims (a body only unrelated pairs reach is a claim of its own), the related pairs kept as they are
    loaded = [StancePair(h, b, label) for h, b, label in rows]
    expected, _ = real(loaded, fake_embedder.encode, "unrelated")
    got = sorted((h, c) for h, c, label in zip(heads, contexts, labels) if label == "unrelated")
    assert got == sorted((p.headline, p.body) for p in expected) and len(got) == 6
    assert sorted(h for h, _ in got) == sorted([h for h in set(PRE[0]) for _ in range(2)])
    assert info["counts"]["unrelated"] == 6 and sum(label != "unrelated" for label in labels) == len(PRE[2])
    related = {(h, b) for h, b, label in zip(*PRE)}
    assert not set(got) & related
    # a smaller unrelated share: the closest of the mined pairs are drawn first
    raw["stance"]["cross_encoder"].update(pretrain_pairs=8, pretrain_unrelated_share=0.25)
    (heads, contexts, labels), info, _, _ = pipeline.pretraining_pairs(validate_config(raw, check_files=False),
                                                                   fake_embedder, quiet=True)
    expected, near = real(loaded, fake_embedder.encode, "unrelated")
    top = sorted(zip(near, range(len(near))), key=lambda x: -x[0])[:2]
    assert info["counts"]["unrelated"] == 2 and top[1][0] > sorted(near)[-3]  # no tie at the cut
    assert sorted((h, c) for h, c, label in zip(heads, contexts, labels) if label == "unrelated") == sorted(
        (expected[i].headline, expected[i].body) for _, i in top)


CLAIM_PAIRS = [StancePair("H1", "b1 one two", "agree"), StancePair("H1", "b2 one two", "unrelated"),
               StancePair("H2", "b2 one two", "discuss"), StancePair("H2", "b3 one two", "unrelated"),
               StancePair("H3", "b3 one two", "agree"), StancePair("H3", "b1 one two", "unrelated"),
               StancePair("H4", "b4 one two", "disagree"), StancePair("H1", "b4 one two", "discuss")]
CLAIM_VECTORS = {"H1": [1, 0, 0], "H2": [0, 1, 0], "H3": [0, 0, 1], "H4": [1, 1, 0], "b1 one two": [1, 0.1, 0],
                 "b2 one two": [0.5, 1, 0], "b3 one two": [0.6, 0, 1], "b4 one two": [0, 1, 0.2]}


def test_held_out_claims_and_their_pages_by_hand():
    from classify.pipeline import claim_pages, hold_out_claims

    # claims: {H1, H4, b1, b4} (component 0: H1 is the first node), {H2, b2}, {H3, b3}; RandomState(0).rand(3) is
    # 0.549, 0.715, 0.603, so a share of 0.55 holds out the first claim only, 0.65 the first and the third
    kept, held, claim = hold_out_claims(CLAIM_PAIRS, "unrelated", 0.55, seed=0)
    assert held == {claim[("h", "H1")]} and claim[("h", "H4")] == claim[("b", "b4 one two")] == claim[("h", "H1")]
    # every pair of H1 or H4, and H3's pair with b1 (a held-out claim's body), leaves the pretraining
    assert [(p.headline, p.body[:2]) for p in kept] == [("H2", "b2"), ("H2", "b3"), ("H3", "b3")]
    _, two, _ = hold_out_claims(CLAIM_PAIRS, "unrelated", 0.65, seed=0)
    assert two == {claim[("h", "H1")], claim[("h", "H3")]}
    assert hold_out_claims(CLAIM_PAIRS, "unrelated", 0.55, seed=1)[1] != held  # 0.417, 0.720, 0.000: another draw
    embed = lambda texts: np.array([CLAIM_VECTORS[t] for t in texts], dtype=float)  # noqa: E731
    heads, stories, labels = claim_pages(CLAIM_PAIRS, held, claim, "unrelated", 10, [1, 3], 0.5, 0, embed)
    # H1's related stories b1 (agree) and b4 (discuss), then as many of the other claims' bodies, closest first:
    # b3 (0.514) before b2 (0.447); H4's b4, then b2 (0.949) over b3 (0.364); each page at 1 word, then at 3
    h1 = [("b1", "agree"), ("b4", "discuss"), ("b3", "unrelated"), ("b2", "unrelated")]
    h4 = [("b4", "disagree"), ("b2", "unrelated")]
    expected = [("H1", f"{b} one two"[: 2 if n == 1 else None], y) for n in (1, 3) for b, y in h1] + \
               [("H4", f"{b} one two"[: 2 if n == 1 else None], y) for n in (1, 3) for b, y in h4]
    assert list(zip(heads, stories, labels)) == expected
    # a page's other-claim share: 0.75 of the page asks 3 per related story, but the other claims have 2 bodies
    _, _, labels = claim_pages(CLAIM_PAIRS, held, claim, "unrelated", 10, [3], 0.75, 0, embed)
    assert labels == ["agree", "discuss", "unrelated", "unrelated", "disagree", "unrelated", "unrelated"]
    _, _, labels = claim_pages(CLAIM_PAIRS, held, claim, "unrelated", 10, [3], 0.3, 0, embed)  # 0.86 -> 1, 0.43 -> 0
    assert labels == ["agree", "discuss", "unrelated", "disagree"]
    # at most n_pages headlines, a seeded draw
    one = claim_pages(CLAIM_PAIRS, held, claim, "unrelated", 1, [3], 0.5, 0, embed)
    assert set(one[0]) in ({"H1"}, {"H4"}) and len(set(one[0])) == 1
    assert claim_pages(CLAIM_PAIRS, set(), claim, "unrelated", 10, [3], 0.5, 0, embed) == ([], [], [])


def _calibration_rows():
    # three claims (PRE's headlines, each with two related bodies) and unrelated pairs among them
    return list(zip(*PRE)) + [("Pope says aliens exist", "Fans mourn as the crash is confirmed.", "unrelated"),
                              ("Singer dies in crash", "Officials confirm the hospital was hit overnight.", "unrelated"),
                              ("Hospital bombed in city", "Vatican denies the Pope said any such thing.", "unrelated")]


def test_pretraining_calibration_holds_its_claims_out_of_the_draw(tmp_path, tiny_config, fake_embedder):
    from classify.pipeline import claim_pages, hold_out_claims, pretraining_pairs

    rows = _calibration_rows()
    raw = tiny_config.model_dump()
    raw["stance"]["cross_encoder"] = {"enabled": True, "pretrain": [_fnc_files(tmp_path, rows)], "pretrain_pairs": 100,
                                      "pretrain_calibration": 0.55, "pretrain_calibration_words": [2, 50],
                                      "pretrain_calibration_unrelated_share": 0.5}
    (heads, contexts, labels), info, _, pages = pretraining_pairs(validate_config(raw, check_files=False),
                                                                  fake_embedder, quiet=True)
    loaded = [StancePair(h, b, y) for h, b, y in rows]
    kept, held, claim = hold_out_claims(loaded, "unrelated", 0.55, 0)
    assert held == {claim[("h", "Pope says aliens exist")]}  # the first claim (see the test above)
    assert "Pope says aliens exist" not in heads and len(heads) == len(kept) == 5  # 2 + 2 related, 1 unrelated
    assert not set(contexts) & {b for h, b, y in rows if h == "Pope says aliens exist" and y != "unrelated"}
    assert pages == claim_pages(loaded, held, claim, "unrelated", 150, [2, 50], 0.5, 0, fake_embedder.encode)
    assert set(pages[0]) == {"Pope says aliens exist"} and len(pages[0]) == 8  # 2 related + 2 others, 2 lengths
    assert info["of"] == 5 and info["calibration"] == {
        "share": 0.55, "claims": 1, "of": 3, "pairs_held_out": 4, "pages": 1, "words": [2, 50],
        "unrelated_share": 0.5, "counts": {"disagree": 2, "discuss": 2, "unrelated": 4}}
    raw["stance"]["cross_encoder"]["pretrain_calibration"] = 0
    _, info, _, none = pretraining_pairs(validate_config(raw, check_files=False), fake_embedder, quiet=True)
    assert none is None and "calibration" not in info and info["of"] == 9
    raw["stance"]["cross_encoder"]["pretrain_calibration"] = 0.01  # nothing held out: one line naming the key
    with pytest.raises(DataError, match=r"pretrain_calibration: 0\.01 of the pretraining claims \(3\) holds out no"):
        pretraining_pairs(validate_config(raw, check_files=False), fake_embedder, quiet=True)


def test_pretraining_calibration_settings_are_checked(tiny_config):
    raw = tiny_config.model_dump()
    raw["stance"]["cross_encoder"] = {"enabled": True, "pretrain": [{"type": "headline_body_csv", "path": "s.csv",
                                                                     "bodies": "b.csv"}]}
    for key, bad in (("pretrain_calibration", 1.0), ("pretrain_calibration", -0.1), ("pretrain_calibration_pages", 0),
                     ("pretrain_calibration_words", []), ("pretrain_calibration_words", [20, 0]),
                     ("pretrain_calibration_unrelated_share", 1.0)):
        with pytest.raises(ConfigError, match=key):
            validate_config({**raw, "stance": {**raw["stance"], "cross_encoder": {
                **raw["stance"]["cross_encoder"], key: bad}}}, check_files=False)
    raw["stance"]["cross_encoder"]["pretrain_calibration"] = 0.2
    raw["stance"]["calibrate"] = False
    with pytest.raises(ConfigError, match=r"pretrain_calibration: fits the calibration .* stance\.calibrate: true"):
        validate_config(raw, check_files=False)
    raw["stance"]["calibrate"] = "temperature"
    validate_config(raw, check_files=False)


def test_calibrate_on_fits_the_final_models_calibration_on_the_pages(tiny_model, fake_embedder):
    from classify.stance import StanceModel, _calibrated, fit_calibration, fit_temperature

    stance = tiny_model.stance
    assert stance.calibrate is True and stance.page_calibration_ is None
    heads = ["Russian missiles knock out power in Kyiv"] * 4 + ["Fed raises interest rates by 75 basis points"] * 4
    stories = ["Kyiv left without power after missile strikes", "Markets brace for Fed decision",
               "Officials confirmed blackouts across the city.", "Protester hanged in Mashhad, judiciary says",
               "US central bank lifts rates by three quarters of a point", "Kyiv officials deny power cuts",
               "The central bank did not raise rates at its meeting.", "Windfall tax on energy giants to rise"]
    labels = ["agree", "unrelated", "agree", "unrelated", "agree", "unrelated", "disagree", "unrelated"]
    before = stance.predict_proba(heads, stories, fake_embedder.encode)
    scaled = stance._normalise(stance.part_proba(heads, stories, fake_embedder.encode)["mix"])
    gold = np.searchsorted(stance.classes_, labels)
    t, b = fit_calibration(scaled, gold)
    validation = (stance.temperature_, stance.bias_.tolist())
    stance.class_scale_ = np.array([1.0, 2.0, 0.5, 1.0])  # the class scales stay: calibrated after them
    scaled = stance._normalise(stance.part_proba(heads, stories, fake_embedder.encode)["mix"])
    t, b = fit_calibration(scaled, gold)
    # a label outside the classes is left out
    stance.calibrate_on(heads + ["x"], stories + ["y"], labels + ["not a label"], fake_embedder.encode)
    assert stance.temperature_ == pytest.approx(t) and stance.bias_ == pytest.approx(b)
    assert (stance.temperature_, stance.bias_.tolist()) != validation
    after = stance.predict_proba(heads, stories, fake_embedder.encode)
    np.testing.assert_allclose(after, _calibrated(scaled, t, b), atol=1e-9)
    assert not np.allclose(after, before, atol=1e-3)
    # the validation split's pairs, decided with either calibration: what the page calibration costs there
    from sklearn.metrics import f1_score

    v_scaled, v_gold = stance._validated
    replaced = {"temperature": validation[0], "bias": validation[1]}
    for name, (tt, bb) in (("validation", validation), ("pages", (t, b))):
        pred = _calibrated(v_scaled, tt, np.asarray(bb)).argmax(axis=1)
        replaced[f"macro_f1_{name}"] = f1_score(v_gold, pred, average="macro", labels=range(4))
        replaced[f"accuracy_{name}"] = np.mean(pred == v_gold)
    assert replaced["macro_f1_validation"] != replaced["macro_f1_pages"]
    replaced = {k: pytest.approx(v) for k, v in replaced.items()}
    assert stance.page_calibration_ == {"pairs": 8, "labels": {"agree": 3, "disagree": 1, "discuss": 0,
                                                               "unrelated": 4},
                                        "temperature": t, "bias": list(b), "validation": replaced}
    state = json.loads(json.dumps(stance.state(), allow_nan=False))
    again = StanceModel.from_state(state, stance.classifier_, stance.cross_encoder_, stance.term_weights_)
    assert again.page_calibration_ == stance.page_calibration_
    np.testing.assert_allclose(again.predict_proba(heads, stories, fake_embedder.encode), after, atol=1e-12)
    stance.calibrate = "temperature"
    stance.calibrate_on(heads, stories, labels, fake_embedder.encode)
    assert stance.temperature_ == pytest.approx(fit_temperature(scaled, gold)) and not stance.bias_.any()
    stance.calibrate = False
    with pytest.raises(ValueError, match="calibrate"):
        stance.calibrate_on(heads, stories, labels, fake_embedder.encode)


def test_train_calibrates_on_the_held_out_claims_pages(tmp_path, tiny_config, fake_embedder):
    rows = _calibration_rows()
    raw = tiny_config.model_dump()
    ce = {"enabled": True, "labels": "all", "weight": 0.5, "epochs": 1, "batch_size": 4, "max_length": 32,
          "pretrain": [_fnc_files(tmp_path, rows)], "pretrain_pairs": 100, "pretrain_calibration": 0.55,
          "pretrain_calibration_words": [50], "pretrain_calibration_unrelated_share": 0.5}
    raw["stance"].update(calibrate=True, cross_encoder=ce)
    model = train(validate_config(raw, check_files=False), quiet=True, embedder=fake_embedder)
    page = model.stance.page_calibration_
    assert page["pairs"] == 4 and page["labels"] == {"agree": 0, "disagree": 1, "discuss": 1, "unrelated": 2}
    assert (model.stance.temperature_, model.stance.bias_.tolist()) == (page["temperature"], page["bias"])
    assert model.meta["cross_encoder_pretrain"]["calibration"]["pages"] == 1
    assert model.meta["cross_encoder_pretrain"]["of"] == 5
    json.dumps(model.meta, allow_nan=False)
    raw["stance"]["cross_encoder"] = {**ce, "pretrain_calibration": 0}
    plain = train(validate_config(raw, check_files=False), quiet=True, embedder=fake_embedder)
    assert plain.stance.page_calibration_ is None and plain.meta["cross_encoder_pretrain"]["of"] == 9
    assert plain.stance.temperature_ == plain.stance.validation_["temperature"]
