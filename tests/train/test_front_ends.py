"""Front ends chosen by name train through the command line and come back from their checkpoint; a
front end the model refuses is a one-line error."""

from __future__ import annotations

from gradremedy.cli import main
from gradremedy.models import ENHANCERS
from gradremedy.train.checkpoint import load_model

from .helpers import TINY_CONFIG, make_tone_corpus, write_config


def _enhancer(**changes: object) -> dict:
    return {**TINY_CONFIG["model"]["enhancer"], **changes}


def test_the_tcn_front_end_trains_and_reloads_as_itself(tmp_path) -> None:
    data = make_tone_corpus(tmp_path / "data", num_train=4, num_valid=2)
    enhancer = _enhancer(kind="mask_tcn", tcn_channels=8, tcn_blocks=2)
    del enhancer["lstm_layers"], enhancer["lstm_units"]  # settings of mask_blstm only
    model_section = {**TINY_CONFIG["model"], "enhancer": enhancer}
    config = write_config(tmp_path / "c.yaml", model=model_section, train={"max_steps": 2})
    exp = tmp_path / "exp"
    assert main(["train", "--config", str(config), "--data", str(data), "--out", str(exp)]) == 0
    model, _, saved = load_model(exp, which="last")
    assert saved.model.enhancer.kind == "mask_tcn" and type(model.enhancer) is ENHANCERS["mask_tcn"]
    assert len(model.enhancer.blocks) == 2


def test_an_unknown_front_end_is_a_one_line_error(tmp_path, capsys) -> None:
    data = make_tone_corpus(tmp_path / "data", num_train=4, num_valid=2)
    model_section = {**TINY_CONFIG["model"], "enhancer": _enhancer(kind="conv")}
    config = write_config(tmp_path / "c.yaml", model=model_section)
    assert main(["train", "--config", str(config), "--data", str(data), "--out", str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.enhancer.kind: unknown front end 'conv' (known: mask_blstm" in err
