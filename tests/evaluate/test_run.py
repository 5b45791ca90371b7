"""gradremedy eval and transcribe on a tiny untrained experiment: every field of the report, consistent
counts, resampling and downmixing, bad utterances reported and skipped, enhanced audio written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile

import gradremedy
from gradremedy.cli import main
from gradremedy.data.tokenizer import normalize_text
from gradremedy.decode.lm import train_lm
from gradremedy.evaluate import evaluate, transcribe

from .helpers import SENTENCES, make_experiment, tone, write_table, write_wav

RATE = 8000  # the data's rate; the model runs at 16 kHz


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("eval")
    exp = make_experiment(root)
    data = root / "data" / "test_set"
    wav, spk1, text, cond = {}, {}, {}, {}
    for i, sentence in enumerate(SENTENCES):
        clean = tone(1.2, RATE, 150 + 40 * i, seed=i)
        noisy = clean + 0.05 * np.random.default_rng(i).standard_normal(len(clean)).astype(np.float32)
        if i == 1:
            noisy = np.stack([noisy, noisy], axis=1)  # stereo: downmixed
        wav[f"u{i}"] = write_wav(data / f"u{i}.wav", noisy, RATE)
        if i != 3:  # partial spk1.scp: u3 has no clean reference
            spk1[f"u{i}"] = write_wav(data / f"u{i}_clean.wav", clean, RATE)
        text[f"u{i}"] = sentence.upper() + "!"
        cond[f"u{i}"] = f"{'white' if i % 2 else 'babble'} {i * 6 - 4}"
    spk1["u2"] = write_wav(data / "silent_clean.wav", np.zeros(int(1.2 * RATE), np.float32), RATE)
    bad = np.full(4000, np.nan, dtype=np.float32)
    wav["x_nan"] = write_wav(data / "nan.wav", bad, RATE, subtype="FLOAT")
    wav["x_empty"] = write_wav(data / "empty.wav", np.zeros(0, np.float32), RATE)
    wav["x_missing"] = str(data / "does_not_exist.wav")
    (data / "garbage.wav").write_bytes(b"not audio at all")
    wav["x_garbage"] = str(data / "garbage.wav")
    wav["x_short"] = write_wav(data / "short.wav", tone(0.02, RATE), RATE)
    for key in ("x_nan", "x_empty", "x_missing", "x_garbage", "x_short"):
        text[key] = "alpha"
        cond[key] = "white 3"
    write_table(data / "wav.scp", wav)
    write_table(data / "spk1.scp", spk1)
    write_table(data / "text", text)
    write_table(data / "utt2cond", cond)
    return {"root": root, "exp": exp, "data": data}


@pytest.fixture(scope="module")
def report(setup: dict) -> dict:
    return evaluate(setup["exp"], setup["data"])


def test_report_fields_and_default_location(setup: dict, report: dict) -> None:
    out = setup["exp"] / "eval" / "test_set.json"
    assert json.loads(out.read_text()) == report
    for key in ("wer", "cer", "num_utts", "by_condition", "by_snr", "se", "errors", "skipped"):
        assert key in report
    assert report["num_utts"] == 4
    assert set(report["by_condition"]) == {"white", "babble"}
    assert sum(g["num_utts"] for g in report["by_condition"].values()) == 4
    assert list(report["by_snr"]) == ["[-5,0)", "[0,5)", "[5,10)", "[10,15)"]  # SNRs -4, 2, 8, 14
    assert report["decode"]["beam"] == 3


def test_bad_utterances_are_reported_and_skipped(report: dict, capsys) -> None:
    assert report["skipped"] == 5
    reasons = report["skipped_utts"]
    assert "non-finite" in reasons["x_nan"]
    assert "empty" in reasons["x_empty"]
    assert "not found" in reasons["x_missing"] and "unreadable" in reasons["x_garbage"]
    assert "cannot be decoded" in reasons["x_short"]


def test_wer_agrees_with_jiwer_on_the_written_hypotheses(setup: dict, report: dict) -> None:
    hyp_file = setup["exp"] / "eval" / "test_set.hyp.txt"
    lines = hyp_file.read_text(encoding="utf-8").splitlines()
    hyps = {line.split(" ", 1)[0]: (line.split(" ", 1) + [""])[1] for line in lines}
    assert sorted(hyps) == ["u0", "u1", "u2", "u3"]
    refs = {f"u{i}": normalize_text(s) for i, s in enumerate(SENTENCES)}
    ids = sorted(hyps)
    out = jiwer.process_words([refs[i] for i in ids], [normalize_text(hyps[i]) for i in ids])
    errors = report["errors"]
    assert (errors["substitutions"], errors["deletions"], errors["insertions"]) == (
        out.substitutions,
        out.deletions,
        out.insertions,
    )
    assert report["wer"] == pytest.approx(100 * out.wer, abs=1e-3)
    chars = jiwer.cer([refs[i] for i in ids], [normalize_text(hyps[i]) for i in ids])
    assert report["cer"] == pytest.approx(100 * chars, abs=1e-3)


def test_enhancement_scores_on_utterances_with_a_reference(report: dict) -> None:
    se = report["se"]
    # u0, u1 have usable references; u2's is silent (reported), u3 has none
    assert se["num_utts"] == 2
    assert any(f.startswith("u2:") for f in se["failures"])
    assert 1.0 <= se["pesq"] <= 4.65 and 0.0 <= se["stoi"] <= 1.0
    assert se["si_snr_improvement"] == pytest.approx(se["si_snr"] - se["si_snr_noisy"], abs=2e-3)


def test_model_without_enhancer_has_null_enhancement_scores(setup: dict, tmp_path: Path) -> None:
    exp = make_experiment(tmp_path, use_enhancer=False)
    out = tmp_path / "r.json"
    result = evaluate(exp, setup["data"], out_path=out, beam=1, checkpoint="last")
    assert result["se"]["pesq"] is None and result["se"]["si_snr_improvement"] is None
    assert (tmp_path / "r.hyp.txt").is_file()
    assert result["decode"]["beam"] == 1


def test_cli_eval_with_a_language_model(setup: dict, tmp_path: Path, capsys) -> None:
    text = tmp_path / "lm.txt"
    text.write_text("\n".join(SENTENCES * 3) + "\n")
    config = tmp_path / "lm.yaml"
    config.write_text("lm:\n  layers: 1\n  units: 16\n  epochs: 1\n")
    train_lm(config, text, tmp_path / "lm", tokenizer_path=setup["exp"] / "tokenizer")
    out = tmp_path / "lm_eval.json"
    argv = ["eval", "--exp", str(setup["exp"]), "--data", str(setup["data"]), "--out", str(out)]
    assert main([*argv, "--lm", str(tmp_path / "lm"), "--lm-weight", "0.5", "--beam", "2"]) == 0
    result = json.loads(out.read_text())
    assert result["decode"]["lm_weight"] == 0.5 and result["lm"] == str(tmp_path / "lm")
    assert "WER %" in capsys.readouterr().out
    assert main(["eval", "--exp", str(tmp_path / "nope"), "--data", str(setup["data"])]) == 2
    assert "nope" in capsys.readouterr().err


def test_eval_enlarges_the_onednn_kernel_cache(setup: dict, tmp_path: Path, monkeypatch) -> None:
    from gradremedy.onednn_cache import ONEDNN_CACHE_CAPACITY, ONEDNN_CACHE_VARIABLE

    monkeypatch.delenv(ONEDNN_CACHE_VARIABLE, raising=False)
    evaluate(setup["exp"], setup["data"], out_path=tmp_path / "r.json", beam=1, se_max_utts=1)
    assert os.environ[ONEDNN_CACHE_VARIABLE] == str(ONEDNN_CACHE_CAPACITY)


def test_transcribe_prints_one_line_per_file_and_writes_enhanced_audio(
    setup: dict, tmp_path: Path, capsys
) -> None:
    good = write_wav(tmp_path / "a.flac", tone(1.0, 22050), 22050)
    stereo = write_wav(tmp_path / "b.wav", np.stack([tone(1.0, 16000)] * 2, axis=1), 16000)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....")
    enhanced_dir = tmp_path / "enh"
    status = transcribe(setup["exp"], [good, broken, stereo], enhanced_dir=enhanced_dir, beam=2)
    captured = capsys.readouterr()
    assert status == 1
    lines = captured.out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [good, stereo]
    assert all(len(line.split("\t")) == 2 for line in lines)
    assert captured.err.count("\n") == 1 and "broken.wav" in captured.err
    enhanced, rate = soundfile.read(enhanced_dir / "a.wav")
    assert rate == 16000 and len(enhanced) == 16000
    assert (enhanced_dir / "b.wav").is_file() and not (enhanced_dir / "broken.wav").exists()
    assert main(["transcribe", "--exp", str(setup["exp"]), good]) == 0


def test_transcribe_refuses_enhanced_dir_without_an_enhancer(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path, use_enhancer=False)
    wav = write_wav(tmp_path / "a.wav", tone(1.0, 16000), 16000)
    assert main(["transcribe", "--exp", str(exp), wav, "--enhanced-dir", str(tmp_path / "e")]) == 2


def test_enhancement_subset_is_evenly_spaced_in_id_order() -> None:
    from gradremedy.evaluate.enhancement import enhancement_subset

    ids = [f"spk{k % 7}-{k:03d}" for k in range(100)]
    assert enhancement_subset(ids, 0) == set(ids) and enhancement_subset(ids, 100) == set(ids)
    subset = enhancement_subset(ids, 10)
    assert len(subset) == 10 and subset == {sorted(ids)[10 * k] for k in range(10)}
    assert enhancement_subset(ids[:3], 10) == set(ids[:3])


def test_enhancement_scored_on_at_most_se_max_utts(setup: dict, report: dict, tmp_path: Path) -> None:
    result = evaluate(setup["exp"], setup["data"], out_path=tmp_path / "r.json", se_max_utts=1)
    assert result["se"]["num_utts"] == 1  # u0, the first id with a reference; u1 is not scored
    assert result["wer"] == report["wer"] and result["num_utts"] == report["num_utts"]  # WER: every utterance


def test_without_the_pesq_package_eval_reports_pesq_unavailable_and_scores_the_rest(
    setup: dict, tmp_path: Path
) -> None:
    """A ``pesq`` that cannot be imported (as where its C extension does not build), in a fresh process."""
    broken = tmp_path / "site" / "pesq"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("no wheel for this Python")\n')
    src = Path(gradremedy.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(broken.parent), str(src)])}
    out = tmp_path / "r.json"
    command = [sys.executable, "-m", "gradremedy", "eval", "--exp", str(setup["exp"]), "--beam", "1"]
    command += ["--data", str(setup["data"]), "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    se = json.loads(out.read_text())["se"]
    assert "no wheel for this Python" in se["pesq_unavailable"]
    assert se["pesq"] is None and se["pesq_noisy"] is None
    assert se["num_utts"] == 2 and 0.0 <= se["stoi"] <= 1.0 and se["si_snr"] is not None
    assert not any("pesq" in failure for failure in se["failures"])
    assert "PESQ not scored: the pesq package cannot be imported" in done.stderr
    assert "PESQ unavailable (" in done.stdout
