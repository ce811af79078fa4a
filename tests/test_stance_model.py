"""StanceModel logic with hand-computed expectations: mixing of the cross-encoder and the feature classifier,
class scales, temperature calibration, the metrics `evaluate` reports for stance, and the negation cue test."""

import json

import numpy as np
import pytest

from classify.metrics import calibration_report, label_f1, related_accuracy
from classify.stance import (StanceClassifier, StanceModel, _calibrated, fit_calibration, fit_temperature,
                             has_negation)

CLASSES = np.array(["agree", "disagree", "discuss", "unrelated"])


class FixedClassifier:
    """A fitted feature classifier that returns given probabilities."""

    classes_ = CLASSES
    unrelated_label = "unrelated"

    def __init__(self, proba):
        self.proba = np.asarray(proba, dtype=float)

    def predict_proba(self, F):
        return self.proba[: len(F)].copy()


class FixedCrossEncoder:
    def __init__(self, proba, classes=CLASSES):
        self.proba, self.classes_ = np.asarray(proba, dtype=float), np.asarray(classes)
        self.seen = []

    def predict_proba(self, headlines, contexts):
        self.seen.append(list(headlines))
        return self.proba[: len(headlines)].copy()


def fitted(clf, ce=None, mode="all", weight=0.5, scale=(1, 1, 1, 1), temperature=1.0, bias=(0, 0, 0, 0)):
    m = StanceModel(mode=mode, embedding_features=False)
    m.classifier_, m.cross_encoder_, m.classes_ = clf, ce, CLASSES
    m.weight_, m.class_scale_, m.temperature_, m.n_features_in_ = weight, np.array(scale, float), temperature, 1
    m.bias_ = np.array(bias, float)
    return m


def embed(texts):
    rng = np.random.RandomState(len(texts))
    v = rng.rand(len(texts), 8) + np.array([[hash(t) % 7 for _ in range(8)] for t in texts])
    return v / np.linalg.norm(v, axis=1, keepdims=True)


H, B = ["Headline one", "Headline two"], ["A story about one.", "Another story, two."]


def test_all_mode_mixes_by_weight():
    feat = [[0.1, 0.1, 0.1, 0.7], [0.6, 0.2, 0.1, 0.1]]
    ce = [[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]]
    proba = fitted(FixedClassifier(feat), FixedCrossEncoder(ce), weight=0.25).predict_proba(H, B, embed)
    expected = 0.75 * np.array(feat) + 0.25 * np.array(ce)
    np.testing.assert_allclose(proba, expected, atol=1e-9)
    assert fitted(FixedClassifier(feat), FixedCrossEncoder(ce), weight=1.0).predict(H, B, embed).tolist() == \
        ["agree", "unrelated"]


def test_related_mode_only_rescores_pairs_called_related():
    feat = [[0.1, 0.1, 0.1, 0.7], [0.5, 0.2, 0.1, 0.2]]  # pair 0 unrelated, pair 1 related (mass 0.8)
    ce = FixedCrossEncoder([[0.0, 1.0, 0.0]], classes=CLASSES[:3])
    proba = fitted(FixedClassifier(feat), ce, mode="related", weight=0.25).predict_proba(H, B, embed)
    np.testing.assert_allclose(proba[0], feat[0])
    inner = np.array([0.5, 0.2, 0.1]) / 0.8
    np.testing.assert_allclose(proba[1, :3], (0.25 * np.array([0, 1, 0]) + 0.75 * inner) * 0.8)
    assert ce.seen == [["Headline two"]]


def test_class_scale_changes_the_decision_and_probabilities_stay_normalised():
    feat = [[0.4, 0.3, 0.1, 0.2]]
    m = fitted(FixedClassifier(feat), scale=(1, 2, 1, 1))
    proba = m.predict_proba(H[:1], B[:1], embed)
    np.testing.assert_allclose(proba, [[0.4, 0.6, 0.1, 0.2]] / np.float64(1.3))
    assert m.predict(H[:1], B[:1], embed).tolist() == ["disagree"]


def test_temperature_softens_without_changing_the_label():
    feat = [[0.7, 0.1, 0.1, 0.1]]
    hot = fitted(FixedClassifier(feat), temperature=2.0).predict_proba(H[:1], B[:1], embed)
    expected = np.sqrt(feat) / np.sqrt(feat).sum()
    np.testing.assert_allclose(hot, expected)
    assert hot.argmax() == 0


def test_fit_temperature_recovers_overconfidence():
    rng = np.random.RandomState(0)
    n = 4000
    true_logits = rng.randn(n, 3) * 1.5
    gold = np.array([rng.choice(3, p=np.exp(l) / np.exp(l).sum()) for l in true_logits])
    overconfident = np.exp(3 * true_logits)
    overconfident /= overconfident.sum(axis=1, keepdims=True)
    t = fit_temperature(overconfident, gold)
    assert 2.5 < t < 3.6  # undoes the x3 sharpening
    assert fit_temperature(_calibrated(overconfident, 3.0), gold) == pytest.approx(1.0, abs=0.2)


def test_fit_calibration_restores_the_class_frequencies_a_balanced_model_lost():
    """A model trained as if classes were balanced, used where class 2 is 6x as common: the bias that
    minimises log-loss is about log(6) for class 2 (class 0's is fixed at 0), the temperature stays near 1."""
    rng = np.random.RandomState(1)
    prior = np.array([1, 1, 6]) / 8
    gold = rng.choice(3, size=6000, p=prior)
    scores = rng.randn(6000, 3) + 2.0 * np.eye(3)[gold]
    logits = 2.0 * scores  # the exact posterior log-odds under a uniform prior (unit Gaussian noise)
    balanced = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    t, bias = fit_calibration(balanced, gold)
    assert bias[0] == 0 and bias[2] - bias[1] == pytest.approx(np.log(6), abs=0.35)
    assert 0.6 < t < 1.6
    fixed = _calibrated(balanced, t, bias)
    nll = lambda p: -np.mean(np.log(p[np.arange(len(gold)), gold]))  # noqa: E731
    assert nll(fixed) < nll(_calibrated(balanced, fit_temperature(balanced, gold))) - 0.05
    assert np.mean(fixed.argmax(1) == gold) > np.mean(balanced.argmax(1) == gold) + 0.02


def test_bias_moves_the_label_and_temperature_only_calibration_keeps_it_zero():
    feat = [[0.4, 0.1, 0.1, 0.4]]
    assert fitted(FixedClassifier(feat), bias=(0, 0, 0, 0.1)).predict(H[:1], B[:1], embed).tolist() == ["unrelated"]
    assert fitted(FixedClassifier(feat), bias=(0, 0, 0, -0.1)).predict(H[:1], B[:1], embed).tolist() == ["agree"]
    m = StanceModel(calibrate="temperature")
    m.classes_, m.weight_, m.class_scale_, m.temperature_ = CLASSES, 0.0, np.ones(4), 1.0
    m.bias_ = np.zeros(4)
    gold = np.array(["unrelated"] * 30 + ["agree"] * 10)
    proba = np.tile([0.4, 0.1, 0.1, 0.4], (40, 1))
    m._tune(FixedClassifier(proba), None, np.zeros((40, 1)), ["h"] * 40, ["c"] * 40, gold)
    assert (m.bias_ == 0).all() and m.temperature_ > 0
    m.calibrate = True
    m._tune(FixedClassifier(proba), None, np.zeros((40, 1)), ["h"] * 40, ["c"] * 40, gold)
    assert m.bias_[3] - m.bias_[0] == pytest.approx(np.log(3), abs=0.05)  # 30 unrelated to 10 agree


def test_calibration_report_by_hand():
    conf = [0.95, 0.95, 0.55, 0.55, 0.55, 0.55]
    correct = [True, False, True, True, True, False]
    r = calibration_report(conf, correct, bins=10)
    # bin [0.9, 1]: acc 0.5 vs conf 0.95 -> 0.45 * 2/6; bin [0.5, 0.6): acc 0.75 vs 0.55 -> 0.2 * 4/6
    assert r["ece"] == pytest.approx(0.45 * 2 / 6 + 0.2 * 4 / 6)
    assert [b["n"] for b in r["reliability"]] == [4, 2]
    assert r["reliability"][0]["accuracy"] == pytest.approx(0.75)
    assert calibration_report([1.0], [True])["ece"] == pytest.approx(0.0)


def test_related_accuracy_and_label_f1_by_hand():
    gold = ["agree", "unrelated", "discuss", "unrelated", "disagree"]
    pred = ["discuss", "agree", "discuss", "unrelated", "unrelated"]
    assert related_accuracy(gold, pred) == pytest.approx(3 / 5)
    assert label_f1(gold, pred, "discuss") == pytest.approx(2 / 3)  # P 1/2, R 1
    assert label_f1(gold, pred, "disagree") == 0.0


@pytest.mark.parametrize("text, expected", [
    ("Kremlin denies the report", True), ("Officials say it wasn't them", True), ("No survivors found", True),
    ("Hospital puts death toll at three", False), ("Moscow blames air-defence missile", False)])
def test_has_negation(text, expected):
    assert has_negation(text) is expected


