"""The optional stance cross-encoder (real MiniLM weights, a few training steps): trains inside `train` in both
modes, round-trips through the model directory as safetensors, and predicts the same after loading."""

import numpy as np
import pytest

from classify.config import validate_config
from classify.dumps import parse_dump
from classify.errors import ConfigError
from classify.model import load_model, save_model
from classify.pipeline import predict_dumps, train
from test_dumps import SAMPLE


@pytest.mark.parametrize("labels, classes, context", [("related", ["agree", "disagree", "discuss"], "body"),
                                                      ("all", ["agree", "disagree", "discuss", "unrelated"], "body"),
                                                      ("all", ["agree", "disagree", "discuss", "unrelated"], "sentences")])
def test_cross_encoder_trains_saves_and_predicts(tmp_path, tiny_config, fake_embedder, labels, classes, context):
    raw = tiny_config.model_dump()
    raw["stance"].update(two_stage=True, calibrate=False, context=context, cross_encoder={
        "enabled": True, "labels": labels, "weight": 0.5, "epochs": 2, "batch_size": 4, "max_length": 48})
    config = validate_config(raw, check_files=False)
    model = train(config, quiet=True, embedder=fake_embedder)
    assert list(model.stance.cross_encoder_.classes_) == classes
    assert model.stance.weight_ == 0.5
    d = save_model(model, tmp_path / "m")
    assert (d / "cross_encoder.safetensors").is_file()
    loaded = load_model(d)
    assert model.stance.context == loaded.stance.context == context
    dumps = [parse_dump(SAMPLE, "a.txt")]
    before = predict_dumps(model, dumps, embedder=fake_embedder)
    after = predict_dumps(loaded, dumps, embedder=fake_embedder)
    assert before["stance"].tolist() == after["stance"].tolist()
    np.testing.assert_allclose(before["stance_score"].fillna(0), after["stance_score"].fillna(0), atol=1e-5)


def test_second_stage_cross_encoder_needs_two_stage(tiny_config):
    raw = tiny_config.model_dump()
    raw["stance"].update(two_stage=False, cross_encoder={"enabled": True, "labels": "related"})
    with pytest.raises(ConfigError, match="two_stage"):
        validate_config(raw, check_files=False)
    raw["stance"].update(cross_encoder={"enabled": True, "labels": "all"})
    validate_config(raw, check_files=False)  # a cross-encoder on all labels needs no first stage


def test_training_batches_group_lengths_only_when_asked():
    from classify.crossencoder import CrossEncoder

    heads = ["h"] * 200
    contexts = ["x" * (i % 7 + 1) * 20 for i in range(200)]  # seven lengths, interleaved

    def spread(ce):  # mean length range inside a batch
        return np.mean([np.ptp([len(contexts[i]) for i in b]) for b in ce._batches(heads, contexts, 200)])

    grouped, plain = CrossEncoder(batch_size=10, epochs=2), CrossEncoder(batch_size=10, epochs=2, length_batches=False)
    for ce in (grouped, plain):
        batches = ce._batches(heads, contexts, 200)
        assert sorted(np.concatenate(batches).tolist()) == sorted(list(range(200)) * 2)  # every pair twice
    assert spread(grouped) < 20 < spread(plain)
    assert validate_config({"data": {"train": [{"type": "topics_jsonl", "path": "x"}]},
                            "stance": {"cross_encoder": {"length_batches": False}}},
                           check_files=False).stance.cross_encoder.length_batches is False


