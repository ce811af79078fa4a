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


@pytest.mark.parametrize("labels, classes", [("related", ["agree", "disagree", "discuss"]),
                                             ("all", ["agree", "disagree", "discuss", "unrelated"])])
def test_cross_encoder_trains_saves_and_predicts(tmp_path, tiny_config, fake_embedder, labels, classes):
    raw = tiny_config.model_dump()
    raw["stance"].update(two_stage=True, calibrate=False, cross_encoder={
        "enabled": True, "labels": labels, "weight": 0.5, "epochs": 2, "batch_size": 4, "max_length": 48})
    config = validate_config(raw, check_files=False)
    model = train(config, quiet=True, embedder=fake_embedder)
    assert list(model.stance.cross_encoder_.classes_) == classes
    assert model.stance.weight_ == 0.5
    d = save_model(model, tmp_path / "m")
    assert (d / "cross_encoder.safetensors").is_file()
    loaded = load_model(d)
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
