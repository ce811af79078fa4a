"""benchmarks/fnc1_pages.py builds pages of real text from FNC-1: claims as connected headline-body parts, related
stories as body leads, other-event stories as the closest bodies of other claims. A tiny FNC-1-shaped folder and a
hand-made embedder pin the construction; the real files, where present, pin the page make-up."""

import csv

import numpy as np
import pytest

from conftest import ROOT, load_benchmark


@pytest.fixture(scope="module")
def pages_mod():
    return load_benchmark("fnc1_pages")


def test_claims_are_connected_parts_of_the_related_graph(pages_mod):
    pairs = [("h1", 1, "agree"), ("h2", 1, "discuss"), ("h2", 2, "agree"), ("h3", 3, "disagree"),
             ("h3", 1, "unrelated"), ("h4", 2, "unrelated")]
    claim = pages_mod.claims(pairs)
    assert claim["h1"] == claim["h2"]  # share body 1
    assert claim["h3"] != claim["h1"]  # an unrelated pair joins nothing
    assert len({claim["h1"], claim["h3"], claim["h4"]}) == 3


def _write(folder, name, header, rows):
    with open(folder / name, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_pages_hold_leads_and_the_closest_bodies_of_other_claims(pages_mod, tmp_path, monkeypatch):
    bodies = {1: "dam burst flood " * 40, 2: "dam burst flood town", 3: "dam repairs begin", 4: "dam burst hoax",
              5: "football final tonight", 6: "dam burst flood warning issued"}
    _write(tmp_path, "train_bodies.csv", ["Body ID", "articleBody"], bodies.items())
    _write(tmp_path, "train_stances.csv", ["Headline", "Body ID", "Stance"],
           [("Dam bursts", 1, "agree"), ("Dam bursts", 2, "discuss"), ("Dam bursts", 5, "unrelated"),
            ("Dam burst town flooded", 6, "agree"),  # body 6: another headline of the same claim? no: no shared body
            ("Dam burst town flooded", 2, "agree"),  # ... now it shares body 2: one claim with "Dam bursts"
            ("Match off", 5, "agree"), ("Repairs", 3, "agree"), ("Hoax", 4, "disagree")])
    monkeypatch.setattr(pages_mod, "FNC", tmp_path)
    order = {"dam": 0, "burst": 1, "flood": 2, "town": 3, "repairs": 4, "hoax": 5, "football": 6, "match": 7}

    def embed(texts):  # bag of words over `order`, unit rows
        X = np.zeros((len(texts), len(order)))
        for i, t in enumerate(texts):
            for w in t.lower().replace("s ", " ").split():
                w = w.rstrip("s") if w.rstrip("s") in order else w
                if w in order:
                    X[i, order[w]] += 1
        return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-9)

    pages = pages_mod.build_pages("train", n_pages=10, lead_words=3, unrelated_share=0.5, seed=0, embed=embed)
    by_head = {p[0][0]: p for p in pages}
    assert set(by_head) == {"Dam bursts", "Dam burst town flooded", "Match off", "Repairs", "Hoax"}
    page = by_head["Dam bursts"]
    assert page[:2] == [("Dam bursts", "dam burst flood", "agree"), ("Dam bursts", "dam burst flood", "discuss")]
    # two related stories, share 0.5: two other-claim stories, the closest first; bodies 1, 2 and 6 are this claim's
    assert [s for _, s, g in page[2:]] == ["dam burst hoax", "dam repairs begin"]
    assert all(g == "unrelated" for _, _, g in page[2:])
    assert len(by_head["Hoax"]) == 2  # one related story, one other-claim story


@pytest.mark.skipif(not (ROOT.parent / "shared" / "datasets" / "fnc1" / "train_stances.csv").exists(),
                    reason="no ../shared/datasets/fnc1")
def test_real_pages_have_the_asked_share_of_other_claims(pages_mod):
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.preprocessing import normalize

    vec = HashingVectorizer(n_features=256, alternate_sign=False, stop_words="english")
    pages = pages_mod.build_pages("test", n_pages=40, lead_words=60, unrelated_share=0.65, seed=0,
                                  embed=lambda ts: normalize(vec.transform(ts)).toarray())
    gold = [g for p in pages for _, _, g in p]
    assert len(pages) == 40 and 0.6 < gold.count("unrelated") / len(gold) < 0.7
    assert all(len(s.split()) <= 60 for p in pages for _, s, _ in p)


def test_held_out_claims_and_the_pretraining_rest_do_not_meet(pages_mod, tmp_path, monkeypatch):
    rows = [(f"claim{c} headline{h}", 10 * c + h, "agree" if h else "discuss") for c in range(10) for h in range(2)]
    rows += [("claim0 headline0", 11, "unrelated")]  # an unrelated pair joins no claims
    _write(tmp_path, "train_stances.csv", ["Headline", "Body ID", "Stance"], rows)
    _write(tmp_path, "train_bodies.csv", ["Body ID", "articleBody"], [(b, f"body {b}") for _, b, _ in rows])
    monkeypatch.setattr(pages_mod, "FNC", tmp_path)
    claim = pages_mod.claims(rows)
    assert len(set(claim.values())) == 20  # each headline with its own body
    held = pages_mod.held_out_claims(claim, 0.3, seed=0)
    assert held == pages_mod.held_out_claims(claim, 0.3, seed=0) and 2 <= len(held) <= 12
    assert pages_mod.held_out_claims(claim, 0.3, seed=1) != held
    out = tmp_path / "rest.csv"
    pages_mod.write_pretraining(str(out), 0.3, seed=0)
    with open(out, encoding="utf-8") as f:
        kept = [(r["Headline"], int(r["Body ID"]), r["Stance"]) for r in csv.DictReader(f)]
    held_heads = {h for h, c in claim.items() if c in held}
    held_bodies = {b for h, b, s in rows if s != "unrelated" and h in held_heads}
    assert kept and not {h for h, _, _ in kept} & held_heads and not {b for _, b, _ in kept} & held_bodies
    assert len(kept) == sum(h not in held_heads and b not in held_bodies for h, b, _ in rows)
    pages = pages_mod.build_pages("train", n_pages=50, lead_words=5, unrelated_share=0.5, seed=0,
                                  embed=lambda ts: np.ones((len(ts), 2)) / np.sqrt(2), held_out=0.3)
    assert {p[0][0] for p in pages} == held_heads