def test_weight_auto_is_chosen_on_validation_pairs(monkeypatch):
    """With a cross-encoder that is always right and features that are noise, `auto` must pick weight 1."""
    rng = np.random.RandomState(0)
    n = 80
    y = np.array(["agree", "disagree", "discuss", "unrelated"] * (n // 4))
    heads = [f"headline {i // 4}" for i in range(n)]
    bodies = [f"story number {i}" for i in range(n)]
    gold = dict(zip(bodies, y))

    class Oracle:
        def __init__(self):
            self.classes_ = CLASSES

        def fit(self, h, c, labels):
            return self

        def predict_proba(self, h, contexts):
            return np.array([[0.97 if gold[c] == k else 0.01 for k in CLASSES] for c in contexts])

    noise = lambda texts: rng.rand(len(texts), 16)  # noqa: E731
    m = StanceModel(StanceClassifier(C=1.0), Oracle(), mode="all", weight="auto", calibrate=True,
                    embedding_features=False).fit(heads, bodies, y, noise)
    assert m.weight_ == 1.0
    assert m.validation_["weights_tried"]["1.0"] == 1.0
    assert (m.predict(heads, bodies, noise) == y).all()


def test_hard_negatives_pick_the_closest_stories_of_other_events_only():
    from classify.data import StancePair
    from classify.pipeline import hard_negatives

    vec = {"H1": [1, 0, 0], "H2": [0, 1, 0], "a": [0.9, 0.1, 0], "b": [0.8, 0.2, 0], "c": [0.1, 0.9, 0],
           "d": [0.95, 0.05, 0], "x": [0.99, 0, 0.01]}
    embed = lambda ts: np.array([vec[t] for t in ts], dtype=float)  # noqa: E731
    pairs = [StancePair("H1", "a", "agree", "e1", "s", "e1"), StancePair("H1", "x", "unrelated", "e1", "s", ""),
             StancePair("H2", "c", "agree", "e2", "s", "e2"), StancePair("H2", "b", "discuss", "e2", "s", "e2"),
             StancePair("H2", "d", "unrelated", "e2", "s", "e3")]
    out = hard_negatives(pairs, embed, 1, "unrelated")
    by_head = {p.headline: p for p in out}
    # H1: "a" is its own event, "x" has no known event, so the closest other-event story is "d" (event e3)
    assert by_head["H1"].body == "d" and by_head["H1"].label == "unrelated" and by_head["H1"].group == "e1"
    # H2: "c" and "b" are its own event and "d" is already paired with it: "a" (e1) is the closest left
    assert by_head["H2"].body == "a" and by_head["H2"].body_event == "e1"
    assert all(p.mined for p in out) and not any(p.mined for p in pairs)
    assert len(hard_negatives(pairs, embed, 2, "unrelated")) == 3  # H1 gets d and b (event e2); H2 only a
    # a cap on the cosine skips stories that close (likely the same event under another id): H1 then gets "b"
    capped = {p.headline: p.body for p in hard_negatives(pairs, embed, 1, "unrelated", max_similarity=0.9)}
    assert capped == {"H1": "b", "H2": "a"}
    low = hard_negatives(pairs, embed, 1, "unrelated", max_similarity=0.5)
    assert {(p.headline, p.body) for p in low} == {("H1", "c"), ("H2", "a")}  # only the far stories are left


def test_hard_negative_cap_is_a_config_key():
    from classify.config import validate_config

    data = {"train": [{"type": "topics_jsonl", "path": "x.jsonl"}]}
    cfg = validate_config({"data": data, "stance": {"hard_negatives": 2, "hard_negative_max_similarity": 0.5}},
                          check_files=False)
    assert cfg.stance.hard_negative_max_similarity == 0.5
    assert validate_config({"data": data}, check_files=False).stance.hard_negative_max_similarity == 0.62


def test_text_embedding_adds_the_story_vector_and_is_on_by_default_only_without_unrelated():
    from classify.config import validate_config
    from classify.pipeline import build_stance
    from classify.stance import pair_features

    import zlib

    def embed(texts):  # one fixed vector per text, whatever else is in the batch
        v = np.array([np.random.RandomState(zlib.crc32(t.encode())).rand(8) for t in texts])
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    heads, bodies = ["Tax the profits", "Tax the profits"], ["Yes, tax them. Now.", "No way at all."]
    plain = pair_features(heads, bodies, embed, embedding_features=False)
    more = pair_features(heads, bodies, embed, embedding_features=False, text_embedding=True)
    assert more.shape[1] == plain.shape[1] + 8
    np.testing.assert_allclose(more[:, : plain.shape[1]], plain)
    for row, body in zip(more, bodies):  # short bodies are embedded whole
        np.testing.assert_allclose(row[plain.shape[1]:], embed([body])[0], rtol=1e-5)
    data = {"train": [{"type": "topics_jsonl", "path": "x.jsonl"}]}
    targets = validate_config({"data": data, "labels": {"stances": ["favor", "against", "none"]}}, check_files=False)
    assert build_stance(targets, quiet=True).text_embedding is True
    assert build_stance(validate_config({"data": data}, check_files=False), quiet=True).text_embedding is False
    forced = validate_config({"data": data, "stance": {"text_embedding": True}}, check_files=False)
    assert build_stance(forced, quiet=True).text_embedding is True


def test_story_views_cut_the_story_and_keep_label_and_group():
    from classify.config import validate_config
    from classify.data import StancePair
    from classify.errors import ConfigError
    from classify.pipeline import story_view, story_views

    body = "Kyiv hit by drones. Officials said four died. Power was cut in two districts."
    assert story_view(body, "title") == "Kyiv hit by drones."
    assert story_view(body, "lead") == "Kyiv hit by drones. Officials said four died."
    assert story_view(body, "full") == body
    pairs = [StancePair("H", body, "agree", "e1", "s", "e1"), StancePair("H", "Short title only", "unrelated", "e1")]
    out = story_views(pairs, ["full", "lead", "title"])
    assert [p.body for p in out] == [body, story_view(body, "lead"), "Kyiv hit by drones.", "Short title only"]
    assert {(p.label, p.group) for p in out[:3]} == {("agree", "e1")} and out[0].body_event == "e1"
    data = {"train": [{"type": "topics_jsonl", "path": "x.jsonl"}]}
    with pytest.raises(ConfigError, match="stance.views"):
        validate_config({"data": data, "stance": {"views": ["full", "full"]}}, check_files=False)
    with pytest.raises(ConfigError, match="views"):
        validate_config({"data": data, "stance": {"views": ["middle"]}}, check_files=False)


@pytest.mark.parametrize("two_stage", [False, True])
def test_boosting_with_progress_grows_the_same_trees(two_stage, capsys):
    """``show_progress`` grows hgb trees in steps with warm_start: same model, and a bar per fit on stderr."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 5))
    y = np.array(["agree", "disagree", "discuss", "unrelated"])[(X[:, 0] > 0) * 2 + (X[:, 1] > 0.3)]
    make = lambda progress: StanceClassifier(kind="hgb", max_iter=30, two_stage=two_stage,  # noqa: E731
                                             show_progress=progress)
    quiet, shown = make(False).fit(X, y), make(True).fit(X, y)
    np.testing.assert_array_equal(shown.predict_proba(X), quiet.predict_proba(X))
    assert (shown.stage1_ if two_stage else shown.model_).n_iter_ == 30
    assert not (shown.stage1_ if two_stage else shown.model_).warm_start
    capsys.readouterr()
    make(True).fit(X, y)
    err = capsys.readouterr().err
    assert "stance classifier" in err and "30/30" in err
    make(False).fit(X, y)
    assert capsys.readouterr().err == ""


def test_best_scale_by_hand():
    """Class 1 is under-called: only a multiplier of 4 on it (among 0.5..8) makes every row right."""
    from classify.stance import _best_scale

    proba = np.array([[0.6, 0.4], [0.7, 0.3], [0.9, 0.1], [0.8, 0.2]])  # gold: 1, 1, 0, 0
    gold = np.array([1, 1, 0, 0])
    # x2: row 1 (0.6 vs 0.6) stays class 0 (argmax takes the first); x4 flips rows 0 and 1 but not row 3 (0.8 vs 0.8)
    np.testing.assert_array_equal(_best_scale(proba, gold, 2, (0.5, 1.0, 2.0, 4.0, 8.0), fixed=0), [1.0, 4.0])
    # the fixed class keeps 1; ties keep the first (smallest) setting that reaches the best score
    np.testing.assert_array_equal(_best_scale(proba, np.array([0, 0, 0, 0]), 2, (0.5, 1.0), fixed=0), [1.0, 0.5])
    # fixing class 1 instead: class 0 must shrink to 0.25 (at 0.5 row 1 is 0.35 vs 0.3, still class 0)
    np.testing.assert_array_equal(_best_scale(proba, gold, 2, (0.25, 0.5), fixed=1), [0.25, 1.0])


def test_tune_scale_learns_a_multiplier_on_a_held_out_part_and_predict_uses_it():
    rng = np.random.default_rng(1)
    n = 400
    X = rng.normal(size=(n, 3))
    # class "b" lives where x0 > 0.8 but half its region is shared with "a": a plain model under-calls "b"
    y = np.where((X[:, 0] > 0.8) & (rng.random(n) < 0.45), "b", "a")
    groups = np.arange(n) // 4
    plain = StanceClassifier(class_weight=None).fit(X, y, groups)
    tuned = StanceClassifier(class_weight=None, tune_scale=True).fit(X, y, groups)
    np.testing.assert_array_equal(plain.class_scale_, [1.0, 1.0])
    assert tuned.class_scale_[0] == 1.0 and tuned.class_scale_[1] > 1.0  # the largest class keeps 1
    np.testing.assert_allclose(tuned.predict_proba(X), plain.predict_proba(X))  # same model, other decision
    assert (tuned.predict(X) == "b").sum() > (plain.predict(X) == "b").sum()
    np.testing.assert_array_equal(tuned.predict(X), tuned.decide(tuned.predict_proba(X)))
    expected = tuned.classes_[np.argmax(tuned.predict_proba(X) * tuned.class_scale_, axis=1)]
    np.testing.assert_array_equal(tuned.predict(X), expected)


def test_decide_weighs_classes_by_their_scales():
    clf = StanceClassifier()
    clf.classes_, clf.class_scale_ = np.array(["a", "b", "c"]), np.array([1.0, 3.0, 1.0])
    proba = np.array([[0.5, 0.2, 0.3], [0.5, 0.1, 0.4], [0.2, 0.1, 0.7]])
    assert clf.decide(proba).tolist() == ["b", "a", "c"]


def test_best_sentences_by_hand():
    """The body's top_k sentences by cosine to the headline (ties: the earlier sentence), joined in body order."""
    from classify.stance import WHOLE_BODY_CHARS, best_sentences

    sentences = [f"Sentence number {i} of the story says something long enough to count, " + "and more " * 20 + "words."
                 for i in range(6)]
    body = " ".join(sentences)
    assert len(body) >= WHOLE_BODY_CHARS  # embedded sentence by sentence
    # similarity to the headline by sentence: 0.1, 0.9, 0.5, 0.5, 0.8, 0.2
    sims = {s: v for s, v in zip(sentences, [0.1, 0.9, 0.5, 0.5, 0.8, 0.2])}

    def embed(texts):
        out = []
        for t in texts:
            c = 1.0 if t == "The headline" else sims[t]
            out.append([c, np.sqrt(1 - c * c)])
        return np.array(out)

    assert best_sentences(["The headline"], [body], embed) == [" ".join(sentences[j] for j in (1, 2, 4))]
    assert best_sentences(["The headline"], [body], embed, top_k=2) == [f"{sentences[1]} {sentences[4]}"]
    assert best_sentences(["The headline"], [body], embed, top_k=4) == [" ".join(sentences[j] for j in (1, 2, 3, 4))]
    assert best_sentences(["The headline"], ["Short body."], embed=lambda ts: np.ones((len(ts), 2))) == ["Short body."]


def test_sentence_context_splits_short_stories_and_puts_the_closest_sentence_first():
    """``context="sentences"``: a story under WHOLE_BODY_CHARS is split too, and its top_k sentences come most similar
    first, so that a 64-piece window keeps the sentence about the claim even when the story puts it last; the
    default ("body") reads a short story whole, from its start; the texts to embed hold every sentence."""
    from classify.stance import WHOLE_BODY_CHARS, best_sentences, pair_embedding_texts

    story = ["Stoltenberg warns Moscow over Finland.", "Allies would act if Sweden came under pressure.",
             "He also said Iran had supplied Russia with drones."]
    body = " ".join(story)
    assert len(body) < WHOLE_BODY_CHARS
    sims = dict(zip(story, [0.2, 0.1, 0.9]))

    def embed(texts):
        c = np.array([1.0 if t == "Iran supplies drones" else sims.get(t, 0.0) for t in texts])
        return np.stack([c, np.sqrt(1 - c * c)], axis=1)

    h = ["Iran supplies drones"]
    assert best_sentences(h, [body], embed, top_k=2, context="sentences") == [f"{story[2]} {story[0]}"]
    assert best_sentences(h, [body], embed, top_k=3, context="sentences") == [" ".join(story[j] for j in (2, 0, 1))]
    assert best_sentences(h, [body], lambda ts: np.ones((len(ts), 2)), top_k=2) == [body]
    assert set(story) <= set(pair_embedding_texts(h, [body], "sentences"))
    assert not set(story) & set(pair_embedding_texts(h, [body]))
    long_body = " ".join(f"Sentence {i} " + "word " * 60 + "end." for i in range(4))
    assert len(long_body) >= WHOLE_BODY_CHARS
    long_sims = {s: v for s, v in zip(long_body.replace("end. ", "end.|").split("|"), [0.1, 0.8, 0.3, 0.9])}

    def embed_long(texts):
        c = np.array([1.0 if t == "H" else long_sims[t] for t in texts])
        return np.stack([c, np.sqrt(1 - c * c)], axis=1)
    parts = list(long_sims)
    assert best_sentences(["H"], [long_body], embed_long, top_k=2) == [f"{parts[1]} {parts[3]}"]  # body order
    assert best_sentences(["H"], [long_body], embed_long, top_k=2, context="sentences") == [f"{parts[3]} {parts[1]}"]
    with pytest.raises(ValueError, match="context"):
        best_sentences(h, [body], embed, context="lead")


def test_the_stance_model_gives_its_cross_encoder_the_context_it_is_set_to():
    story = "A first sentence about something else. The second sentence is the one about the claim."
    seen = {}

    class Recording(FixedCrossEncoder):
        def predict_proba(self, headlines, contexts):
            seen["contexts"] = list(contexts)
            return super().predict_proba(headlines, contexts)

    def embed(texts):
        c = np.array([1.0 if t in ("Claim", "The second sentence is the one about the claim.") else 0.1 for t in texts])
        return np.stack([c, np.sqrt(1 - c * c)], axis=1)
    for context, expected in (("body", story), ("sentences", "The second sentence is the one about the claim.")):
        m = fitted(FixedClassifier([[0.25] * 4]), Recording([[0.5, 0.5, 0.0]], classes=CLASSES[:3]))
        m.top_k, m.context = 1, context
        m.predict_proba(["Claim"], [story], embed)
        assert seen["contexts"] == [expected], context


def test_fit_temperature_searches_the_given_grid_only():
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    gold = np.array([0, 1, 1])
    assert fit_temperature(proba, gold, grid=[0.5]) == 0.5
    assert fit_temperature(proba, gold, grid=[3.0, 0.5]) == 3.0  # the softer one fits these mistakes better


MODEL_PARAMS = ["classifier", "cross_encoder", "mode", "weight", "top_k", "embedding_features", "text_embedding",
                "calibrate", "tune_scale", "validation_size", "refit_cross_encoder", "term_weights", "same_event",
                "same_event_max_similarity", "random_state", "log"]


def test_documented_defaults():
    m = StanceModel()
    assert {k: getattr(m, k) for k in MODEL_PARAMS} == {
        "classifier": None, "cross_encoder": None, "mode": "all", "weight": 0.5, "top_k": 3,
        "embedding_features": True, "text_embedding": False, "calibrate": False, "tune_scale": False,
        "validation_size": 0.2, "refit_cross_encoder": False, "term_weights": True, "same_event": 0,
        "same_event_max_similarity": None, "random_state": 0, "log": None}
    assert StanceClassifier().get_params() == {
        "kind": "logreg", "C": 1.0, "class_weight": "balanced", "max_iter": 300, "learning_rate": 0.1,
        "max_leaf_nodes": 31, "two_stage": False, "unrelated_label": "unrelated", "tune_scale": False,
        "validation_size": 0.2, "scale_grid": (0.5, 1.0, 2.0, 4.0, 8.0), "random_state": 0, "show_progress": False}


SETTINGS = {"mode": "related", "weight": 0.3, "top_k": 5, "context": "sentences", "embedding_features": False,
            "text_embedding": True,
            "calibrate": True, "tune_scale": True, "validation_size": 0.3, "refit_cross_encoder": True,
            "term_weights": False, "same_event": 6, "same_event_max_similarity": 0.55, "random_state": 7}


def _stateful(**changes):
    m = fitted(FixedClassifier([[0.25] * 4]), FixedCrossEncoder([[0.5, 0.5, 0.0]], classes=CLASSES[:3]),
               weight=0.3, scale=(1, 2, 1, 0.5), temperature=1.7, bias=(0, 0.2, -0.1, 0.4))
    for key, value in SETTINGS.items():
        setattr(m, key, value)
    m.n_features_in_, m.validation_ = 12, {"macro_f1": 0.5}
    state = json.loads(json.dumps(m.state()))
    state.update(changes)
    return m, state


def test_state_round_trip_keeps_every_setting_and_learned_value():
    m, state = _stateful()
    back = StanceModel.from_state(state, m.classifier_, m.cross_encoder_)
    assert {k: getattr(back, k) for k in SETTINGS} == SETTINGS
    assert back.classifier is None and back.cross_encoder is None and back.log is None
    assert back.classifier_ is m.classifier_ and back.cross_encoder_ is m.cross_encoder_ and back.term_weights_ is None
    assert back.classes_.tolist() == CLASSES.tolist() and back.n_features_in_ == 12 and back.weight_ == 0.3
    np.testing.assert_array_equal(back.class_scale_, [1, 2, 1, 0.5])
    np.testing.assert_array_equal(back.bias_, [0, 0.2, -0.1, 0.4])
    assert back.temperature_ == 1.7 and back.validation_ == {"macro_f1": 0.5}
    assert back.state() == state


def test_state_from_older_models_and_damaged_ones():
    m, state = _stateful()
    for key in ("bias", "text_embedding", "validation", "context"):
        del state[key]
    old = StanceModel.from_state(state, m.classifier_, None)
    np.testing.assert_array_equal(old.bias_, np.zeros(4))
    assert old.text_embedding is False and old.validation_ is None and old.context == "body"
    bad = [({"term_weights": True}, "no term weights"), ({"classes": ["agree", "disagree", "discuss", "other"]}, "classes"),
           ({"class_scale": [1, 1, 1]}, "classes"), ({"bias": [0, 0, 0]}, "bias"), ({"bias": [0, 0, float("nan"), 0]}, "bias"),
           ({"temperature": 0.0}, "temperature"), ({"temperature": -1.0}, "temperature"), ({"context": "lead"}, "context")]
    for change, words in bad:
        m, state = _stateful(**change)
        with pytest.raises(ValueError, match=words):
            StanceModel.from_state(state, m.classifier_, None)
    m, state = _stateful()
    with pytest.raises(ValueError, match="cross-encoder classes"):
        StanceModel.from_state(state, m.classifier_, FixedCrossEncoder([[1.0]], classes=["favor"]))


def _tuned(weight="auto", tune_scale=False, calibrate=False, mode="all"):
    """``_tune`` on four validation pairs, one per class: the features call every pair unrelated, the
    cross-encoder is right on all four (0.7 on the gold label, except 0.4 for the unrelated pair)."""
    feat = [[0.2, 0.1, 0.1, 0.6]] * 4
    ce = [[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.3, 0.2, 0.1, 0.4]]
    m = StanceModel(StanceClassifier(), mode=mode, weight=weight, tune_scale=tune_scale, calibrate=calibrate)
    m.classes_, m.class_scale_, m.temperature_, m.bias_ = CLASSES, np.ones(4), 1.0, np.zeros(4)
    m.weight_ = 0.5 if weight == "auto" else weight
    said = []
    m.log = said.append
    m._tune(FixedClassifier(feat), FixedCrossEncoder(ce), np.zeros((4, 1)), H * 2, B * 2, CLASSES.copy())
    return m, said


def test_tune_records_the_validation_pairs_per_label():
    # what the calibration was fitted on: benchmarks/page_calibration.py --label-prior moves it from these shares
    m = StanceModel(StanceClassifier(), weight=1.0, calibrate=True)
    m.classes_, m.class_scale_, m.temperature_, m.bias_, m.weight_ = CLASSES, np.ones(4), 1.0, np.zeros(4), 1.0
    y = np.array(["unrelated", "agree", "unrelated", "discuss", "unrelated", "agree"])
    proba = [[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7], [0.1, 0.1, 0.7, 0.1]] * 2
    m._tune(FixedClassifier(proba), FixedCrossEncoder(proba), np.zeros((6, 1)), ["h"] * 6, ["b"] * 6, y)
    assert m.validation_["labels"] == {"agree": 2, "disagree": 0, "discuss": 1, "unrelated": 3}
    assert m.validation_["pairs"] == 6


def test_tune_picks_the_weight_by_macro_f1_then_log_loss():
    m, said = _tuned()
    # w <= 0.25: every pair unrelated (macro-F1 0.1); from 0.5 on all four are right, and log-loss prefers 1.0
    assert m.validation_["weights_tried"] == {"0.0": 0.1, "0.25": 0.1, "0.5": 1.0, "0.75": 1.0, "1.0": 1.0}
    assert m.weight_ == 1.0 and m.validation_["weight"] == 1.0 and m.validation_["macro_f1"] == 1.0
    assert m.validation_["pairs"] == 4 and m.temperature_ == 1.0 and m.bias_.tolist() == [0, 0, 0, 0]
    np.testing.assert_array_equal(m.class_scale_, np.ones(4))
    assert said == ["validation: weight 1.0, macro-F1 1.000, temperature 1.00"]
    fixed, _ = _tuned(weight=0.25)
    assert fixed.validation_["weights_tried"] == {"0.25": 0.1} and fixed.weight_ == 0.25
    assert fixed.validation_["macro_f1"] == 0.1


def test_tune_scales_and_calibrates_the_chosen_mix():
    m, _ = _tuned(tune_scale=True)
    # the first scales (agree fixed at 1, grid order) that keep all four right: unrelated (0.4) must stay above
    # agree (0.3) in the last pair, so unrelated keeps 1 while disagree and discuss may shrink to 0.5
    np.testing.assert_array_equal(m.class_scale_, [1.0, 0.5, 0.5, 1.0])
    assert m.validation_["class_scale"] == [1.0, 0.5, 0.5, 1.0]
    ce = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.3, 0.2, 0.1, 0.4]])
    scaled = ce * [1.0, 0.5, 0.5, 1.0]
    scaled /= scaled.sum(axis=1, keepdims=True)
    t, _ = _tuned(tune_scale=True, calibrate="temperature")
    assert t.temperature_ == fit_temperature(scaled, np.arange(4)) != 1.0 and t.bias_.tolist() == [0, 0, 0, 0]
    b, _ = _tuned(tune_scale=True, calibrate=True)
    temperature, bias = fit_calibration(scaled, np.arange(4))
    assert b.temperature_ == temperature and b.validation_["temperature"] == temperature
    np.testing.assert_array_equal(b.bias_, bias)
    assert b.validation_["bias"] == bias.tolist() and np.abs(bias).max() > 0.01


