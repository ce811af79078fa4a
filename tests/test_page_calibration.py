"""benchmarks/page_calibration.py: a calibration fitted on half the pages' headlines and scored on the other half,
beside the model's own, and the relatedness AUC. Tiny pages whose figures are worked out by hand."""

import sys

import numpy as np
import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def mod():
    return load_benchmark("page_calibration")


def _pages(n_heads=8):
    """Each headline: one related story at P(agree) 0.7, one other-claim story at 0.6: ranked right, but on the
    wrong side of an uncalibrated argmax."""
    heads = [f"h{i}" for i in range(n_heads) for _ in range(2)]
    gold = ["agree", "unrelated"] * n_heads
    p_agree = np.array([0.7, 0.6] * n_heads)
    return np.c_[p_agree, 1 - p_agree], gold, heads


def test_own_calibration_and_a_fit_on_the_other_half(mod):
    proba, gold, heads = _pages()
    res = mod.compare_calibrations({60: proba}, {60: gold}, {60: heads}, ["agree", "unrelated"], 1.0,
                                   np.zeros(2), halvings=3)
    own, fit = res["own"][60], res["pages"][60]
    # the model's own (T = 1, no bias): every story `agree`
    assert own["accuracy"] == 0.5 and own["related_exact"] == 1.0 and own["other_events_called_unrelated"] == 0.0
    assert own["ece"] == pytest.approx(0.5 * 0.6 + 0.5 * (1 - 0.7), abs=1e-3)  # bins: 0.6 all wrong, 0.7 all right
    # fitted on half the headlines, the bias puts the threshold between 0.6 and 0.7: all right on the other half
    assert fit["accuracy"] == 1.0 and fit["macro_f1"] == 1.0 and fit["other_events_called_unrelated"] == 1.0
    assert res["fitted"]["bias"]["unrelated"] > 0 and res["fitted"]["bias"]["agree"] == 0.0


def test_the_own_calibration_is_the_one_given(mod):
    proba, gold, heads = _pages()
    res = mod.compare_calibrations({20: proba}, {20: gold}, {20: heads}, ["agree", "unrelated"], 1.0,
                                   np.array([0.0, 5.0]), halvings=2)
    own = res["own"][20]  # a bias of +5 on `unrelated`: every story `unrelated`
    assert own["accuracy"] == 0.5 and own["related_exact"] == 0.0 and own["other_events_called_unrelated"] == 1.0


def test_prior_shift_is_bayes_rule_from_the_validation_shares(mod):
    shift = mod.prior_shift(["agree", "unrelated"], {"agree": 1, "unrelated": 3}, {"agree": 50, "unrelated": 50})
    # shares 0.25 / 0.75 against 0.5 / 0.5: log(0.5) and log(1.5), the first class's set to 0
    np.testing.assert_allclose(shift, [0.0, np.log(1.5) - np.log(0.5)])
    # unnormalised shares are normalised; the same shares as the validation's move nothing
    np.testing.assert_allclose(mod.prior_shift(["a", "b", "c"], {"a": 2, "b": 2, "c": 4}, {"a": 5, "b": 5, "c": 10}),
                               np.zeros(3), atol=1e-12)
    with pytest.raises(ValueError, match="--label-prior: no share for 'unrelated'"):
        mod.prior_shift(["agree", "unrelated"], {"agree": 1}, {"agree": 5, "unrelated": 5})
    with pytest.raises(ValueError, match=r"--label-prior: 'disagre' is not one of the model's stance labels"):
        mod.prior_shift(["agree", "unrelated"], {"agree": 1, "unrelated": 1, "disagre": 1}, {"agree": 5, "unrelated": 5})
    with pytest.raises(ValueError, match="validation split: no share for 'agree'"):
        mod.prior_shift(["agree", "unrelated"], {"agree": 1, "unrelated": 1}, {"agree": 0, "unrelated": 5})