def test_same_event_head_trains_the_shared_encoder_and_is_not_saved(tmp_path):
    from safetensors.numpy import load_file

    from classify.crossencoder import CrossEncoder

    heads = ["Dam destroyed in the south", "Grain deal collapses"] * 4
    stories = ["Flood waters rise after the dam blast.", "Moscow quits the Black Sea accord."] * 4
    labels = ["agree", "discuss", "discuss", "agree"] * 2
    aux = (["Dam blast.", "Dam blast.", "Grain accord.", "Grain accord."],
           ["Towns flooded downstream.", "Ports shut as accord ends.", "Ships wait at Odesa.", "Flood waters rise."],
           [1, 0, 1, 0])
    settings = dict(epochs=1, batch_size=4, max_length=32, show_progress=False)
    plain = CrossEncoder(**settings).fit(heads, stories, labels)
    again = CrossEncoder(**settings).fit(heads, stories, labels)
    with_aux = CrossEncoder(**settings).fit(heads, stories, labels, same_event=aux)
    np.testing.assert_array_equal(plain.predict_proba(heads, stories), again.predict_proba(heads, stories))
    # the head's batches move the shared encoder: other stance probabilities, same classes
    assert not np.allclose(plain.predict_proba(heads, stories), with_aux.predict_proba(heads, stories), atol=1e-6)
    assert list(with_aux.classes_) == ["agree", "discuss"]
    with_aux.save(tmp_path)
    keys = load_file(str(tmp_path / "cross_encoder.safetensors"))
    assert all(k.startswith(("encoder.", "head.")) for k in keys) and "head.weight" in keys
    assert keys["head.weight"].shape == (2, 384)  # the stance head only
    loaded = CrossEncoder.load(tmp_path)
    np.testing.assert_allclose(loaded.predict_proba(heads, stories), with_aux.predict_proba(heads, stories), atol=1e-6)
    assert loaded.device == "cpu"  # the device trained on is not saved: a model loads anywhere
    with pytest.raises(ValueError, match="without same-event pairs"):
        loaded.same_event_proba(["a"], ["b"])
    # the head learns its pairs (10 passes over 4 pairs)
    longer = CrossEncoder(**{**settings, "epochs": 10}).fit(heads, stories, labels, same_event=aux)
    assert ((longer.same_event_proba(aux[0], aux[1]) > 0.5) == np.array(aux[2], dtype=bool)).all()


def test_onnx_runtimes_score_like_torch_batch_invariantly_and_round_trip(tmp_path):
    """``runtime: onnx`` is the same model (probabilities within float noise of torch); ``onnx-int8`` close to it;
    both score a pair alike alone or in a batch, validation scoring uses them, and the model directory holds the
    export (no torch weights of the encoder); a directory that lost it is refused on one line."""
    import json

    from classify.crossencoder import CrossEncoder
    from classify.errors import ModelError

    heads = ["Dam destroyed in the south", "Grain deal collapses", "Kyiv blackout after strikes"] * 4
    stories = ["Flood waters rise after the dam blast near Nova Kakhovka.", "Moscow quits the Black Sea accord.",
               "Power cut across the capital", "Officials deny the dam was hit at all, blaming a leak."] * 3
    labels = ["agree", "discuss", "agree", "disagree"] * 3
    settings = dict(epochs=2, batch_size=4, max_length=40, show_progress=False)
    torch_ce = CrossEncoder(**settings).fit(heads, stories, labels)
    reference = torch_ce.predict_proba(heads, stories)
    for runtime, atol in (("onnx", 1e-4), ("onnx-int8", 0.1)):
        ce = CrossEncoder(**settings, runtime=runtime).fit(heads, stories, labels)
        got = ce.predict_proba(heads, stories)
        np.testing.assert_allclose(got.sum(1), 1, atol=1e-6)
        np.testing.assert_allclose(got, reference, atol=atol)
        alone = np.vstack([ce.predict_proba([h], [s]) for h, s in zip(heads[:5], stories[:5])])
        np.testing.assert_allclose(alone, got[:5], atol=1e-6)  # a pair's scores do not depend on its batch
        folder = tmp_path / runtime
        folder.mkdir()
        ce.save(folder)
        assert (folder / "cross_encoder.onnx").is_file()
        assert json.loads((folder / "cross_encoder.json").read_text())["params"]["runtime"] == runtime
        loaded = CrossEncoder.load(folder)
        assert getattr(loaded, "encoder_", None) is None  # scores by the export alone
        np.testing.assert_allclose(loaded.predict_proba(heads, stories), got, atol=1e-6)
        # the trained weights are kept: the same folder scores in torch too, and re-saves whole
        np.testing.assert_allclose(CrossEncoder.load(folder, runtime="torch").predict_proba(heads, stories),
                                   reference, atol=1e-6)
        again = tmp_path / f"{runtime}-again"
        again.mkdir()
        loaded.save(again)
        assert {f.name: f.read_bytes() for f in again.iterdir()} == {f.name: f.read_bytes() for f in folder.iterdir()}
        (folder / "cross_encoder.onnx").unlink()
        with pytest.raises(ModelError, match="missing cross_encoder.onnx"):
            CrossEncoder.load(folder)
    plain = tmp_path / "torch"
    plain.mkdir()
    torch_ce.save(plain)
    assert not (plain / "cross_encoder.onnx").exists()
    np.testing.assert_allclose(CrossEncoder.load(plain, runtime="onnx").predict_proba(heads, stories), reference,
                               atol=1e-4)  # a torch-saved model exported on load
    assert not np.allclose(reference, CrossEncoder(**settings, runtime="onnx", seed=1).fit(
        heads, stories, labels).predict_proba(heads, stories), atol=1e-3)  # the export is of the trained weights