class RecordingCE:
    """A cross-encoder that records what each copy is fitted on (the model deep-copies it per fit)."""

    fits: list = []

    def __init__(self, classes=CLASSES):
        self.classes_ = np.asarray(classes)

    def fit(self, headlines, contexts, labels, same_event=None):
        RecordingCE.fits.append({"headlines": list(headlines), "contexts": list(contexts), "labels": list(labels),
                                 "same_event": same_event})
        self.n_fit = len(headlines)
        return self

    def predict_proba(self, headlines, contexts):
        return np.full((len(headlines), len(self.classes_)), 1.0 / len(self.classes_))


def _pairs(n_events=10):
    """Four pairs per event (one per label); a long body whose last sentence names the event."""
    heads, bodies, labels, events = [], [], [], []
    for e in range(n_events):
        for j, label in enumerate(CLASSES):
            heads.append(f"Headline of event {e}")
            filler = " ".join(f"Filler sentence {k} of story {j} runs on about nothing much {'at all ' * 30}."
                              for k in range(4))  # over WHOLE_BODY_CHARS: embedded sentence by sentence
            bodies.append(f"{filler} Event {e} story {label} here.")
            labels.append(label)
            events.append(f"event-{e}")
    return heads, bodies, np.array(labels), events


def _embed(texts):
    rng = np.random.default_rng(0)
    table = {}
    out = []
    for t in texts:
        if t not in table:
            table[t] = rng.normal(size=16) + (np.eye(16)[hash(t.split()[-2]) % 16] * 3 if "event" in t.lower() else 0)
        out.append(table[t] / np.linalg.norm(table[t]))
    return np.array(out)


