"""YAML -> dataclass mapping: overrides, unknown keys, types, and the resolved config round trip."""

from __future__ import annotations

import pytest
import yaml

from gradremedy.config import Config, ConfigError, config_to_dict, load_config, save_config


def test_defaults_are_the_authors_recipe() -> None:
    config = load_config(None)
    assert config.model.se_weight == 0.3
    assert config.model.ctc_weight == 0.3
    assert config.surgery.K == 5.0
    assert config.surgery.granularity == "tensor"


def test_overrides_are_parsed_as_yaml_scalars() -> None:
    config = load_config(None, ["model.encoder.blocks=2", "train.lr=1e-3"])
    assert config.model.encoder.blocks == 2
    assert config.train.lr == pytest.approx(1e-3)


def test_unknown_key_names_the_key_and_the_file(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  encoder:\n    blockz: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*model\.encoder\.blockz"):
        load_config(path)


def test_wrong_type_is_refused(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  accum_grad: two\n")
    with pytest.raises(ConfigError, match="train.accum_grad"):
        load_config(path)


def test_section_must_be_a_mapping(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: 3\n")
    with pytest.raises(ConfigError, match="'model' must be a mapping"):
        load_config(path)


def test_missing_file_and_invalid_yaml_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    path = tmp_path / "broken.yaml"
    path.write_text("model: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_malformed_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.lr"])


def test_resolved_config_round_trips(tmp_path) -> None:
    config = load_config(None, ["model.encoder.d_model=96", "model.frontend.f_max=4000"])
    save_config(config, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == config
    assert isinstance(again, Config)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == config_to_dict(config)