def test_the_prior_moves_the_own_calibration_on_the_same_halves(mod):
    proba, gold, heads = _pages()
    shift = mod.prior_shift(["agree", "unrelated"], {"agree": 0.3, "unrelated": 0.7}, {"agree": 1, "unrelated": 1})
    res = mod.compare_calibrations({60: proba}, {60: gold}, {60: heads}, ["agree", "unrelated"], 1.0,
                                   np.zeros(2), halvings=3, shift=shift)
    # log(0.7 / 0.3) = 0.85 on `unrelated`: P(agree) 0.6 -> 0.6 / (0.6 + 0.4 * 7/3) = 0.39, so every other-claim
    # story becomes `unrelated` (the related ones, 0.7 -> 0.5, sit on the threshold and are not asserted)
    assert res["prior"][60]["other_events_called_unrelated"] == 1.0
    assert res["own"][60]["other_events_called_unrelated"] == 0.0
    plain = mod.compare_calibrations({60: proba}, {60: gold}, {60: heads}, ["agree", "unrelated"], 1.0,
                                     np.zeros(2), halvings=3)
    assert "prior" not in plain and plain["own"] == res["own"] and plain["pages"] == res["pages"]


def test_halves_split_headlines_and_pool_every_length(mod, monkeypatch):
    import classify.stance as stance

    proba, gold, heads = _pages(11)
    seen = []
    real_fit = stance.fit_calibration
    monkeypatch.setattr(stance, "fit_calibration", lambda p, g: seen.append(len(g)) or real_fit(p, g))
    scored = []
    pages_mod = sys.modules["fnc1_pages"]
    real_scores = pages_mod.page_scores
    monkeypatch.setattr(pages_mod, "page_scores", lambda g, *a, **k: scored.append(len(g)) or real_scores(g, *a, **k))
    mod.compare_calibrations({20: proba, 60: proba}, {20: gold, 60: gold}, {20: heads, 60: heads},
                             ["agree", "unrelated"], 1.0, np.zeros(2), halvings=2)
    assert seen == [20, 20]  # 5 of 11 headlines, 2 stories each, at both lengths
    assert scored == [12] * 8  # the other 6 headlines, per length and calibration


def test_relatedness_auc(mod):
    assert mod.relatedness_auc(["agree", "unrelated", "discuss", "unrelated"], [0.9, 0.1, 0.4, 0.5]) == 0.75


def test_closest_mask_keeps_every_related_story_and_the_closest_other_ones(mod):
    gold = ["agree", "unrelated", "unrelated", "discuss", "unrelated", "unrelated"]
    sim = [0.1, 0.9, 0.2, 0.3, 0.5, 0.7]
    # the other-claim similarities 0.9, 0.2, 0.5, 0.7: the top half is at or above their median, 0.6
    assert mod.closest_mask(gold, sim, 0.5).tolist() == [True, True, False, True, False, True]
    assert mod.closest_mask(gold, sim, 1.0).all()
    assert mod.closest_mask(gold, sim, 0.25).tolist() == [True, True, False, True, False, False]
    assert mod.closest_mask(["x", "x", "unrelated"], [0.1, 0.9, 0.2], 0.5, unrelated="x").tolist() == [False, True, True]
    assert mod.closest_mask(["agree"], [0.4], 0.5).tolist() == [True]
    with pytest.raises(ValueError, match="closest-share"):
        mod.closest_mask(gold, sim, 0)
    # only the closest other-claim stories: a score that ranks far ones low no longer counts
    keep = mod.closest_mask(gold, sim, 0.5)
    score = np.array([0.6, 0.8, 0.0, 0.7, 0.0, 0.1])
    assert mod.relatedness_auc(gold, score) == 0.75
    assert mod.relatedness_auc(np.array(gold)[keep], score[keep]) == 0.5


def test_cosines_by_hand(mod):
    table = {"a": [1.0, 0.0], "b": [3.0, 4.0], "c": [0.0, 2.0]}
    got = mod._cosines(["a", "a", "b"], ["b", "c", "b"], lambda ts: np.array([table[t] for t in ts]))
    np.testing.assert_allclose(got, [0.6, 0.0, 1.0])