def test_fit_without_validation_sets_plain_defaults_and_passes_groups():
    heads, bodies, y, events = _pairs()
    said = []
    m = StanceModel(StanceClassifier(tune_scale=True, scale_grid=(1.0, 2.0)), weight=0.3, term_weights=False,
                    log=said.append).fit(heads, bodies, y, _embed, groups=events)
    assert m.weight_ == 0.0 and m.cross_encoder_ is None and m.term_weights_ is None  # no cross-encoder
    assert m.temperature_ == 1.0 and m.bias_.tolist() == [0, 0, 0, 0] and m.validation_ is None
    # not validating: the classifier tuned its own class scales, and the model uses them
    np.testing.assert_array_equal(m.class_scale_, m.classifier_.class_scale_)
    assert m.class_scale_.dtype == float and said == ["stance features"]
    assert m.classes_.tolist() == CLASSES.tolist() and m.n_features_in_ == m.features(heads[:1], bodies[:1], _embed).shape[1]
    with_tw = StanceModel(StanceClassifier()).fit(heads, bodies, y, _embed)
    assert with_tw.term_weights_ is not None and "headline" in with_tw.term_weights_.vocabulary_


def test_fit_with_a_cross_encoder_splits_by_group_tunes_and_keeps_or_refits():
    heads, bodies, y, events = _pairs()
    RecordingCE.fits = []
    said = []
    m = StanceModel(StanceClassifier(), RecordingCE(), weight=0.3, calibrate=True, validation_size=0.2, top_k=1,
                    log=said.append).fit(heads, bodies, y, _embed, groups=events)
    assert len(RecordingCE.fits) == 1  # fitted once, on the fit part, and kept
    fit = RecordingCE.fits[0]
    assert len(fit["headlines"]) == 32 and m.cross_encoder_.n_fit == 32  # 8 of 10 events
    assert len({h for h in fit["headlines"]}) == 8  # whole events on one side
    # the cross-encoder reads the body's sentence nearest the headline (top_k 1 of 5), not the whole body
    assert all(c.count(".") == 1 for c in fit["contexts"])
    assert m.weight_ == 0.3 and m.validation_["pairs"] == 8 and m.validation_["weights_tried"] == {"0.3": m.validation_["macro_f1"]}
    assert said[1] == "validation split: 32 pairs to fit, 8 to tune (2 groups)"
    assert said[2] == "cross-encoder (all labels) on 32 pairs" and said[-1].startswith("validation: weight 0.3")
    RecordingCE.fits = []
    r = StanceModel(StanceClassifier(), RecordingCE(), weight=0.3, calibrate=True, refit_cross_encoder=True
                    ).fit(heads, bodies, y, _embed, groups=events)
    assert [len(f["headlines"]) for f in RecordingCE.fits] == [32, 40] and r.cross_encoder_.n_fit == 40
    # tune_on: only the masked validation pairs tune
    RecordingCE.fits = []
    mask = np.array([label != "discuss" for label in y])
    t = StanceModel(StanceClassifier(), RecordingCE(), weight=0.3, calibrate=True).fit(heads, bodies, y, _embed,
                                                                                        groups=events, tune_on=mask)
    assert t.validation_["pairs"] == 6
    # without groups the headlines group the pairs (here the same events)
    RecordingCE.fits = []
    StanceModel(StanceClassifier(), RecordingCE(), weight=0.3, calibrate=True).fit(heads, bodies, y, _embed)
    assert len({h for h in RecordingCE.fits[0]["headlines"]}) == 8


def test_a_validation_split_that_loses_a_label_names_it():
    from classify.errors import DataError

    heads, bodies, y, events = _pairs(n_events=5)
    y = y.copy()
    y[y == "discuss"] = "agree"
    y[0] = "discuss"  # one discuss pair, in event 0
    for seed in range(20):  # a seed whose validation part holds event 0
        m = StanceModel(StanceClassifier(), calibrate=True, validation_size=0.2, random_state=seed)
        try:
            m.fit(heads, bodies, y, _embed, groups=events)
        except DataError as err:
            assert "leaves no pair labelled 'discuss' to fit on" in str(err)
            assert "stance.validation_size" in str(err) and "seed" in str(err)
            break
    else:
        raise AssertionError("no seed put event 0 in the validation part")


