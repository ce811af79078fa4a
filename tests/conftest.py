import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SEED = SHARED / "seed" / "000_522a1ffb40483018.txt"



def load_benchmark(name: str):
    """A script of benchmarks/ as a module (registered under its name, so the scripts it loads by name find it)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

class FakeEmbedder:
    """Deterministic bag-of-words vectors: fast stand-in for the sentence-transformers model in unit tests."""

    model = "fake"
    identity = "fake"

    def __init__(self, dim: int = 64):
        self.vectorizer = HashingVectorizer(n_features=dim, alternate_sign=False, norm=None, stop_words="english")
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        X = self.vectorizer.transform(list(texts)).toarray() + 1e-3
        return normalize(X).astype(np.float32)


TOPIC_ROWS = [
    ("Russian missiles strike Kyiv power grid", "Drones and missiles hit energy sites across Ukraine.", "ukraine_war"),
    ("Ukrainian troops advance near Kherson", "The army says Russian forces retreated across the river.", "ukraine_war"),
    ("Shelling hits Zaporizhzhia nuclear plant", "Russia and Ukraine trade blame for the shelling.", "ukraine_war"),
    ("Kyiv air defence downs Iranian drones", "Ukraine says Russia launched Shahed drones overnight.", "ukraine_war"),
    ("Tehran students rally against hijab law", "Protests over Mahsa Amini's death spread to universities.", "iran_protests"),
    ("Iran sentences protester to death", "Rights groups condemn the court ruling over the unrest.", "iran_protests"),
    ("Security forces fire on Zahedan protesters", "Witnesses say the crackdown left dozens dead.", "iran_protests"),
    ("Women burn headscarves in Iran protests", "Demonstrators chant slogans against the clerical rulers.", "iran_protests"),
    ("Sunak names cabinet after becoming prime minister", "The new prime minister reappointed Hunt as chancellor.", "uk_politics"),
    ("Hunt sets out tax rises in autumn statement", "The chancellor told MPs the budget gap must close.", "uk_politics"),
    ("Labour leads Conservatives in new poll", "Starmer's party extends its lead before the by-election.", "uk_politics"),
    ("MPs vote on Rwanda asylum plan", "The home secretary faces a backbench rebellion in Parliament.", "uk_politics"),
    ("Apple shares rise after strong iPhone sales", "The company beat analyst forecasts for the quarter.", "other"),
    ("Hurricane makes landfall in Florida", "Storm surge floods coastal towns as winds reach 150 mph.", "other"),
    ("Argentina beat France in World Cup final", "Messi scored twice in a penalty shootout win.", "other"),
    ("NASA rocket launches Artemis mission to the Moon", "The uncrewed capsule lifted off from Cape Canaveral.", "other"),
]

STANCE_ROWS = [
    {"id": "t1", "topic": "ukraine_war", "headline": "Russian missiles knock out power in Kyiv",
     "stories": [
         {"title": "Kyiv left without power after missile strikes", "snippet": "Officials confirmed blackouts across the city.", "stance": "agree"},
         {"title": "Kyiv officials deny power cuts after strikes", "snippet": "The mayor said electricity was not lost, the report is false.", "stance": "disagree"},
         {"title": "What the strikes on Kyiv mean for winter", "snippet": "Analysts ask how long the grid can hold.", "stance": "discuss"}]},
    {"id": "t2", "topic": "iran_protests", "headline": "Iran executes protester over Mashhad unrest",
     "stories": [
         {"title": "Protester hanged in Mashhad, judiciary says", "snippet": "State media reported the execution on Monday.", "stance": "agree"},
         {"title": "Judiciary rejects reports of Mashhad execution", "snippet": "Officials said no sentence had been carried out.", "stance": "disagree"},
         {"title": "Rights groups track Iran death sentences", "snippet": "Campaigners say more trials are under way.", "stance": "discuss"}]},
    {"id": "t3", "topic": "uk_politics", "headline": "Chancellor to raise windfall tax on energy firms",
     "stories": [
         {"title": "Windfall tax on energy giants to rise", "snippet": "The Treasury confirmed the levy will go up to 35%.", "stance": "agree"},
         {"title": "Treasury dismisses windfall tax rise claims", "snippet": "Officials said no decision had been taken and the story is wrong.", "stance": "disagree"},
         {"title": "Energy firms wait for chancellor's statement", "snippet": "Industry bodies say they expect clarity next week.", "stance": "discuss"}]},
    {"id": "t4", "topic": "other", "headline": "Fed raises interest rates by 75 basis points",
     "stories": [
         {"title": "US central bank lifts rates by three quarters of a point", "snippet": "The move was the fourth jumbo hike this year.", "stance": "agree"},
         {"title": "Fed holds rates steady, contrary to reports", "snippet": "The central bank did not raise rates at its meeting.", "stance": "disagree"},
         {"title": "Markets brace for Fed decision", "snippet": "Traders debate how far rates could climb.", "stance": "discuss"}]},
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def fake_embedder():
    return FakeEmbedder()


@pytest.fixture
def tiny_config(tmp_path):
    """A config over a small synthetic corpus (files in tmp_path) that trains in seconds."""
    from classify.config import validate_config

    topics = write_jsonl(tmp_path / "topics.jsonl",
                         [{"title": t, "snippet": s, "topic": k} for t, s, k in TOPIC_ROWS * 2])
    stance = write_jsonl(tmp_path / "stance.jsonl", STANCE_ROWS)
    raw = {
        "seed": 0,
        "embedding": {"cache_dir": str(tmp_path / "cache")},
        "data": {"train": [{"type": "topics_jsonl", "path": str(topics)},
                           {"type": "stance_jsonl", "path": str(stance), "unrelated_per_headline": 2}],
                 "test": [{"type": "topics_jsonl", "path": str(topics)},
                          {"type": "stance_jsonl", "path": str(stance), "unrelated_per_headline": 2}]},
        "clustering": {"reducer": None, "knn": 3, "map_method": "pca"},
        # a synthetic corpus, not page-shaped: no mined validation stories (tests that need them set the key)
        "stance": {"classifier": {"type": "logreg", "C": 1.0}, "validation_hard_negatives": 0},
    }
    return validate_config(raw)


@pytest.fixture
def tiny_model(tiny_config, fake_embedder):
    from classify.pipeline import train

    return train(tiny_config, quiet=True, embedder=fake_embedder)


def requires_shared(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not available")


@pytest.fixture
def model_dir(tmp_path, tiny_model, monkeypatch, fake_embedder):
    """A saved tiny model; the CLI's embedder is replaced by the fake one."""
    import classify.pipeline
    from classify.model import save_model

    monkeypatch.setattr(classify.pipeline, "make_embedder", lambda config, quiet=False: fake_embedder)
    return save_model(tiny_model, tmp_path / "model")


def reseal(model_dir: Path) -> None:
    """Rewrite meta.json's file manifest after a test tampered with a model file on purpose, so the load reaches the
    deeper consistency checks (as a model saved by a buggy or hostile writer would)."""
    from classify.model import _file_entry

    meta = json.loads((model_dir / "meta.json").read_text())
    meta["files"] = {f.name: _file_entry(f) for f in sorted(model_dir.iterdir()) if f.name != "meta.json"}
    (model_dir / "meta.json").write_text(json.dumps(meta))