def test_runtime_is_validated_and_reaches_the_cross_encoder(tiny_config):
    from classify.pipeline import build_stance

    raw = tiny_config.model_dump()
    raw["stance"]["cross_encoder"] = {"enabled": True, "runtime": "onnx-int8"}
    assert build_stance(validate_config(raw, check_files=False), quiet=True).cross_encoder.runtime == "onnx-int8"
    raw["stance"]["cross_encoder"]["runtime"] = "tensorrt"
    with pytest.raises(ConfigError, match="stance.cross_encoder.runtime"):
        validate_config(raw, check_files=False)


def test_bf16_precision_trains_in_autocast_is_deterministic_and_is_saved(tmp_path, tiny_config, monkeypatch, capsys):
    """``precision: bf16`` runs the training steps in bfloat16 autocast: another model than fp32 (the setting is
    used), the same model again for the same inputs, fp32 weights saved and the setting recorded; validated;
    on a device without bf16 hardware the config's bf16 trains in fp32 with a one-line notice."""
    import json

    import torch

    from classify.crossencoder import CrossEncoder
    from classify.pipeline import build_stance

    heads = ["Dam destroyed in the south", "Grain deal collapses", "Kyiv blackout after strikes"] * 4
    stories = ["Flood waters rise after the dam blast.", "Moscow quits the Black Sea accord.",
               "Power cut across the capital", "Officials deny the dam was hit at all."] * 3
    labels = ["agree", "discuss", "agree", "disagree"] * 3
    settings = dict(epochs=2, batch_size=4, max_length=32, show_progress=False)
    fp32 = CrossEncoder(**settings).fit(heads, stories, labels).predict_proba(heads, stories)
    bf16 = CrossEncoder(**settings, precision="bf16").fit(heads, stories, labels)
    got = bf16.predict_proba(heads, stories)
    np.testing.assert_array_equal(got, CrossEncoder(**settings, precision="bf16").fit(
        heads, stories, labels).predict_proba(heads, stories))
    assert not np.allclose(got, fp32, atol=1e-4)
    np.testing.assert_allclose(got, fp32, atol=0.15)  # the same training, at bf16 rounding
    assert all(p.dtype == torch.float32 for p in bf16.encoder_.parameters())
    bf16.save(tmp_path)
    assert json.loads((tmp_path / "cross_encoder.json").read_text())["params"]["precision"] == "bf16"
    np.testing.assert_allclose(CrossEncoder.load(tmp_path).predict_proba(heads, stories), got, atol=1e-6)
    raw = tiny_config.model_dump()
    raw["stance"]["cross_encoder"] = {"enabled": True, "precision": "bf16"}
    config = validate_config(raw, check_files=False)
    monkeypatch.setattr("classify.pipeline.bf16_is_fast", lambda device: True)
    assert build_stance(config, quiet=True).cross_encoder.precision == "bf16"
    monkeypatch.setattr("classify.pipeline.bf16_is_fast", lambda device: False)  # no bf16 hardware: fp32, said once
    assert build_stance(config, quiet=False).cross_encoder.precision == "fp32"
    assert capsys.readouterr().err.count("stance.cross_encoder.precision: bf16 has no hardware support") == 1
    for bad in ({"precision": "fp8"}, {"precision": "bf16", "device": "mps"}):
        raw["stance"]["cross_encoder"] = {"enabled": True, **bad}
        with pytest.raises(ConfigError, match="stance.cross_encoder.precision"):
            validate_config(raw, check_files=False)