def test_base_estimators_carry_the_settings():
    hgb = StanceClassifier(kind="hgb", learning_rate=0.2, max_iter=17, max_leaf_nodes=9, class_weight=None,
                           random_state=3)._base()
    assert {k: hgb.get_params()[k] for k in ("learning_rate", "max_iter", "max_leaf_nodes", "class_weight",
                                              "random_state", "early_stopping")} == \
        {"learning_rate": 0.2, "max_iter": 17, "max_leaf_nodes": 9, "class_weight": None, "random_state": 3,
         "early_stopping": False}
    pipe = StanceClassifier(C=0.7, class_weight="balanced", max_iter=55, random_state=4)._base()
    scaler, logreg = [step for _, step in pipe.steps]
    assert type(scaler).__name__ == "StandardScaler"
    assert {k: logreg.get_params()[k] for k in ("C", "class_weight", "max_iter", "random_state")} == \
        {"C": 0.7, "class_weight": "balanced", "max_iter": 55, "random_state": 4}


def _separable(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = np.array(CLASSES)[rng.integers(0, 4, n)]
    X = rng.normal(scale=0.3, size=(n, 4)) + np.eye(4)[np.searchsorted(CLASSES, y)] * 2
    return X, y


def test_two_stage_separates_unrelated_first_then_the_rest():
    X, y = _separable()
    clf = StanceClassifier(two_stage=True).fit(X, y)
    assert clf.stage1_.classes_.tolist() == [False, True]  # True: related
    assert "unrelated" not in clf.stage2_.classes_.tolist() and len(clf.stage2_.classes_) == 3
    assert (clf.predict(X) == y).mean() > 0.95
    p = clf.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    related = clf.stage1_.predict_proba(X)[:, 1]
    np.testing.assert_allclose(p[:, 3], 1 - related)  # unrelated column: 1 - P(related)
    one = StanceClassifier().fit(X, y)
    assert (one.predict(X) == y).mean() > 0.95 and not hasattr(one, "stage1_")


def test_progress_bars_name_each_stage(capsys):
    X, y = _separable(120)
    StanceClassifier(kind="hgb", max_iter=5, two_stage=True, show_progress=True).fit(X, y)
    err = capsys.readouterr().err
    assert "stance classifier, related or not" in err and "stance classifier, related pairs" in err
    StanceClassifier(kind="hgb", max_iter=5, show_progress=True).fit(X, y)
    err = capsys.readouterr().err
    assert "stance classifier:" in err and "related" not in err


def test_tune_scale_fits_on_a_grouped_part_and_scores_the_rest():
    """The reference computation, step by step: a grouped split by validation_size and random_state, a model
    without scale tuning on one part, _best_scale on the other with the largest class fixed."""
    from sklearn.model_selection import GroupShuffleSplit

    from classify.stance import _best_scale

    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 3))
    y = np.where(X[:, 0] + rng.normal(scale=1.0, size=200) > 0.9, "b", "a")
    groups = np.arange(200) // 5
    for g, size, seed in ((groups, 0.3, 5), (None, 0.25, 1)):
        clf = StanceClassifier(tune_scale=True, validation_size=size, random_state=seed, class_weight=None,
                               scale_grid=(1.0, 1.5, 2.0, 3.0, 4.0))
        clf.fit(X, y, g)
        split = GroupShuffleSplit(1, test_size=size, random_state=seed)
        fit_idx, val_idx = next(split.split(X, y, g if g is not None else np.arange(200)))
        inner = StanceClassifier(validation_size=size, random_state=seed, class_weight=None).fit(X[fit_idx], y[fit_idx])
        expected = _best_scale(inner.predict_proba(X[val_idx]), np.searchsorted(["a", "b"], y[val_idx]), 2,
                               (1.0, 1.5, 2.0, 3.0, 4.0), fixed=0)
        np.testing.assert_array_equal(clf.class_scale_, expected)
        assert expected[1] > 1.0


def test_features_pass_every_setting_to_pair_features():
    from classify.stance import fit_term_weights, pair_features

    heads, bodies, y, _ = _pairs(2)
    m = StanceModel(top_k=1, embedding_features=False, text_embedding=True)
    m.term_weights_ = fit_term_weights(heads + bodies)
    np.testing.assert_array_equal(m.features(heads, bodies, _embed), pair_features(
        heads, bodies, _embed, top_k=1, embedding_features=False, text_embedding=True, term_weights=m.term_weights_))
    plain = StanceModel()
    np.testing.assert_array_equal(plain.features(heads, bodies, _embed), pair_features(heads, bodies, _embed))


def test_when_the_model_holds_out_a_validation_split():
    ce = RecordingCE()
    cases = [({}, False), ({"calibrate": True}, True), ({"calibrate": "temperature"}, True),
             ({"cross_encoder": ce, "weight": "auto"}, True), ({"weight": "auto"}, False),
             ({"cross_encoder": ce, "weight": 0.5}, False), ({"cross_encoder": ce, "tune_scale": True}, True),
             ({"cross_encoder": ce, "tune_scale": True, "mode": "related"}, False), ({"tune_scale": True}, False)]
    for settings, expected in cases:
        assert StanceModel(StanceClassifier(), **settings)._validates() is expected, settings


def test_parts_fitted_for_validation_leave_scale_tuning_to_the_mix_and_related_mode_skips_unrelated():
    heads, bodies, y, events = _pairs()
    RecordingCE.fits = []
    m = StanceModel(StanceClassifier(tune_scale=True), RecordingCE(classes=CLASSES[:3]), mode="related",
                    weight=0.5, calibrate=True).fit(heads, bodies, y, _embed, groups=events)
    assert m.classifier_.tune_scale is False  # scales are tuned on the mixed probabilities
    assert all("unrelated" not in f["labels"] for f in RecordingCE.fits)
    assert [len(f["labels"]) for f in RecordingCE.fits] == [24]  # 3 related pairs of each of 8 events
    m = StanceModel(StanceClassifier(tune_scale=True)).fit(heads, bodies, y, _embed, groups=events)
    assert m.classifier_.tune_scale is True  # not validating: the classifier keeps tuning its own


def test_term_weights_settings():
    from classify.stance import fit_term_weights

    tw = fit_term_weights(["The Kherson bridge and the the the bridge", "Kherson ferry"])
    assert "the" not in tw.vocabulary_ and "ferry" in tw.vocabulary_  # English stop words out; min_df 1
    assert tw.sublinear_tf and tw.dtype == np.float32
    row = tw.transform(["bridge bridge bridge kherson"]).toarray()[0]
    idf = tw.idf_
    expected = np.array([(1 + np.log(3)) * idf[tw.vocabulary_["bridge"]], idf[tw.vocabulary_["kherson"]]])
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose([row[tw.vocabulary_["bridge"]], row[tw.vocabulary_["kherson"]]], expected, rtol=1e-6)


class _FakeSide:
    def __init__(self, content, rates, numbers=(), words=()):
        self.content, self.rates, self.numbers, self.words = set(content), list(rates), set(numbers), list(words)


def test_lexical_features_by_hand():
    from classify.stance import lexical_features

    h = _FakeSide("abcd", [0.1, 0.2, 0.3], {"3", "2022"}, ["w"] * 9)
    b = _FakeSide("abe", [0.4, 0.5, 0.6], {"3"}, ["w"] * 15)
    best = _FakeSide("ae", [0.7, 0.8, 0.9], words=["x", "denies", "y"])
    got = lexical_features(h, b, best, "Is it true? ", "A body with no question")
    expected = [2 / 5, 2 / 4, 1 / 4, 0.4, 0.7, 1.0, 0.5, 0.8, 0.6, 0.9, 0.3, 0.1, 0.2, 1.0, 1 / 2, 0.0, 1.0,
                np.log1p(15), np.log1p(9)]
    np.testing.assert_allclose(got, expected)
    # denominators of one, no refuting word, a question in the body, a headline that asks nothing
    h1, b1 = _FakeSide("a", [0, 0, 0], {"5"}), _FakeSide("a", [0, 0, 0])
    got = lexical_features(h1, b1, _FakeSide("a", [0, 0, 0], words=["says"]), "A statement", "Who knows? Not us")
    np.testing.assert_allclose(got[:3], [1.0, 1.0, 1.0])
    assert got[5] == 0.0 and got[13] == 1.0 and got[14] == 1.0 and got[15] == 1.0 and got[16] == 0.0
    got = lexical_features(_FakeSide("", [0, 0, 0]), _FakeSide("", [0, 0, 0]), _FakeSide("", [0, 0, 0]), "", "")
    assert got[:3] == [0.0, 0.0, 0.0] and got[13] == 0.0 and got[14] == 0.0


