"""LSTM LM: step-wise scoring equals the full forward pass, train-lm learns and saves a loadable model,
and shallow fusion adds exactly lm_weight x log P_lm to the beam search score."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from gradremedy.cli import main
from gradremedy.data.tokenizer import Tokenizer
from gradremedy.decode.beam_search import beam_search
from gradremedy.decode.lm import LSTMLM, check_same_tokens, load_lm, train_lm
from gradremedy.errors import UserError

from .helpers import make_batch, tiny_model

SENTENCES = ["alpha bravo charlie", "bravo charlie delta", "charlie delta echo", "alpha echo"]


def test_step_by_step_equals_full_forward() -> None:
    lm = LSTMLM(vocab_size=9, layers=2, units=12).eval()
    tokens = torch.randint(1, 8, (3, 6))
    logits, _ = lm(tokens)
    state = lm.init_state(3, "cpu")
    for t in range(tokens.shape[1]):
        step_log_probs, state = lm.step(tokens[:, t], state)
        torch.testing.assert_close(step_log_probs, logits[:, t].log_softmax(-1))
    # reordering hypotheses reorders their states
    index = torch.tensor([2, 0, 0])
    h, c = LSTMLM.reorder_state(state, index)
    torch.testing.assert_close(h, state[0][:, index])


@pytest.fixture
def lm_setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    text = tmp_path / "text.txt"
    text.write_text("\n".join(SENTENCES * 10) + "\n", encoding="utf-8")
    tokenizer_dir = tmp_path / "tok"
    Tokenizer.train(SENTENCES, "char", 0, tokenizer_dir)
    config = tmp_path / "lm.yaml"
    config.write_text(yaml.safe_dump({"lm": {"layers": 1, "units": 32, "epochs": 20, "lr": 0.01}}))
    return text, tokenizer_dir, config


def test_train_lm_learns_the_text_and_saves_a_loadable_model(lm_setup, tmp_path: Path) -> None:
    text, tokenizer_dir, config = lm_setup
    out = tmp_path / "lm"
    summary = train_lm(config, text, out, tokenizer_path=tokenizer_dir, overrides=["lm.batch_size=8"])
    assert (out / "config.yaml").is_file() and (out / "log.json").is_file()
    assert not list(out.glob(".*.tmp"))
    lm, tokenizer = load_lm(out)
    assert tokenizer.units == Tokenizer.load(tokenizer_dir).units
    assert summary["best_valid_ppl"] < 4.0  # characters of 4 sentences: uniform would be ~14
    seen = lm.sentence_log_prob(tokenizer.encode("alpha bravo charlie"))
    unseen = lm.sentence_log_prob(tokenizer.encode("echo alpha cdhlear"))
    assert seen > unseen + 5


def test_train_lm_cli_and_errors(lm_setup, tmp_path: Path, capsys) -> None:
    text, tokenizer_dir, config = lm_setup
    out = tmp_path / "lm_cli"
    argv = ["train-lm", "--config", str(config), "--text", str(text), "--out", str(out)]
    assert main([*argv, "--tokenizer", str(tokenizer_dir), "--set", "lm.epochs=1"]) == 0
    assert (out / "lm.pt").is_file()
    # without --tokenizer one is trained on the text (from the config's tokenizer section) and saved
    own = tmp_path / "lm_own"
    assert main([*argv[:-1], str(own), "--set", "lm.epochs=1", "--set", "tokenizer.kind=char"]) == 0
    assert load_lm(own)[1].units == Tokenizer.load(tokenizer_dir).units  # same text, same characters
    assert main([*argv[:4], str(tmp_path / "missing.txt"), *argv[5:], "--set", "lm.epochs=1"]) == 2
    assert "missing.txt" in capsys.readouterr().err
    with pytest.raises(UserError, match="lm.pt missing"):
        load_lm(tmp_path)
    other = Tokenizer.train(["zulu yankee"], "char", 0, tmp_path / "other")
    with pytest.raises(UserError, match="tokenizer differs"):
        check_same_tokens(other, Tokenizer.load(tokenizer_dir), out)


def test_shallow_fusion_adds_the_weighted_lm_score() -> None:
    model = tiny_model()
    torch.manual_seed(5)
    lm = LSTMLM(vocab_size=model.vocab_size, layers=1, units=8).eval()
    enc, enc_lens = make_batch([9, 7])
    weight = 0.8
    fused = beam_search(model, enc, enc_lens, beam_size=3, ctc_weight=0.0, lm=lm, lm_weight=weight, nbest=3)
    eos = model.vocab_size - 1
    for i, hyps in enumerate(fused):
        for hyp in hyps:
            full = [eos, *hyp.tokens, eos]
            att = sum(
                model.decoder_log_probs(torch.tensor([full[:k]]), enc[i : i + 1], enc_lens[i : i + 1])[
                    0, full[k]
                ]
                for k in range(1, len(full))
            ).item()
            assert hyp.score == pytest.approx(att + weight * lm.sentence_log_prob(hyp.tokens), abs=1e-3)
    plain = beam_search(model, enc, enc_lens, beam_size=3, ctc_weight=0.0)
    strong = beam_search(model, enc, enc_lens, beam_size=3, ctc_weight=0.0, lm=lm, lm_weight=50.0)
    assert [h[0].tokens for h in strong] != [h[0].tokens for h in plain]
