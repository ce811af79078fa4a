"""Clusters without topic labels: keyword names (c-TF-IDF), `n_clusters: auto`, label-free evaluation, plot and
report of such a model."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from classify.cli import app
from classify.clusters import TopicClusterer, auto_k_range, cluster_keywords
from classify.config import validate_config
from classify.data import load_corpus
from classify.errors import ConfigError, DataError
from classify.model import load_model, save_model
from classify.pipeline import evaluate, train
from conftest import TOPIC_ROWS, write_jsonl
from test_report import make_dumps

runner = CliRunner()

SUBJECTS = {
    "drones": ["drone", "shahed", "kyiv", "air", "defence", "intercepted", "overnight", "launched"],
    "protests": ["protesters", "tehran", "hijab", "crackdown", "students", "chant", "amini", "rally"],
    "budget": ["chancellor", "budget", "tax", "treasury", "spending", "mps", "deficit", "statement"],
    "football": ["messi", "goal", "final", "penalty", "striker", "league", "coach", "stadium"],
}
COMMON = ["report", "officials", "week"]


def subject_texts(n_per: int = 12, seed: int = 0) -> tuple[list[str], list[str]]:
    """Texts about one subject each (6 of its 8 words, drawn) plus words every subject shares."""
    rng = np.random.default_rng(seed)
    texts, subjects = [], []
    for name, words in SUBJECTS.items():
        for _ in range(n_per):
            picked = list(rng.choice(words, 6, replace=False))
            texts.append(" ".join(picked[:3] + [COMMON[len(texts) % 3]] + picked[3:]))
            subjects.append(name)
    return texts, subjects


def unlabelled_config(tmp_path, **clustering):
    texts, _ = subject_texts()
    rows = [{"title": t} for t in texts]
    path = write_jsonl(tmp_path / "unlabelled.jsonl", rows)
    raw = {"seed": 0, "embedding": {"cache_dir": str(tmp_path / "cache")},
           "data": {"train": [{"type": "topics_jsonl", "path": str(path)}],
                    "test": [{"type": "topics_jsonl", "path": str(path)}]},
           "topic": {"enabled": False}, "stance": {"enabled": False},
           "clustering": {"reducer": None, "knn": 3, "map_method": "pca", **clustering}}
    return validate_config(raw)


def test_ctfidf_keywords_are_the_subjects_words_not_the_shared_ones():
    texts, subjects = subject_texts()
    ids = {name: i for i, name in enumerate(SUBJECTS)}
    keywords = cluster_keywords(texts, [ids[s] for s in subjects], top_n=8)
    for name, i in ids.items():
        assert set(keywords[i]) == set(SUBJECTS[name]), (name, keywords[i])
        assert not set(keywords[i]) & set(COMMON)


def test_ctfidf_formula_by_hand():
    # cluster 0: "drone drone kyiv", cluster 1: "kyiv budget"; 5 words, 2 clusters → 2.5 words per cluster
    kw = cluster_keywords(["drone drone kyiv", "kyiv budget"], [0, 1], top_n=3, min_lift=0)  # the score alone
    tf0 = {"drone": 2 / 3, "kyiv": 1 / 3}
    idf = {"drone": np.log(1 + 2.5 / 2), "kyiv": np.log(1 + 2.5 / 2), "budget": np.log(1 + 2.5 / 1)}
    assert tf0["drone"] * idf["drone"] > tf0["kyiv"] * idf["kyiv"]
    assert kw == {0: ["drone", "kyiv"], 1: ["budget", "kyiv"]}
    # 'kyiv' (1/3 of cluster 0's words, 1/2 of cluster 1's) is over-represented in neither: not a keyword
    assert cluster_keywords(["drone drone kyiv", "kyiv budget"], [0, 1]) == {0: ["drone"], 1: ["budget"]}


def test_unlabelled_training_names_clusters_by_keywords(tmp_path, fake_embedder):
    config = unlabelled_config(tmp_path, n_clusters=4)
    model = train(config, quiet=True, embedder=fake_embedder)
    names = model.clusterer.cluster_names_
    assert len(names) == 4 and all(" · " in n for n in names), names
    assert model.clusterer.cluster_topics_ == [None] * 4
    by_subject = {name: set(words) for name, words in SUBJECTS.items()}
    for cid, name in zip(model.clusterer.cluster_ids_.tolist(), names):
        words = name.split(" · ")
        assert len(words) == 3 and words == model.clusters_info["keywords"][str(cid)][:3]
        assert any(set(words) <= w for w in by_subject.values()), name  # one subject's words
    assert model.meta["training"]["unlabelled_topic_texts"] == 48
    d = save_model(model, tmp_path / "m")
    assert load_model(d).clusterer.cluster_names_ == names


def test_labelled_clusters_keep_their_topic_names(tiny_model):
    assert set(tiny_model.clusterer.cluster_names_) <= {"ukraine_war", "iran_protests", "uk_politics", "other"} | {
        f"cluster {i}" for i in range(4)} | {f"{t} #{i}" for t in tiny_model.topics for i in (1, 2, 3)}


def test_topic_missing_is_an_error_while_the_topic_classifier_is_on(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"title": t, "topic": k} for t, _, k in TOPIC_ROWS] + [{"title": "x y"}])
    raw = {"data": {"train": [{"type": "topics_jsonl", "path": str(path)}]}}
    with pytest.raises(DataError, match=r"t.jsonl:17: missing or empty field 'topic'.*topic.enabled: false"):
        load_corpus(validate_config(raw).data.train, validate_config(raw))
    off = validate_config({**raw, "topic": {"enabled": False}})
    corpus = load_corpus(off.data.train, off)
    assert corpus.topics[-1] is None and corpus.topics[0] == "ukraine_war"
    (tmp_path / "c.yaml").write_text(json.dumps(raw))
    result = runner.invoke(app, ["train", str(tmp_path / "c.yaml"), "-o", str(tmp_path / "m"), "-q"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().count("\n") == 0 and "missing or empty field 'topic'" in result.stderr
    # a wrong label is still refused with the topic classifier off
    bad = write_jsonl(tmp_path / "b.jsonl", [{"title": "x", "topic": "sport"}])
    cfg = validate_config({"data": {"train": [{"type": "topics_jsonl", "path": str(bad)}]}, "topic": {"enabled": False}})
    with pytest.raises(DataError, match="'sport' is not one of labels.topics"):
        load_corpus(cfg.data.train, cfg)


def blobs(k: int, per: int = 40, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    X = np.repeat(centres, per, axis=0) + rng.normal(scale=0.06, size=(k * per, dim))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), np.repeat(np.arange(k), per)


@pytest.mark.parametrize("k", [3, 7])
def test_auto_k_finds_the_blobs(k):
    X, truth = blobs(k)
    c = TopicClusterer(n_clusters="auto", use_reducer=False, knn=5).fit(X)
    assert c.n_clusters_ == k
    assert set(c.k_scores_) == set(auto_k_range(len(X))) == set(range(2, min(30, len(X) // 5) + 1))
    assert max(c.k_scores_, key=lambda j: c.k_scores_[j]) == k
    again = TopicClusterer(n_clusters="auto", use_reducer=False, knn=5).fit(X)
    np.testing.assert_array_equal(c.labels_, again.labels_)  # reproducible


def test_auto_k_range():
    assert auto_k_range(1000) == range(2, 31) and auto_k_range(60) == range(2, 13) and auto_k_range(6) == range(2, 3)


def test_auto_k_through_training_writes_k_to_the_metadata(tmp_path, fake_embedder, capsys):
    config = unlabelled_config(tmp_path, n_clusters="auto")
    model = train(config, quiet=False, embedder=fake_embedder)
    meta = model.meta["clustering"]
    assert meta["n_clusters"] == 4 and meta["chosen_by"] == "silhouette" and meta["k_range"] == [2, 9]
    assert len(model.clusterer.cluster_names_) == 4
    assert "clustering.n_clusters auto: k = 4" in capsys.readouterr().err
    d = save_model(model, tmp_path / "m")
    saved = json.loads((d / "meta.json").read_text())["clustering"]
    assert saved["n_clusters"] == 4 and saved["silhouette_by_k"]["4"] == max(saved["silhouette_by_k"].values())
    b = save_model(train(config, quiet=True, embedder=fake_embedder), tmp_path / "b")
    assert (d / "clusters.json").read_bytes() == (b / "clusters.json").read_bytes()


@pytest.mark.parametrize("value", ["Auto", 1, True, [2], 2.5])
def test_a_bad_n_clusters_is_one_clear_line(value):
    with pytest.raises(ConfigError, match=r"clustering.n_clusters: expected an integer of at least 2, auto or null"):
        validate_config({"data": {"train": [{"type": "topics_jsonl", "path": "x"}]},
                         "clustering": {"n_clusters": value}}, check_files=False)


def test_auto_with_hdbscan_is_a_config_error():
    with pytest.raises(ConfigError, match="clustering.n_clusters: auto picks KMeans"):
        validate_config({"data": {"train": [{"type": "topics_jsonl", "path": __file__}]},
                         "clustering": {"n_clusters": "auto", "algorithm": "hdbscan"}}, check_files=False)


def test_evaluate_without_labels_reports_silhouette_and_sizes(tmp_path, fake_embedder):
    config = unlabelled_config(tmp_path, n_clusters=4)
    model = train(config, quiet=True, embedder=fake_embedder)
    report = evaluate(model, load_corpus(config.data.test, config), embedder=fake_embedder)
    c = report["clustering"]
    assert "nmi" not in c and "ari" not in c and "topic" not in report
    assert 0.3 < c["silhouette"] <= 1 and c["silhouette_space"] == "embeddings, cosine"
    assert c["training_silhouette"] == model.meta["clustering"]["training_silhouette"] > 0.3
    assert sum(c["sizes"].values()) == 48 and list(c["sizes"]) == model.clusterer.cluster_names_
    assert c["training_sizes"] == c["sizes"]  # the training texts themselves


def test_evaluate_with_labels_keeps_nmi_and_adds_silhouette(tiny_model, tiny_config, fake_embedder):
    report = evaluate(tiny_model, load_corpus(tiny_config.data.test, tiny_config), embedder=fake_embedder)
    c = report["clustering"]
    assert {"nmi", "ari", "accuracy", "named_accuracy", "silhouette", "sizes", "training_silhouette"} <= set(c)
    assert c["labelled"] == c["n"] == sum(c["sizes"].values())


def test_plot_report_and_evaluate_cli_on_an_unlabelled_model(tmp_path, fake_embedder, monkeypatch):
    import classify.pipeline

    monkeypatch.setattr(classify.pipeline, "make_embedder", lambda config, quiet=False: fake_embedder)
    config = unlabelled_config(tmp_path, n_clusters=4)
    model = train(config, quiet=True, embedder=fake_embedder)
    d = save_model(model, tmp_path / "m")
    dumps = make_dumps(tmp_path)
    png = tmp_path / "map.png"
    result = runner.invoke(app, ["plot", str(dumps), "--model", str(d), "--output", str(png), "-q"])
    assert result.exit_code == 0, result.output
    assert png.read_bytes().startswith(b"\x89PNG")
    svg = tmp_path / "map.html"
    result = runner.invoke(app, ["plot", str(dumps), "--model", str(d), "--output", str(svg), "-q"])
    assert result.exit_code == 0, result.output
    legend = svg.read_text()
    assert "<b>cluster</b>" in legend and any(n.replace("_", " ") in legend for n in model.clusterer.cluster_names_)
    result = runner.invoke(app, ["plot", str(dumps), "--model", str(d), "--output", str(png), "--color-by", "topic"])
    assert result.exit_code == 1 and "no topic classifier" in result.stderr and "Traceback" not in result.output
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(dumps), "--model", str(d), "--output", str(out), "-q"])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "Clusters: keywords" in page and all(n in page for n in model.clusterer.cluster_names_)
    assert "Topics per dump" not in page
    result = runner.invoke(app, ["evaluate", str(d), "-o", str(tmp_path / "r.json"), "-q"])
    assert result.exit_code == 0, result.output
    assert "clustering silhouette" in result.stdout and "NMI" not in result.stdout
    assert "silhouette" in json.loads((tmp_path / "r.json").read_text())["clustering"]


def test_auto_k_on_the_umap_space_finds_the_blobs():
    X, _ = blobs(5, per=60, dim=32)
    c = TopicClusterer(n_clusters="auto", knn=5).fit(X)  # default reducer: 5-d UMAP, euclidean silhouette
    assert c.space_metric == "euclidean" and c.n_clusters_ == 5


def test_partly_labelled_clusters_keep_topic_names_the_others_get_keywords():
    texts, subjects = subject_texts(n_per=10)
    X, _ = blobs(4, per=10)  # one blob per subject, in the order of subject_texts
    topics = [("ukraine_war" if s == "drones" else "iran_protests") if s in ("drones", "protests") and i % 2 else None
              for i, s in enumerate(subjects)]
    c = TopicClusterer(n_clusters=4, use_reducer=False, knn=3, min_purity=0.5).fit(X, topics, texts=texts)
    by_subject = {s: c.names_of([c.labels_[subjects.index(s)]])[0] for s in SUBJECTS}
    assert by_subject["drones"] == "ukraine_war" and by_subject["protests"] == "iran_protests"
    assert set(by_subject["budget"].split(" · ")) <= set(SUBJECTS["budget"])
    assert set(by_subject["football"].split(" · ")) <= set(SUBJECTS["football"])
    assert c.cluster_purity_[c.cluster_names_.index("ukraine_war")] == 1.0  # among its labelled members