def test_pair_features_by_hand(monkeypatch):
    """One pair, six body sentences with chosen cosines to the headline: every similarity column, the cue words
    of the best three sentences, and the embedding products, computed by hand."""
    from sklearn.feature_extraction.text import CountVectorizer

    from classify import stance

    monkeypatch.setattr(stance, "WHOLE_BODY_CHARS", 10)  # embed this short body sentence by sentence
    headline = "Kherson bridge shelled overnight"
    sents = ["Reportedly a quiet night in the region.", "Kherson bridge was shelled overnight by artillery.",
             "Engineers inspected the damage.", "Officials denied the bridge was closed.",
             "Traffic resumed at noon.", "Kherson residents crossed on foot."]
    body = " ".join(sents)
    cos = [0.2, 0.9, 0.55, 0.65, 0.5, 0.6]
    vec = {headline: np.array([1.0, 0.0, 0.0])}
    for s, c in zip(sents, cos):
        vec[s] = np.array([c, np.sqrt(1 - c * c), 0.0])
    embed = lambda texts: np.stack([vec[t] for t in texts])  # noqa: E731
    F = stance.pair_features([headline], [body], embed, top_k=3)
    n_dense, n_lex, n_cue = 12, 19, len(stance.CUE_WORDS)
    assert F.shape == (1, n_dense + n_lex + n_cue + 4 * 3) and F.dtype == np.float32
    S = np.stack([vec[s] for s in sents])
    b = S.mean(axis=0) / np.linalg.norm(S.mean(axis=0))
    best = S[[1, 3, 5]].mean(axis=0) / np.linalg.norm(S[[1, 3, 5]].mean(axis=0))
    h = vec[headline]
    counts = CountVectorizer(stop_words="english").fit([headline, body])
    tf = counts.transform([headline, body]).toarray().astype(float)
    tf /= np.linalg.norm(tf, axis=1, keepdims=True)
    dense = [h @ b, 0.9, (0.9 + 0.65) / 2, (0.9 + 0.65 + 0.6) / 3, (0.9 + 0.65 + 0.6 + 0.55 + 0.5) / 5,
             sum(cos) / 6, 0.2, h @ best, 4 / 6, 2, 1 / 5, tf[0] @ tf[1]]
    np.testing.assert_allclose(F[0, :n_dense], dense, rtol=1e-5, atol=1e-6)
    cues = F[0, n_dense + n_lex:n_dense + n_lex + n_cue]
    on = {w for w, v in zip(stance.CUE_WORDS, cues) if v}
    assert on == {"denied"}  # in sentence 3 (one of the best three); "reportedly" is only in sentence 0
    np.testing.assert_allclose(F[0, -12:], np.concatenate([h * best, np.abs(h - best), h * b, np.abs(h - b)]),
                               rtol=1e-5, atol=1e-6)
    # the best sentences are what the lexical features read: the overlap with them, not the whole body
    lex = F[0, n_dense:n_dense + n_lex]
    words_best = set(" ".join(sents[j] for j in (1, 3, 5)).lower().replace(".", "").split())
    h_content = {"kherson", "bridge", "shelled", "overnight"}
    np.testing.assert_allclose(lex[2], len(h_content & words_best) / 4)
    # a one-segment body is its own best part
    short = stance.pair_features([headline], ["Kherson bridge shelled."], lambda t: np.stack(
        [vec[headline] if x == headline else np.array([0.6, 0.8, 0.0]) for x in t]), embedding_features=False)
    assert short.shape == (1, n_dense + n_lex + n_cue)
    np.testing.assert_allclose(short[0, [1, 3, 6, 7, 10]], [0.6, 0.6, 0.6, 0.6, 0.0], rtol=1e-6)


def test_fit_calibration_reaches_its_bounds_where_the_data_asks():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 3))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    # every gold label is the most probable one: the sharpest temperature allowed (0.05) fits best
    t, bias = fit_calibration(proba, proba.argmax(axis=1))
    assert t == pytest.approx(0.05, rel=1e-4) and bias[0] == 0.0
    # labels unrelated to the probabilities: flatten (the softest allowed, 20) and let the biases carry the
    # class frequencies; a class that never occurs gets the lowest bias allowed (-10)
    gold = rng.choice([0, 1], size=300, p=[0.75, 0.25])
    t, bias = fit_calibration(proba, gold)
    assert t == pytest.approx(20.0, rel=1e-3)
    assert bias[1] == pytest.approx(np.log(np.mean(gold == 1) / np.mean(gold == 0)), abs=0.05)
    assert bias[2] == pytest.approx(-10.0, abs=1e-6)
    # confidence about right: a temperature of 1 and no bias
    gold = np.array([rng.choice(3, p=p) for p in proba])
    t, bias = fit_calibration(proba, gold)
    assert 0.7 < t < 1.4 and np.abs(bias).max() < 0.4


class ContextCE(FixedCrossEncoder):
    def predict_proba(self, headlines, contexts):
        self.seen.append((list(headlines), list(contexts)))
        return self.proba[: len(headlines)].copy()


def test_related_mode_with_several_related_pairs_and_a_tie():
    # pairs 0 and 2 related (mass 0.8 and 0.6), pair 1 a tie (0.5 vs 0.5: not related), pair 3 unrelated
    feat = [[0.5, 0.2, 0.1, 0.2], [0.2, 0.2, 0.1, 0.5], [0.1, 0.4, 0.1, 0.4], [0.1, 0.1, 0.1, 0.7]]
    ce = ContextCE([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], classes=CLASSES[:3])
    m = fitted(FixedClassifier(feat), ce, mode="related", weight=0.5)
    proba = m._mix(m.classifier_, ce, 0.5, np.zeros((4, 1)), ["h0", "h1", "h2", "h3"], ["c0", "c1", "c2", "c3"])
    assert ce.seen == [(["h0", "h2"], ["c0", "c2"])]
    for row, mass, ce_row in ((0, 0.8, [0, 1, 0]), (2, 0.6, [1, 0, 0])):
        inner = np.array(feat[row][:3]) / mass
        np.testing.assert_allclose(proba[row, :3], (0.5 * np.array(ce_row) + 0.5 * inner) * mass)
        assert proba[row, 3] == feat[row][3]
    np.testing.assert_allclose(proba[[1, 3]], np.array(feat)[[1, 3]])


@pytest.mark.parametrize("mode", ["all", "related"])
def test_tune_scores_each_validation_pair_once_for_all_weights(mode):
    # five weights tried, the cross-encoder asked once; in related mode the same tune as _mix weight by weight
    feat = [[0.5, 0.2, 0.1, 0.2], [0.1, 0.1, 0.1, 0.7], [0.1, 0.5, 0.2, 0.2], [0.2, 0.1, 0.5, 0.2]]
    rows = [[0.6, 0.2, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1]]
    classes = CLASSES if mode == "all" else CLASSES[:3]
    ce = ContextCE([r[: len(classes)] for r in (rows if mode == "all" else [rows[0], rows[2], rows[3]])],
                   classes=classes)
    m = StanceModel(StanceClassifier(), mode=mode, weight="auto")
    m.classes_, m.class_scale_, m.temperature_, m.bias_, m.weight_ = CLASSES, np.ones(4), 1.0, np.zeros(4), 0.5
    heads, contexts = ["h0", "h1", "h2", "h3"], ["c0", "c1", "c2", "c3"]
    m._tune(FixedClassifier(feat), ce, np.zeros((4, 1)), heads, contexts, CLASSES.copy())
    assert ce.seen == ([(heads, contexts)] if mode == "all" else [(["h0", "h2", "h3"], ["c0", "c2", "c3"])])
    assert len(m.validation_["weights_tried"]) == 5
    parts = m._scores(FixedClassifier(feat), ContextCE(ce.proba, classes=classes), np.zeros((4, 1)), heads, contexts)
    first = m._combine(FixedClassifier(feat), ce, 0.5, *parts)
    np.testing.assert_array_equal(parts[0], feat)  # the scores serve the next weight as they were
    np.testing.assert_array_equal(m._combine(FixedClassifier(feat), ce, 0.5, *parts), first)
    for w, f1 in m.validation_["weights_tried"].items():
        one = ContextCE(ce.proba, classes=classes)
        proba = m._mix(FixedClassifier(feat), one, float(w), np.zeros((4, 1)), heads, contexts)
        gold = np.arange(4)
        assert f1 == round(float(np.mean([
            2 * np.sum((proba.argmax(1) == k) & (gold == k))
            / max(np.sum(proba.argmax(1) == k) + np.sum(gold == k), 1) for k in range(4)])), 4)


def test_part_proba_gives_each_part_scored_once_and_what_predict_proba_gives():
    feat = [[0.1, 0.1, 0.1, 0.7], [0.6, 0.2, 0.1, 0.1]]
    ce = ContextCE([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]])
    m = fitted(FixedClassifier(feat), ce, weight=0.25, scale=(1, 2, 1, 1), temperature=2.0, bias=(0.1, 0, 0, -0.1))
    parts = m.part_proba(H, B, embed)
    assert list(parts) == ["classifier", "cross_encoder", "mix", "calibrated"] and len(ce.seen) == 1
    np.testing.assert_allclose(parts["classifier"], feat)
    np.testing.assert_allclose(parts["cross_encoder"], ce.proba)
    np.testing.assert_allclose(parts["mix"], 0.75 * np.array(feat) + 0.25 * ce.proba)
    np.testing.assert_allclose(parts["calibrated"], m.predict_proba(H, B, embed))
    # related mode: the cross-encoder does not score every pair, so it is not a part of its own
    related = fitted(FixedClassifier(feat), ContextCE([[0.0, 1.0, 0.0]], classes=CLASSES[:3]), mode="related")
    assert list(related.part_proba(H, B, embed)) == ["classifier", "mix", "calibrated"]
    assert list(fitted(FixedClassifier(feat)).part_proba(H, B, embed)) == ["classifier", "mix", "calibrated"]
    empty = m.part_proba([], [], embed)
    assert list(empty) == list(parts) and all(v.shape == (0, 4) for v in empty.values())
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        StanceModel().part_proba(H, B, embed)


def test_predict_proba_edges_and_what_the_cross_encoder_reads(monkeypatch):
    from sklearn.exceptions import NotFittedError

    from classify import stance

    with pytest.raises(NotFittedError, match="^StanceModel is not fitted$"):
        StanceModel().predict_proba(H, B, embed)
    m = fitted(FixedClassifier([[0.25] * 4]))
    assert m.predict_proba([], [], embed).shape == (0, 4)
    ce = ContextCE([[0.7, 0.1, 0.1, 0.1]])
    m = fitted(FixedClassifier([[0.25] * 4]), ce, weight=0.5)
    m.top_k = 1
    monkeypatch.setattr(stance, "WHOLE_BODY_CHARS", 10)
    body = "First sentence here. Second sentence there."
    m.predict_proba(["Second sentence"], [body], lambda ts: np.stack([[1.0, 0.0] if "Second" in t else [0.0, 1.0]
                                                                      for t in ts]))
    assert ce.seen == [(["Second sentence"], ["Second sentence there."])]  # its best sentence, not the body
    plain = fitted(FixedClassifier([[0.25] * 4]))
    assert plain.predict_proba(["h"], ["A body."], embed).shape == (1, 4)