def test_page_scores_by_hand(pages_mod):
    labels = ["agree", "disagree", "discuss", "unrelated"]
    gold = ["agree", "discuss", "unrelated", "unrelated", "unrelated", "disagree"]
    pred = ["agree", "unrelated", "unrelated", "agree", "unrelated", "disagree"]
    score = [0.95, 0.55, 0.85, 0.45, 0.92, 0.65]
    res = pages_mod.page_scores(gold, pred, score, labels, pages=2)
    assert res["pages"] == 2 and res["pairs"] == 6 and res["unrelated_share"] == 0.5
    assert res["accuracy"] == round(4 / 6, 3)
    assert res["macro_f1"] == round((2 / 3 + 1 + 0 + 2 / 3) / 4, 3)  # agree, disagree, discuss, unrelated F1
    assert res["related_unrelated"] == round(4 / 6, 3)  # the discuss story and the third unrelated one are wrong
    assert res["other_events_called_unrelated"] == round(2 / 3, 3)
    assert res["related_exact"] == round(2 / 3, 3) and res["related_called_unrelated"] == round(1 / 3, 3)
    # bins: [0.4, 0.5) 0.45 wrong; [0.5, 0.6) 0.55 wrong; [0.6, 0.7) 0.65 right; [0.8, 0.9) 0.85 right;
    # [0.9, 1.0] 0.95 and 0.92 right
    ece = (0.45 + 0.55 + 0.35 + 0.15 + (1 - 0.935) * 2) / 6
    assert res["ece"] == round(ece, 3)
    assert [b["n"] for b in res["reliability"]] == [1, 1, 1, 1, 2]
    assert res["confusion"]["matrix"][2][3] == 1  # discuss called unrelated


def test_mean_of_models_by_hand(pages_mod):
    classes = ["agree", "discuss", "unrelated"]
    a = np.array([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    b = np.array([[0.2, 0.7, 0.1], [0.1, 0.6, 0.3]])
    pred, score = pages_mod.mean_of([a, b], [classes, classes])
    # means: [0.4, 0.5, 0.1] -> discuss; [0.1, 0.4, 0.5] -> unrelated (b alone would say discuss)
    assert pred.tolist() == ["discuss", "unrelated"]
    assert np.allclose(score, [0.5, 0.5])
    pred3, score3 = pages_mod.mean_of([a, b, b], [classes] * 3)  # b twice: [0.1, 1.4 / 3, 1.3 / 3] -> discuss
    assert pred3.tolist() == ["discuss", "discuss"] and np.isclose(score3[1], 1.4 / 3)
    with pytest.raises(ValueError, match="labels differ"):
        pages_mod.mean_of([a, b], [classes, ["agree", "unrelated", "discuss"]])


def test_label_agreement_by_hand(pages_mod):
    a, b, c = ["agree", "unrelated", "discuss", "unrelated"], ["agree", "discuss", "discuss", "disagree"], ["x"] * 4
    same = pages_mod.label_agreement(["a", "b", "c"], [a, b, np.array(a)])
    assert same == {"a": {"b": 0.5, "c": 1.0}, "b": {"a": 0.5, "c": 0.5}, "c": {"a": 1.0, "b": 0.5}}
    assert pages_mod.label_agreement(["a", "c"], [a, c]) == {"a": {"c": 0.0}, "c": {"a": 0.0}}


def test_page_scripts_end_bad_input_in_one_line(tmp_path):
    import subprocess
    import sys

    missing = str(tmp_path / "none")
    for script, args, expected in (
            ("fnc1_pages.py", ["--model", missing], f"fnc1_pages.py: {missing}: model directory not found"),
            ("page_calibration.py", ["--model", missing], f"page_calibration.py: {missing}: model directory not found"),
            ("page_rounds.py", [missing], f"page_rounds.py: {missing}: model directory not found"),
            ("fnc1_pages.py", ["--model", "m", "--unrelated-share", "1"], "--unrelated-share is the other-claim share")):
        run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                             text=True, cwd=ROOT)
        assert run.returncode != 0 and "Traceback" not in run.stderr, (script, run.stderr)
        assert expected in run.stderr.strip().splitlines()[-1], (script, run.stderr)


def test_run_script_turns_user_errors_into_exit_codes(capsys):
    from classify.errors import ConfigError, ModelError, run_script

    def failing(err):
        def main():
            raise err
        return main

    for err, code in ((ModelError("m: model directory not found"), 1), (ConfigError("bad key"), 2),
                      (FileNotFoundError(2, "No such file or directory", "x.csv"), 1)):
        with pytest.raises(SystemExit) as exit_:
            run_script(failing(err), "tool.py")
        assert exit_.value.code == code
        assert capsys.readouterr().err.startswith("tool.py: ")
    with pytest.raises(RuntimeError):  # a bug is not the user's: its traceback stays
        run_script(failing(RuntimeError("bug")), "tool.py")
    run_script(lambda: None, "tool.py")  # no error: returns