def test_frozen_layers_keep_the_packaged_weights_below_and_train_above(tmp_path, tiny_config):
    """``frozen_layers: k``: the encoder's first k stages (the embeddings, then its layers) end training at their
    packaged weights, the layers above move; another model than k = 0 (the setting is used), saved with the model;
    out of range is one config error naming the key."""
    import json

    from classify.crossencoder import CrossEncoder
    from classify.pipeline import build_stance

    heads = ["Dam destroyed in the south", "Grain deal collapses"] * 4
    stories = ["Flood waters rise after the dam blast.", "Moscow quits the Black Sea accord."] * 4
    labels = ["agree", "discuss", "discuss", "agree"] * 2
    settings = dict(epochs=2, batch_size=4, max_length=32, show_progress=False)
    packaged = CrossEncoder(**settings)
    packaged._build(2)
    before = {k: v.clone() for k, v in packaged.encoder_.state_dict().items()}
    frozen = CrossEncoder(**settings, frozen_layers=3).fit(heads, stories, labels)
    after = frozen.encoder_.state_dict()
    for name, value in after.items():
        if name.startswith("pooler."):  # unused by mean pooling: no gradient either way
            continue
        low = name.startswith(("embeddings.", "encoder.layer.0.", "encoder.layer.1."))
        assert bool((value == before[name]).all()) == low, name
    query = "encoder.layer.2.attention.self.query.weight"
    assert not (after[query] == before[query]).all()
    full = CrossEncoder(**settings).fit(heads, stories, labels)
    assert not (full.encoder_.state_dict()["encoder.layer.0.attention.self.query.weight"]
                == before["encoder.layer.0.attention.self.query.weight"]).all()
    assert not np.allclose(full.predict_proba(heads, stories), frozen.predict_proba(heads, stories), atol=1e-6)
    frozen.save(tmp_path)
    assert json.loads((tmp_path / "cross_encoder.json").read_text())["params"]["frozen_layers"] == 3
    np.testing.assert_allclose(CrossEncoder.load(tmp_path).predict_proba(heads, stories),
                               frozen.predict_proba(heads, stories), atol=1e-6)
    only_embeddings = CrossEncoder(**settings, frozen_layers=1).fit(heads, stories, labels).encoder_.state_dict()
    for name, value in only_embeddings.items():
        if not name.startswith("pooler."):
            assert bool((value == before[name]).all()) == name.startswith("embeddings."), name
    with pytest.raises(ConfigError, match="stance.cross_encoder.frozen_layers: 8 is outside 0..7"):
        CrossEncoder(**settings, frozen_layers=8).fit(heads, stories, labels)
    raw = tiny_config.model_dump()
    raw["stance"]["cross_encoder"] = {"enabled": True, "frozen_layers": 3}
    assert build_stance(validate_config(raw, check_files=False), quiet=True).cross_encoder.frozen_layers == 3
    raw["stance"]["cross_encoder"]["frozen_layers"] = 7  # every stage frozen (only the head trains): allowed
    assert build_stance(validate_config(raw, check_files=False), quiet=True).cross_encoder.frozen_layers == 7
    raw["stance"]["cross_encoder"]["frozen_layers"] = 8  # past the packaged encoder's 7 stages: refused when built
    with pytest.raises(ConfigError, match="stance.cross_encoder.frozen_layers: 8 is outside 0..7"):
        build_stance(validate_config(raw, check_files=False), quiet=True)
    raw["stance"]["cross_encoder"]["frozen_layers"] = -1
    with pytest.raises(ConfigError, match="stance.cross_encoder.frozen_layers"):
        validate_config(raw, check_files=False)


