"""YAML -> dataclass mapping: overrides, unknown keys, types, and the resolved config round trip."""

from __future__ import annotations

import pytest
import yaml

from gradremedy.config import Config, ConfigError, config_to_dict, load_config, save_config


def test_defaults_are_the_authors_recipe() -> None:
    config = load_config(None)
    assert config.model.se_weight == 0.3
    assert config.model.ctc_weight == 0.3
    assert config.surgery.method_settings("gr") == {"K": 5.0, "max_stretch": 1000.0}
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


def test_surgery_nests_each_methods_settings(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "surgery:\n  method: pcgrad\n  granularity: global\n  gr: {K: 2, max_stretch: .inf}\n"
        "  pcgrad: {symmetric: true}\n"
    )
    config = load_config(path, ["surgery.gradvac.beta=0.2"])
    assert config.surgery.method_settings() == {"symmetric": True}
    assert config.surgery.method_settings("gr") == {"K": 2.0, "max_stretch": float("inf")}
    assert config.surgery.method_settings("gradvac") == {"beta": 0.2}
    method = config.surgery.build_method()
    assert method.name == "pcgrad" and method.settings() == {"granularity": "global", "symmetric": True}
    written = config_to_dict(config)["surgery"]
    assert (
        written["pcgrad"] == {"symmetric": True} and written["cagrad"] == {"c": 0.5} and written["imtl"] == {}
    )
    # The written form reads back to the same config.
    save_config(config, tmp_path / "saved.yaml")
    assert config_to_dict(load_config(tmp_path / "saved.yaml")) == config_to_dict(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "surgery:\n  gr_max_stretch: 10\n",
            r"c\.yaml: 'surgery\.gr_max_stretch' is now spelled 'surgery\.gr\.max_stretch'",
        ),
        ("surgery:\n  K: 3\n", r"'surgery\.K' is now spelled 'surgery\.gr\.K'"),
        ("surgery:\n  pcgrad_symmetric: true\n", r"'surgery\.pcgrad\.symmetric'"),
        ("surgery:\n  gradvac_beta: 0.1\n", r"'surgery\.gradvac\.beta'"),
        ("surgery:\n  cagrad_c: 0.1\n", r"'surgery\.cagrad\.c'"),
        (
            "surgery:\n  gr: {beta: 1}\n",
            r"unknown config key 'surgery\.gr\.beta' \(gr's settings: K, max_stretch\)",
        ),
        ("surgery:\n  gr: {granularity: layer}\n", r"granularity is common, set 'surgery\.granularity'"),
        ("surgery:\n  grr: {}\n", r"unknown config key 'surgery\.grr'"),
        ("surgery:\n  gr: {K: fast}\n", r"'surgery\.gr\.K' must be float"),
        ("surgery:\n  gradvac: {beta: 2}\n", r"'surgery\.gradvac': gradvac: beta must be in"),
        ("surgery:\n  method: sgd\n", r"'surgery\.method' must be one of asr_only, sum, gr"),
        (
            "surgery:\n  accumulation: each\n",
            r"'surgery\.accumulation' must be one of accumulated, per_micro",
        ),
        ("train:\n  amp: fp8\n", r"'train\.amp' must be one of none, bf16, fp16"),
        ("train:\n  accum_grad: 0\n", r"'train\.accum_grad' must be >= 1"),
        ("train:\n  schedule: step\n", r"'train\.schedule' must be one of inverse_sqrt, cosine, linear"),
        ("train:\n  schedule: cosine\n", r"'train\.schedule' cosine .* needs train\.max_steps"),
        (
            "train:\n  schedule: linear\n  max_steps: 100\n  warmup_steps: 10\n  final_lr_ratio: 2\n",
            r"'train\.final_lr_ratio' must be in \[0, 1\]",
        ),
    ],
)
def test_surgery_and_train_errors_name_the_file_and_the_key(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_a_method_registered_from_outside_gets_a_config_section(tmp_path) -> None:
    import torch

    from gradremedy.surgery import GradientMethod, register_method
    from gradremedy.surgery.registry import _REGISTRY

    class Weighted(GradientMethod):
        name = "weighted"

        def __init__(self, weight: float, granularity: str = "tensor"):
            super().__init__(granularity)
            self.weight = weight

        def coefficients(self, stats):
            w = torch.full_like(stats.ss, self.weight)
            return w, w.clone(), {}

    try:
        register_method("weighted", Weighted)
        assert load_config(None).surgery.method  # a required setting of an unused method is no error
        path = tmp_path / "c.yaml"
        path.write_text("surgery:\n  method: weighted\n")
        with pytest.raises(ConfigError, match=r"'surgery\.weighted': .*weight"):
            load_config(path)
        path.write_text("surgery:\n  method: weighted\n  weighted: {weight: 0.25}\n")
        assert load_config(path).surgery.build_method().weight == 0.25
    finally:
        _REGISTRY.pop("weighted", None)
