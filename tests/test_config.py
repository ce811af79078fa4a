import pytest

from classify.config import load_config
from classify.errors import ConfigError
from conftest import ROOT

DEFAULT = ROOT / "configs" / "default.yaml"


def test_default_config_loads_and_resolves_data_paths():
    cfg = load_config(DEFAULT)
    assert cfg.labels.topics == ["ukraine_war", "iran_protests", "uk_politics", "other"]
    assert all(src.path.startswith("/") for src in cfg.data.train)


def test_dotted_overrides():
    cfg = load_config(DEFAULT, ["stance.classifier.C=2", "clustering.algorithm=hdbscan", "data.train.1.unrelated_per_headline=3"])
    assert cfg.stance.classifier.C == 2.0
    assert cfg.clustering.algorithm == "hdbscan"
    assert cfg.data.train[1].unrelated_per_headline == 3


@pytest.mark.parametrize("override,message", [
    ("stance.classifer.C=2", "stance.classifer: unknown key"),
    ("topic.C=lots", "topic.C: Input should be a valid number"),
    ("clustering.algorithm=dbscan", "clustering.algorithm"),
    ("labels.unrelated=none_of_them", "labels.unrelated"),
    ("data.train.0.path=data/nope.jsonl", "data.train.0.path: file not found: data/nope.jsonl"),
    ("seed", "expected KEY=VALUE"),
])
def test_bad_configs_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(DEFAULT, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1\n")
    with pytest.raises(ConfigError, match="bad.yaml:.*invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_a_stance_scheme_without_unrelated_needs_no_unrelated_key():
    from classify.config import validate_config

    data = {"train": [{"type": "topics_jsonl", "path": "x.jsonl"}]}
    cfg = validate_config({"data": data, "labels": {"stances": ["favor", "against", "none"]}}, check_files=False)
    assert cfg.labels.unrelated is None
    assert validate_config({"data": data}, check_files=False).labels.unrelated == "unrelated"
    with pytest.raises(ConfigError, match="labels.unrelated"):  # named explicitly, it must be one of the labels
        validate_config({"data": data, "labels": {"stances": ["favor", "against", "none"], "unrelated": "unrelated"}},
                        check_files=False)