def test_bf16_counts_as_fast_on_a_cpu_only_with_amx():
    """bf16 autocast is chosen on a CPU only where AMX multiplies bf16 matrices: with AVX-512 BF16 alone a training
    step measured slower in bf16 than in fp32 (0.73 s against 0.52 s), so such a CPU trains in fp32."""
    from classify.crossencoder import cpu_flags_have_bf16_matmul

    base = "flags\t\t: fpu vme avx2 avx512f avx512bw avx512_vnni"
    assert not cpu_flags_have_bf16_matmul(base)
    assert not cpu_flags_have_bf16_matmul(base + " avx512_bf16 avx512_fp16")
    assert cpu_flags_have_bf16_matmul(base + " avx512_bf16 amx_bf16 amx_tile amx_int8")
    assert not cpu_flags_have_bf16_matmul(base + " amx_bf16x")  # a whole flag, not a prefix


def test_onnx_scores_are_stored_and_read_back_bit_for_bit(tmp_path, tiny_config, fake_embedder):
    """Inside ``stored_scores`` an ONNX-scored cross-encoder scores each pair once: a second call (and a second
    ``predict_dumps`` over the same page) scores nothing and returns the same bits. Other weights, or a torch
    runtime, never read those scores."""
    from classify import crossencoder
    from classify.crossencoder import CrossEncoder, stored_scores
    from classify.store import VectorStore

    heads = ["Dam destroyed in the south", "Grain deal collapses", "Kyiv blackout after strikes"] * 4
    stories = ["Flood waters rise after the dam blast near Nova Kakhovka.", "Moscow quits the Black Sea accord.",
               "Power cut across the capital", "Officials deny the dam was hit at all, blaming a leak."] * 3
    labels = ["agree", "discuss", "agree", "disagree"] * 3
    settings = dict(epochs=1, batch_size=4, max_length=40, show_progress=False, runtime="onnx-int8")
    ce = CrossEncoder(**settings).fit(heads, stories, labels)
    fresh = ce.predict_proba(heads, stories)
    store = VectorStore(tmp_path / "scores.sqlite3")
    with stored_scores(store):
        before = crossencoder.SCORED
        first = ce.predict_proba(heads, stories)
        assert crossencoder.SCORED - before == len(set(zip(heads, stories))) == 12  # each distinct pair once
        second = ce.predict_proba(heads[::-1], stories[::-1])
        assert crossencoder.SCORED - before == 12
        other = CrossEncoder(**{**settings, "seed": 1}).fit(heads, stories, labels)
        assert other.score_identity() != ce.score_identity()
        from copy import deepcopy

        same_export = deepcopy(ce)  # the same ONNX graph, another head: another identity
        weight, bias = ce._head_arrays()
        same_export.head_arrays_, same_export._score_identity = (weight + 1, bias), None
        assert same_export.onnx_ == ce.onnx_ and same_export.score_identity() != ce.score_identity()
        np.testing.assert_array_equal(other.predict_proba(heads, stories), other._score(heads, stories, 32))
        assert crossencoder.SCORED - before == 12 + 12 + 12  # its own 12, then the check's unstored 12
        torch_ce = CrossEncoder(**{**settings, "runtime": "torch"}).fit(heads, stories, labels)
        torch_ce.predict_proba(heads, stories)
    np.testing.assert_array_equal(first, fresh)
    np.testing.assert_array_equal(second, fresh[::-1])
    assert store.info(check=False)["rows"] == 24  # two ONNX cross-encoders' pairs; the torch one stored none
    # predict: a second run over the same page scores no pair again, with the same rows
    raw = tiny_config.model_dump()
    raw["stance"].update(cross_encoder={"enabled": True, "labels": "all", "weight": 0.5, "epochs": 1,
                                        "batch_size": 4, "max_length": 48, "runtime": "onnx-int8"})
    model = train(validate_config(raw, check_files=False), quiet=True, embedder=fake_embedder)
    fake_embedder.store = VectorStore(tmp_path / "cache.sqlite3")
    dumps = [parse_dump(SAMPLE, "a.txt")]
    before = crossencoder.SCORED
    cold = predict_dumps(model, dumps, embedder=fake_embedder)
    scored = crossencoder.SCORED - before
    assert scored > 0
    warm = predict_dumps(model, dumps, embedder=fake_embedder)
    assert crossencoder.SCORED - before == scored
    assert cold.equals(warm)