def test_normalise_by_hand():
    m = fitted(FixedClassifier([[0.25] * 4]), scale=(1, 0.5, 0.5, 0.5))
    np.testing.assert_allclose(m._normalise(np.array([[0.4, 0.2, 0.2, 0.2]])), [[0.4, 0.1, 0.1, 0.1]] / np.float64(0.7))


def test_best_scale_with_three_classes_and_an_absent_one():
    from classify.stance import _best_scale

    # class 2 is never gold: macro-F1 over all three labels counts its 0 whenever it is predicted
    proba = np.array([[0.5, 0.3, 0.2], [0.45, 0.4, 0.15], [0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    gold = np.array([0, 1, 1, 0])
    # class 1 needs 1.5 (row 1: 0.45 vs 0.6; at 2 row 0 would flip); class 2 is free, so it keeps the first value
    np.testing.assert_array_equal(_best_scale(proba, gold, 3, (0.5, 1.0, 1.5), fixed=0), [1.0, 1.5, 0.5])


def test_split_sentences_limits():
    from classify.stance import split_sentences

    text = " ".join(f"Sentence {i} is here." for i in range(70))
    assert len(split_sentences(text)) == 60 and split_sentences(text, 5)[-1] == "Sentence 4 is here."
    assert split_sentences("It is. Ok. Yes. Fine then.") == ["It is.", "Ok.", "Yes.", "Fine then."]
    assert split_sentences("Hello there. Ok") == ["Hello there."]  # fragments of two characters or fewer go
    assert split_sentences("A. B.") == ["A. B."]  # nothing left: the text itself
    assert split_sentences("   ") == ["."]


def test_term_features_by_hand():
    from classify.stance import _term_features, fit_term_weights

    tw = fit_term_weights(["kherson bridge", "kherson ferry", "odesa port", "kherson port"])
    rows = _term_features(tw, ["kherson bridge", "odesa port"], ["the bridge at kherson", "nothing shared"],
                          ["kherson", "port"])
    H = tw.transform(["kherson bridge", "odesa port"]).toarray()
    B = tw.transform(["the bridge at kherson", "nothing shared", "kherson", "port"]).toarray()
    top = tw.idf_.max()
    np.testing.assert_allclose(rows[0], [H[0] @ B[0], H[0] @ B[2], tw.idf_[tw.vocabulary_["bridge"]] / top], rtol=1e-6)
    np.testing.assert_allclose(rows[1], [0.0, H[1] @ B[3], 0.0], atol=1e-7)
    assert rows.dtype == np.float32 and rows[0, 2] == pytest.approx(1.0)  # "bridge" is the rarest word
    # repeated and reordered texts: each pair is scored on its own two texts, whatever else shares them
    heads = ["odesa port", "kherson bridge", "odesa port", "kherson bridge"]
    bodies = ["kherson port", "kherson port", "the bridge at kherson", "odesa ferry"]
    bests = ["port", "kherson", "bridge", "odesa"]
    rows = _term_features(tw, heads, bodies, bests)
    for i, (h, b, best) in enumerate(zip(heads, bodies, bests)):
        hv, bv, sv = tw.transform([h, b, best]).toarray()
        shared = [tw.idf_[j] / top for j in np.nonzero(hv * bv)[0]]
        np.testing.assert_allclose(rows[i], [hv @ bv, hv @ sv, max(shared, default=0.0)], rtol=1e-6, atol=1e-7)


def test_state_accepts_what_is_valid_and_names_what_is_not():
    m, state = _stateful(temperature=0.5)
    full = FixedCrossEncoder([[0.25] * 4], classes=CLASSES)  # a cross-encoder on all four labels
    assert StanceModel.from_state(state, m.classifier_, full).temperature_ == 0.5
    for change, message in (({"term_weights": True}, "stance.skops holds no term weights but stance.json expects them"),
                            ({"class_scale": [1, 1]}, "stance classifier classes do not match stance.json"),
                            ({"bias": [0, 0]}, "stance.json: bias must hold one finite number per class"),
                            ({"temperature": 0}, "stance temperature must be positive")):
        m, state = _stateful(**change)
        with pytest.raises(ValueError, match=f"^{message}$"):
            StanceModel.from_state(state, m.classifier_, None)
    m, state = _stateful()
    with pytest.raises(ValueError, match="^cross-encoder classes are not stance classes$"):
        StanceModel.from_state(state, m.classifier_, FixedCrossEncoder([[1.0]], classes=["favor"]))


def test_validation_holds_out_whole_groups_of_the_given_size():
    heads, bodies, y, events = _pairs()
    heads = [f"{h} ({i % 2})" for i, h in enumerate(heads)]  # two headlines per event
    RecordingCE.fits = []
    StanceModel(StanceClassifier(), RecordingCE(), weight=0.3, calibrate=True, validation_size=0.3).fit(
        heads, bodies, y, _embed, groups=events)
    fitted_heads = RecordingCE.fits[0]["headlines"]
    assert len(fitted_heads) == 28  # 7 of 10 events, 4 pairs each
    fitted_events = {events[heads.index(h)] for h in fitted_heads}
    assert len(fitted_events) == 7 and len(set(fitted_heads)) == 14  # both headlines of each of them


def _stories_embed(table):
    return lambda texts: np.array([table[t] for t in texts], dtype=float)


def test_same_event_pairs_by_hand():
    from classify.stance import same_event_pairs

    a1, a2, a3 = "Dam breached. Water floods the town.", "Who blew the dam? Both sides blame each other.", \
        "Evacuation under way. Buses leave the flooded town."
    b1, b2 = "Grain deal ends. Moscow walks out of the accord.", "Ships stuck. Ports wait for the grain deal."
    c1, unknown = "Lone story. Nothing else on this event.", "No event. Unknown story."
    long_b = "Long grain story. " + "More words about the grain deal. " * 40  # over WHOLE_BODY_CHARS: skipped
    unit = lambda *v: np.array(v, dtype=float) / np.linalg.norm(v)  # noqa: E731
    table = {a1: unit(1, 0, 0), a2: unit(1, 0.1, 0), a3: unit(1, 0, 0.3), b1: unit(0.8, 0.6, 0),
             b2: unit(0, 1, 0), c1: unit(0.9, 0, 0.44), unknown: unit(1, 0, 0), long_b: unit(1, 0, 0)}
    bodies = [a1, a2, a3, b1, b2, c1, unknown, long_b, a1]  # a1 twice: one story
    events = ["A", "A", "A", "B", "B", "C", "", "B", "A"]
    first, second, same = same_event_pairs(bodies, events, _stories_embed(table), per_event=10)
    title = {a1: "Dam breached.", a2: "Who blew the dam?", a3: "Evacuation under way.", b1: "Grain deal ends.",
             b2: "Ships stuck."}
    positives = {(f, s) for f, s, y in zip(first, second, same) if y == 1}
    assert positives == {(title[x], y) for grp in ([a1, a2, a3], [b1, b2]) for x in grp for y in grp if x != y}
    assert len(first) == len(second) == len(same) == 16 and same == [1, 0] * 8  # each positive, then its negative
    # the negative: the same title with the most similar story of another event (never unknown or long ones)
    nearest_other = {a1: c1, a2: c1, a3: c1, b1: a2, b2: a2}  # cosines by hand, e.g. a2·c1 0.894 > a2·b1 0.856
    for f, s, y in zip(first, second, same):
        if y == 0:
            story = next(x for x in title if title[x] == f)
            assert s == nearest_other[story], (f, s)
    # per_event caps the positives of each event; max_similarity drops negatives closer than it
    f2, s2, y2 = same_event_pairs(bodies, events, _stories_embed(table), per_event=1)
    assert y2 == [1, 0, 1, 0]
    f3, s3, y3 = same_event_pairs(bodies, events, _stories_embed(table), per_event=10, max_similarity=0.5)
    for f, s, y in zip(f3, s3, y3):
        if y == 0:
            story = next(x for x in title if title[x] == f)
            assert table[story] @ table[s] <= 0.5
    # b1 has no story of another event within 0.5 (a1 0.8, a2 0.856, a3 0.766, c1 0.719): its positive stands alone
    assert sum(y3) == 8 and len(y3) == 15
    assert [y for f, y in zip(f3, y3) if f == "Grain deal ends."] == [1]
    # a seed picks which ordered pairs an event gives; the same seed the same ones
    pick = lambda seed: same_event_pairs(bodies, events, _stories_embed(table), 2, seed=seed)  # noqa: E731
    assert pick(1) == pick(1) and any(pick(k) != pick(0) for k in range(1, 6))
    assert same_event_pairs([a1, unknown], ["A", ""], _stories_embed(table), 10) == ([], [], [])


def test_same_event_pairs_come_from_the_fitted_events_only():
    heads, bodies, y, events = _pairs()
    short = [f"Story {i} of {e}. It says what happened at {e}." for i, e in enumerate(events)]
    body_events = [e if label != "unrelated" else f"other-{i}" for i, (e, label) in enumerate(zip(events, y))]
    RecordingCE.fits = []
    said = []
    m = StanceModel(StanceClassifier(), RecordingCE(), weight=0.3, calibrate=True, top_k=1, same_event=2,
                    log=said.append).fit(heads, short, y, _embed, groups=events, body_events=body_events)
    fit = RecordingCE.fits[0]
    first, second, same = fit["same_event"]
    fitted_events = {e for h, e in zip(heads, events) if h in set(fit["headlines"])}
    story_event = dict(zip(short, body_events))
    assert len(fitted_events) == 8
    # 8 fitted events with 3 related stories each: 2 positives each, each with a negative
    assert sum(same) == 16 and len(same) == 32
    assert all(story_event[s] in fitted_events for s in second)  # no validation event's story
    assert "32 pairs + 32 same-event story pairs" in said[2]
    assert m.same_event == 2
    RecordingCE.fits = []
    StanceModel(StanceClassifier(), RecordingCE(), weight=0.3, calibrate=True, top_k=1).fit(
        heads, short, y, _embed, groups=events, body_events=body_events)
    assert RecordingCE.fits[0]["same_event"] is None  # off by default
    RecordingCE.fits = []
    StanceModel(StanceClassifier(), RecordingCE(), weight=0.3, calibrate=True, top_k=1, same_event=2).fit(
        heads, short, y, _embed, groups=events)
    assert RecordingCE.fits[0]["same_event"] is None  # no body events given: nothing to pair


def test_config_carries_the_cross_encoder_settings_into_the_model(tiny_config, monkeypatch):
    import classify.pipeline
    from classify.config import validate_config
    from classify.pipeline import build_stance

    checked = []
    monkeypatch.setattr(classify.pipeline, "check_device", checked.append)  # no GPU here: the wiring only
    raw = tiny_config.model_dump()
    raw["stance"].update(hard_negative_max_similarity=0.5, cross_encoder={
        "enabled": True, "same_event": 7, "device": "cuda:1", "epochs": 2.5, "learning_rate": 1e-5, "batch_size": 5,
        "max_length": 40, "length_batches": False})
    model = build_stance(validate_config(raw, check_files=False), quiet=True)
    assert model.same_event == 7 and model.same_event_max_similarity == 0.5
    ce = model.cross_encoder
    assert (ce.device, ce.epochs, ce.learning_rate, ce.batch_size, ce.max_length, ce.length_batches) == \
        ("cuda:1", 2.5, 1e-5, 5, 40, False)
    assert checked == ["cuda:1"]  # checked before anything trains


def test_a_device_this_machine_lacks_is_one_line_before_training(tiny_config):
    import torch

    from classify.config import validate_config
    from classify.crossencoder import check_device
    from classify.errors import ConfigError

    check_device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"stance.cross_encoder.device: 'cuda:0' is not available on this machine"):
            check_device("cuda:0")
    raw = tiny_config.model_dump()
    for bad in ("gpu", "cuda:x", "cpu:0", ""):
        raw["stance"]["cross_encoder"] = {"enabled": True, "device": bad}
        with pytest.raises(ConfigError, match="stance.cross_encoder.device"):
            validate_config(raw, check_files=False)


def test_mined_pairs_train_up_to_one_rank_and_validate_up_to_another(tiny_config, fake_embedder, monkeypatch):
    from classify.config import validate_config
    from classify.data import load_corpus
    from classify.pipeline import train

    seen = {}

    def recording_fit(self, headlines, bodies, labels, embed, groups=None, tune_on=None, body_events=None,
                      train_on=None, written=None, pretrain=None, classifier_pretrain=None):
        seen.update(n=len(headlines), tune_on=list(tune_on), train_on=list(train_on), labels=list(labels),
                    body_events=list(body_events), written=list(written), pretrain=pretrain)
        self.validation_ = None
        return self

    monkeypatch.setattr(StanceModel, "fit", recording_fit)
    for calibrate, mined_per_headline in ((True, 3), (False, 2)):  # without a validation split nothing to score
        raw = tiny_config.model_dump()
        raw["stance"].update(hard_negatives=2, validation_hard_negatives=3, hard_negative_max_similarity=None,
                             calibrate=calibrate)
        config = validate_config(raw, check_files=False)
        real = load_corpus(config.data.train, config).pairs
        train(config, quiet=True, embedder=fake_embedder)
        heads = len({p.headline for p in real})
        mined = seen["n"] - len(real)
        assert mined == heads * mined_per_headline and set(seen["labels"][len(real):]) == {"unrelated"}
        ranks = [0] * len(real) + [r for _ in range(heads) for r in range(1, mined_per_headline + 1)]
        assert seen["train_on"] == [r <= 2 for r in ranks]
        assert seen["tune_on"] == [r <= 3 for r in ranks]
        assert seen["written"] == [r == 0 for r in ranks]  # what stance.confidence_on_mined tells apart
        assert seen["body_events"][:len(real)] == [p.body_event for p in real]
        assert seen["pretrain"] is None  # no stance.cross_encoder.pretrain: nothing drawn


def test_pairs_outside_train_on_are_scored_on_validation_but_never_fitted():
    heads, bodies, y, events = _pairs()
    n = len(y)
    extra_bodies = [f"Mined story {e} that is another event." for e in range(10)]
    heads2, bodies2 = heads + [f"Headline of event {e}" for e in range(10)], bodies + extra_bodies
    y2, events2 = np.concatenate([y, ["unrelated"] * 10]), events + [f"event-{e}" for e in range(10)]
    train_on = np.arange(n + 10) < n
    RecordingCE.fits = []
    said = []
    m = StanceModel(StanceClassifier(), RecordingCE(), weight=0.3, calibrate=True, top_k=1, term_weights=False,
                    log=said.append).fit(heads2, bodies2, y2, _embed, groups=events2, train_on=train_on)
    assert [len(f["contexts"]) for f in RecordingCE.fits] == [32]  # 8 events x 4, none of the extra pairs
    assert not any("Mined story" in c for f in RecordingCE.fits for c in f["contexts"])
    assert said[1] == "validation split: 32 pairs to fit, 10 to tune (2 groups)"  # 2 events x (4 + 1 extra)
    assert m.validation_["pairs"] == 10
    # the refitted feature classifier sees the trainable pairs only: the same fit as without the extra pairs
    # (TF-IDF term weights off: they are fitted on every text, unsupervised)
    plain = StanceModel(StanceClassifier(), RecordingCE(), weight=0.3, calibrate=True, top_k=1,
                        term_weights=False).fit(heads, bodies, y, _embed, groups=events)
    F = m.features(heads, bodies, _embed)
    np.testing.assert_allclose(m.classifier_.predict_proba(F), plain.classifier_.predict_proba(F), atol=1e-6)


def _mined_validation(seed=0):
    """Validation pairs as written (a model right ~85 % of the time at its most confident) plus as many mined
    `unrelated` pairs that the model, trained as if classes were balanced, finds hard: mostly called related."""
    rng = np.random.RandomState(seed)
    n = 400
    gold = rng.randint(0, 4, n)
    logits = rng.normal(0, 1, (n, 4))
    logits[np.arange(n), gold] += 2.0
    written = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    mined = rng.dirichlet([3, 3, 3, 2], n)  # unrelated (last) rarely on top
    proba = np.vstack([written, mined])
    return proba, np.r_[gold, np.full(n, 3)], np.r_[np.ones(n, bool), np.zeros(n, bool)]


@pytest.mark.parametrize("calibrate", [True, "temperature"])
def test_mined_validation_pairs_move_decisions_but_not_the_confidence(calibrate):
    """Mined stories (stance.validation_hard_negatives) are there to move the decisions towards a real list's;
    stance_score is calibrated on the validation pairs as written (stance.confidence_on_mined: false), with the
    same labels as a calibration on all pairs."""
    proba, gold, written = _mined_validation()

    def tuned(confidence_on_mined, mask):
        m = StanceModel(StanceClassifier(), weight=0.0, calibrate=calibrate, confidence_on_mined=confidence_on_mined)
        m.classes_, m.class_scale_, m.temperature_, m.bias_ = CLASSES, np.ones(4), 1.0, np.zeros(4)
        m.weight_ = 0.0
        n = len(gold)
        m._tune(FixedClassifier(proba), None, np.zeros((n, 1)), ["h"] * n, ["b"] * n, CLASSES[gold], written=mask)
        return m

    on_all, on_written = tuned(True, written), tuned(False, written)
    assert tuned(False, None).temperature_ == on_all.temperature_  # no mask: every pair is as written
    assert on_all.validation_["confidence_pairs"] == 800 and on_written.validation_["confidence_pairs"] == 400
    final = lambda m, p: _calibrated(p, m.temperature_, m.bias_)  # noqa: E731
    # the same labels on every pair, mined or not ...
    np.testing.assert_array_equal(final(on_all, proba).argmax(axis=1), final(on_written, proba).argmax(axis=1))
    # ... but the temperature is the one that fits the written pairs, with the decisions' bias kept
    decision = on_all.temperature_ * on_all.bias_
    assert on_written.temperature_ == fit_temperature(_calibrated(proba[written], 1.0, decision), gold[written])
    np.testing.assert_allclose(on_written.temperature_ * on_written.bias_, decision)
    assert abs(on_written.temperature_ - on_all.temperature_) > 0.1
    # and it is better calibrated on pairs as written (confidence of the top label against its accuracy)
    def ece(m):
        p = final(m, proba[written])
        conf, right = p.max(axis=1), p.argmax(axis=1) == gold[written]
        bins = np.minimum((conf * 10).astype(int), 9)
        return sum(abs(conf[bins == b].mean() - right[bins == b].mean()) * (bins == b).sum()
                   for b in range(10) if (bins == b).any()) / len(conf)
    assert ece(on_written) < ece(on_all) - 0.01
    # nothing written in the validation split: all pairs set the confidence
    assert tuned(False, np.zeros(len(gold), bool)).temperature_ == on_all.temperature_


def test_confidence_on_mined_is_a_setting_that_reaches_the_model_and_its_state():
    from classify.config import load_config
    from classify.pipeline import build_stance
    from conftest import ROOT

    config = load_config(ROOT / "configs" / "default.yaml", ["stance.cross_encoder.enabled=false"])
    assert build_stance(config, quiet=True).confidence_on_mined is True
    config = load_config(ROOT / "configs" / "default.yaml",
                         ["stance.cross_encoder.enabled=false", "stance.confidence_on_mined=false"])
    assert build_stance(config, quiet=True).confidence_on_mined is False
    m, state = _stateful()
    assert state["confidence_on_mined"] is True
    state["confidence_on_mined"] = False
    assert StanceModel.from_state(state, m.classifier_, None).confidence_on_mined is False
    del state["confidence_on_mined"]  # models saved before the setting fitted the confidence on every pair
    assert StanceModel.from_state(state, m.classifier_, None).confidence_on_mined is True