def test_a_headline_too_long_for_max_length_is_cut_not_an_error():
    from classify.crossencoder import CrossEncoder

    heads = ["Dam destroyed in the south", "Grain deal collapses"] * 2
    stories = ["Flood waters rise after the dam blast downstream of the town."] * 4
    ce = CrossEncoder(epochs=1, batch_size=4, max_length=32, show_progress=False).fit(
        heads, stories, ["agree", "discuss"] * 2)
    long_head = " ".join(["officials"] * 40) + " say the dam was destroyed"
    # short headlines: exactly what cutting only the story gives
    enc = ce._tokenize(heads + [long_head], stories + ["Flood waters rise."])
    plain = ce.tokenizer_(heads, stories, truncation="only_second", max_length=32)
    assert enc["input_ids"][:4] == plain["input_ids"] and enc["token_type_ids"][:4] == plain["token_type_ids"]
    assert len(enc["input_ids"][4]) == 32 and 1 in enc["token_type_ids"][4]  # the story keeps some room
    assert ce.predict_proba([long_head], ["Flood waters rise."]).shape == (1, 2)
    assert ce._tokenize([], [])["input_ids"] == []
    ce.runtime = "onnx-int8"
    ce.onnx_ = ce._export()
    assert ce.predict_proba([long_head, heads[0]], ["Flood waters rise.", stories[0]]).shape == (2, 2)


def test_linear_probe_starts_the_head_from_a_balanced_logistic_regression(tmp_path, tiny_config, monkeypatch):
    """``linear_probe: true`` (LP-FT): before any training step the stance head *is* a class-balanced logistic
    regression on the packaged encoder's pooled vectors of every training and pretraining pair (worked out here
    with scikit-learn on vectors computed apart), binary label sets included; the setting reaches the model from
    the config, changes the trained model, is saved and keys a shared pretraining."""
    import json

    import torch
    from sklearn.linear_model import LogisticRegression

    from classify.crossencoder import CrossEncoder, _pretrain_key
    from classify.pipeline import build_stance

    heads = ["Dam destroyed in the south", "Grain deal collapses", "Kherson retaken", "Drones hit Kyiv"] * 3
    stories = ["Flood waters rise after the dam blast.", "Moscow quits the Black Sea accord.",
               "Troops enter the city centre.", "Power cuts after the night's strikes."] * 3
    labels = ["agree", "discuss", "unrelated", "agree", "unrelated", "discuss"] * 2
    extra = (["Iran denies sending drones"] * 2, ["Tehran says it sold none.", "A match report."],
             ["disagree", "unrelated"])
    labels_all = labels[:-1] + ["disagree"]  # the pretraining's labels must be among the training labels
    settings = dict(epochs=1, batch_size=4, max_length=32, show_progress=False)
    packaged = CrossEncoder(**settings)
    packaged._build(4)
    packaged.encoder_.eval()
    with torch.no_grad():
        pooled = packaged._pooled(heads + extra[0], stories + extra[1]).numpy()

    monkeypatch.setattr(CrossEncoder, "_train", lambda *a, **k: None)  # the head as the probe left it
    probed = CrossEncoder(**settings, linear_probe=True).fit(heads, stories, labels_all, pretrain=extra)
    expected = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(
        pooled, labels_all + extra[2])
    np.testing.assert_allclose(probed.head_.weight.detach().numpy(), expected.coef_, atol=2e-3)
    np.testing.assert_allclose(probed.head_.bias.detach().numpy(), expected.intercept_, atol=2e-3)
    alone = CrossEncoder(**settings, linear_probe=True).fit(heads, stories, labels_all)  # pretraining pairs count
    assert not np.allclose(alone.head_.weight.detach().numpy(), probed.head_.weight.detach().numpy(), atol=1e-3)
    binary = [x if x == "unrelated" else "related" for x in labels]
    two = CrossEncoder(**settings, linear_probe=True).fit(heads, stories, binary)
    lr2 = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(pooled[:len(heads)], binary)
    with torch.no_grad():
        proba = torch.softmax(two.head_(torch.tensor(pooled[:len(heads)])), -1).numpy()
    np.testing.assert_allclose(proba, lr2.predict_proba(pooled[:len(heads)]), atol=1e-3)
    random_head = CrossEncoder(**settings).fit(heads, stories, binary)
    assert not np.allclose(random_head.head_.weight.detach().numpy(), two.head_.weight.detach().numpy(), atol=1e-3)
    monkeypatch.undo()
    one = CrossEncoder(**settings, linear_probe=True).fit(heads[:2], stories[:2], ["agree", "agree"])  # no error
    assert one.predict_proba(heads[:2], stories[:2]).shape == (2, 1)

    trained = CrossEncoder(**settings, linear_probe=True).fit(heads, stories, labels)
    plain = CrossEncoder(**settings).fit(heads, stories, labels)
    assert not np.allclose(trained.predict_proba(heads, stories), plain.predict_proba(heads, stories), atol=1e-4)
    trained.save(tmp_path)
    assert json.loads((tmp_path / "cross_encoder.json").read_text())["params"]["linear_probe"] is True
    assert CrossEncoder.load(tmp_path).linear_probe is True
    assert _pretrain_key(trained, extra, trained.classes_) != _pretrain_key(plain, extra, plain.classes_)
    raw = tiny_config.model_dump()
    raw["stance"]["cross_encoder"] = {"enabled": True, "linear_probe": True}
    assert build_stance(validate_config(raw, check_files=False), quiet=True).cross_encoder.linear_probe is True
    raw["stance"]["cross_encoder"]["linear_probe"] = False
    assert build_stance(validate_config(raw, check_files=False), quiet=True).cross_encoder.linear_probe is False


def test_layer_decay_gives_each_layer_its_learning_rate(tmp_path, tiny_config):
    """``layer_decay: d``: the head and the top layer at the learning rate, each layer below d times the one above,
    the embeddings d times the lowest layer (every trainable parameter in exactly one group); training then moves
    the embeddings far less than with one rate; the setting reaches the model, is saved and keys a pretraining."""
    import json

    from classify.crossencoder import CrossEncoder, _pretrain_key
    from classify.pipeline import build_stance

    ce = CrossEncoder(learning_rate=1e-4, layer_decay=0.5)
    ce._build(3)
    params = list(ce.encoder_.parameters()) + list(ce.head_.parameters())
    groups = ce._param_groups(params)
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(id(p) for p in params)
    lr = {id(p): g["lr"] for g in groups for p in g["params"]}
    layers = ce.encoder_.encoder.layer
    assert lr[id(ce.head_.weight)] == pytest.approx(1e-4)
    for i, layer in enumerate(layers):  # six layers: the top (5) at 1e-4, layer 0 at 1e-4 / 2 ** 5
        assert lr[id(layer.attention.self.query.weight)] == pytest.approx(1e-4 * 0.5 ** (len(layers) - 1 - i))
    assert lr[id(ce.encoder_.embeddings.word_embeddings.weight)] == pytest.approx(1e-4 * 0.5 ** len(layers))
    assert [g["lr"] for g in CrossEncoder(learning_rate=1e-4)._param_groups(params)] == [1e-4]

    heads = ["Dam destroyed in the south", "Grain deal collapses"] * 4
    stories = ["Flood waters rise after the dam blast.", "Moscow quits the Black Sea accord."] * 4
    labels = ["agree", "discuss", "discuss", "agree"] * 2
    settings = dict(epochs=2, batch_size=4, max_length=32, show_progress=False)
    before = {k: v.clone() for k, v in ce.encoder_.state_dict().items()}

    def moved(model, name):
        return float((model.encoder_.state_dict()[name] - before[name]).abs().mean())

    plain = CrossEncoder(**settings).fit(heads, stories, labels)
    decayed = CrossEncoder(**settings, layer_decay=0.5).fit(heads, stories, labels)
    low, top = "encoder.layer.0.attention.self.query.weight", "encoder.layer.5.attention.self.query.weight"
    assert moved(decayed, low) < 0.2 * moved(plain, low)
    assert moved(decayed, top) > 0.5 * moved(plain, top)
    decayed.save(tmp_path)
    assert json.loads((tmp_path / "cross_encoder.json").read_text())["params"]["layer_decay"] == 0.5
    assert CrossEncoder.load(tmp_path).layer_decay == 0.5
    pairs = (heads, stories, labels)
    assert _pretrain_key(decayed, pairs, decayed.classes_) != _pretrain_key(plain, pairs, plain.classes_)
    raw = tiny_config.model_dump()
    raw["stance"]["cross_encoder"] = {"enabled": True, "layer_decay": 0.8}
    assert build_stance(validate_config(raw, check_files=False), quiet=True).cross_encoder.layer_decay == 0.8
    for bad in (0, 1.5):
        raw["stance"]["cross_encoder"]["layer_decay"] = bad
        with pytest.raises(ConfigError, match="stance.cross_encoder.layer_decay"):
            validate_config(raw, check_files=False)


def test_average_last_holds_the_rate_and_ends_on_the_mean_of_the_last_steps(tmp_path, tiny_config):
    """``average_last: a`` (SWA): the rate decays until the last share a of the steps, then stays there; the encoder
    and head end as the mean of their weights after each of those steps (not the last step's); only the final
    training run averages (a pretraining run before it does not); the setting reaches the model, is saved and keys
    a fit; 0 leaves training as it was."""
    import json

    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from classify.crossencoder import CrossEncoder, _fit_key
    from classify.pipeline import build_stance

    heads = ["Dam destroyed in the south", "Grain deal collapses"] * 4
    stories = ["Flood waters rise after the dam blast.", "Moscow quits the Black Sea accord."] * 4
    labels = ["agree", "discuss", "discuss", "agree"] * 2
    settings = dict(epochs=4, batch_size=4, max_length=32, learning_rate=1e-3, show_progress=False)
    steps: list = []
    current: list = []

    def record(optimizer, args, kwargs):  # after each step: its rate and the weights it left
        ce = current[0]
        steps.append((optimizer.param_groups[0]["lr"], ce.head_.weight.detach().clone(),
                      ce.encoder_.encoder.layer[5].output.dense.weight.detach().clone()))

    hook = register_optimizer_step_post_hook(record)
    try:
        current[:] = [CrossEncoder(**settings, average_last=0.5)]
        averaged = current[0].fit(heads, stories, labels)
        tail, steps[:] = steps[4:], []
        current[:] = [CrossEncoder(**settings)]
        plain = current[0].fit(heads, stories, labels)
        plain_steps, steps[:] = steps[:], []
        current[:] = [CrossEncoder(**settings, average_last=0.5, pretrain_order="before", pretrain_epochs=4)]
        current[0].fit(heads, stories, labels, pretrain=(heads, stories, labels))
        pretrain_steps = steps[:8]
    finally:
        hook.remove()
    assert len(tail) == 4  # 8 steps, the last half averaged, at the rate the decay reached: 1e-3 * (1 - 4/8)
    assert [lr for lr, _, _ in tail] == pytest.approx([5e-4] * 4)
    assert [lr for lr, _, _ in plain_steps] == pytest.approx([1e-3 * (1 - s / 8) for s in range(8)])
    assert [lr for lr, _, _ in pretrain_steps] == pytest.approx([1e-3 * (1 - s / 8) for s in range(8)])
    for i, weight in ((1, averaged.head_.weight), (2, averaged.encoder_.encoder.layer[5].output.dense.weight)):
        mean = torch.stack([s[i] for s in tail]).mean(0)
        assert torch.allclose(weight, mean, atol=1e-6)
        assert not torch.allclose(weight, tail[-1][i], atol=1e-5)
    assert not np.allclose(averaged.predict_proba(heads, stories), plain.predict_proba(heads, stories))
    averaged.save(tmp_path)
    assert json.loads((tmp_path / "cross_encoder.json").read_text())["params"]["average_last"] == 0.5
    assert CrossEncoder.load(tmp_path).average_last == 0.5
    assert _fit_key(averaged, heads, stories, labels, None) != _fit_key(plain, heads, stories, labels, None)
    raw = tiny_config.model_dump()
    raw["stance"]["cross_encoder"] = {"enabled": True, "average_last": 0.25}
    assert build_stance(validate_config(raw, check_files=False), quiet=True).cross_encoder.average_last == 0.25
    for bad in (-0.1, 1):
        raw["stance"]["cross_encoder"]["average_last"] = bad
        with pytest.raises(ConfigError, match="stance.cross_encoder.average_last"):
            validate_config(raw, check_files=False)
