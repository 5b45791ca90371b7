"""``gradremedy train`` end to end on a tiny tone corpus: methods, determinism, exact resume after
SIGKILL, refusals, overwrite, completion, non-finite steps and the data check."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gradremedy.errors import DataError, UserError
from gradremedy.train import loop, setup, train
from gradremedy.train.checkpoint import load_checkpoint, load_model

from .helpers import make_tone_corpus, write_config

METHODS = ("asr_only", "sum", "gr", "pcgrad", "gradvac", "cagrad", "mgda")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_tone_corpus(tmp_path_factory.mktemp("tones"))


def _train(config: Path, corpus: Path, exp: Path, **kwargs) -> dict:
    return train(config_path=config, data_dir=corpus, exp_dir=exp, **kwargs)


def _weights(exp: Path, which: str = "last.pt") -> dict[str, torch.Tensor]:
    return load_checkpoint(exp / "checkpoints" / which)["model"]


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_a_few_steps(tmp_path, corpus, method) -> None:
    config = write_config(tmp_path / "c.yaml", train={"max_steps": 2})
    exp = tmp_path / "exp"
    summary = _train(config, corpus, exp, method=method)
    assert summary["method"] == method and summary["steps"] == 2 and summary["finished"]
    last = load_checkpoint(exp / "checkpoints" / "last.pt")
    assert last["use_enhancer"] is (method != "asr_only")
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
    rows = _rows(exp / "logs" / "metrics.csv")
    assert [r["step"] for r in rows] == ["1", "2"]
    assert all(float(r["loss"]) > 0 for r in rows)
    if method == "asr_only":
        assert rows[0]["conflict_rate"] == ""
    else:
        assert 0.0 <= float(rows[0]["conflict_rate"]) <= 1.0
    for name in ("config.yaml", "tokenizer/tokenizer.json", "run.json", "logs/valid.csv"):
        assert (exp / name).exists(), name
    for which in ("best.pt", "average.pt"):
        assert set(_weights(exp, which)) == set(last["model"])


def test_same_seed_same_weights_and_another_seed_differs(tmp_path, corpus) -> None:
    config = write_config(tmp_path / "c.yaml", train={"max_steps": 3})
    _train(config, corpus, tmp_path / "a")
    _train(config, corpus, tmp_path / "b")
    _train(config, corpus, tmp_path / "c", seed=2)
    _assert_same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    with pytest.raises(AssertionError):
        _assert_same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "c"))


def _cli(config: Path, corpus: Path, exp: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gradremedy",
        "train",
        "--config",
        str(config),
        "--data",
        str(corpus),
        "--out",
        str(exp),
    ]


def test_sigkill_then_resume_ends_with_the_uninterrupted_weights(tmp_path, corpus) -> None:
    # Two epochs of two batches; a checkpoint every step, so the kill lands mid-run.
    config = write_config(
        tmp_path / "c.yaml",
        data={"batch_size": 4},
        train={"max_steps": 0, "epochs": 3, "checkpoint_every": 1, "log_every": 1},
        model={"frontend": {"specaugment": True}},
    )
    reference = tmp_path / "reference"
    _train(config, corpus, reference)

    killed = tmp_path / "killed"
    last = killed / "checkpoints" / "last.pt"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    process = subprocess.Popen(
        _cli(config, corpus, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    try:
        while not (last.exists() and load_checkpoint(last)["progress"]["step"] >= 2):
            assert process.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    interrupted = load_checkpoint(last)["progress"]
    assert not interrupted["finished"] and interrupted["step"] < 6

    result = subprocess.run(
        _cli(config, corpus, killed), env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout
    _assert_same_weights(_weights(reference), _weights(killed))
    assert _rows(reference / "logs" / "metrics.csv") == _rows(killed / "logs" / "metrics.csv")
    assert load_checkpoint(last)["progress"]["step"] == 6


def test_rerun_of_a_finished_run_does_nothing(tmp_path, corpus, capsys) -> None:
    config = write_config(tmp_path / "c.yaml", train={"max_steps": 2})
    exp = tmp_path / "exp"
    _train(config, corpus, exp)
    stamp = (exp / "checkpoints" / "last.pt").stat().st_mtime_ns
    capsys.readouterr()
    _train(config, corpus, exp)
    assert "already complete" in capsys.readouterr().out
    assert (exp / "checkpoints" / "last.pt").stat().st_mtime_ns == stamp
    # Extending max_steps continues the same run instead.
    summary = _train(config, corpus, exp, max_steps=3)
    assert summary["steps"] == 3


def test_a_different_config_is_refused_and_overwrite_starts_over(tmp_path, corpus) -> None:
    config = write_config(tmp_path / "c.yaml", train={"max_steps": 1})
    exp = tmp_path / "exp"
    _train(config, corpus, exp)
    with pytest.raises(UserError, match=r"different config \(train.lr: 0.005 -> 0.001\)"):
        _train(config, corpus, exp, overrides=["train.lr=0.001"])
    with pytest.raises(UserError, match="surgery.method: 'gr' -> 'sum'"):
        _train(config, corpus, exp, method="sum")
    (exp / "logs" / "keep-me.txt").write_text("old")
    summary = _train(config, corpus, exp, method="sum", overwrite=True)
    assert summary["method"] == "sum"
    assert not (exp / "logs" / "keep-me.txt").exists()
    assert _rows(exp / "logs" / "metrics.csv")[0]["step"] == "1"


def test_a_folder_that_is_not_an_experiment_is_refused(tmp_path, corpus) -> None:
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not an experiment directory"):
        _train(write_config(tmp_path / "c.yaml"), corpus, exp)


def test_non_finite_step_is_skipped_and_counted(tmp_path, corpus, monkeypatch) -> None:
    config = write_config(tmp_path / "c.yaml", train={"max_steps": 1})
    _train(config, corpus, tmp_path / "one")

    from gradremedy.models import JointModel

    forward = JointModel.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        losses = forward(self, *args, **kwargs)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 2:  # the second step's loss is NaN
                losses = {**losses, "main": losses["main"] * float("nan")}
        return losses

    monkeypatch.setattr(JointModel, "forward", poisoned)
    summary = _train(config, corpus, tmp_path / "two", max_steps=2)
    assert summary["skipped_steps"] == 1
    # Parameters untouched by the skipped step (buffers such as the SE input statistics still count
    # the frames the forward pass saw).
    model, _, _ = load_model(tmp_path / "one", "last")
    parameters = {name for name, _ in model.named_parameters()}
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    _assert_same_weights({n: one[n] for n in parameters}, {n: two[n] for n in parameters})
    rows = _rows(tmp_path / "two" / "logs" / "metrics.csv")
    assert rows[-1]["skipped_steps"] == "1"


def test_bad_utterance_refused_or_skipped(tmp_path, corpus, capsys) -> None:
    data = tmp_path / "data"
    make_tone_corpus(data)
    wav = sorted((data / "train" / "wav").glob("*utt001.wav"))[0]
    wav.write_bytes(b"")  # unreadable audio
    config = write_config(tmp_path / "c.yaml", train={"max_steps": 1})
    with pytest.raises(DataError, match="problem"):
        _train(config, data, tmp_path / "refused")
    assert "utt001" in capsys.readouterr().err
    summary = _train(config, data, tmp_path / "skipped", skip_bad=True)
    assert summary["skipped_utterances"] == 1
    run = json.loads((tmp_path / "skipped" / "run.json").read_text())
    assert run["skipped_utterances"] == 1 and run["git_commit"]


def test_missing_split_is_a_data_error(tmp_path) -> None:
    (tmp_path / "data" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="valid: missing"):
        _train(write_config(tmp_path / "c.yaml"), tmp_path / "data", tmp_path / "exp")


def test_config_differences_ignore_extendable_keys() -> None:
    old = {"train": {"max_steps": 1, "epochs": 2, "lr": 0.1}, "model": {"se_weight": 0.3}}
    new = {"train": {"max_steps": 5, "epochs": 9, "lr": 0.1}, "model": {"se_weight": 0.5}}
    assert setup.config_differences(old, new) == ["model.se_weight: 0.3 -> 0.5"]


def test_per_task_clipping_bounds_each_task_gradient(tmp_path, corpus) -> None:
    config = write_config(
        tmp_path / "c.yaml", train={"max_steps": 2, "clip_mode": "per_task", "grad_clip": 0.5}
    )
    _train(config, corpus, tmp_path / "exp", method="gr")
    rows = _rows(tmp_path / "exp" / "logs" / "metrics.csv")
    assert [float(r["clip_frac"]) for r in rows] == [1.0, 1.0]
    # Engine diagnostics see the clipped task gradients on the shared parameters.
    assert all(float(r["aux_norm"]) <= 0.5 + 1e-4 and float(r["main_norm"]) <= 0.5 + 1e-4 for r in rows)
    with pytest.raises(UserError, match="per_task needs surgery.accumulation=accumulated"):
        _train(
            config,
            corpus,
            tmp_path / "other",
            overrides=["surgery.accumulation=per_micro", "train.accum_grad=2"],
        )


def _random_batch(batch: int = 3, vocab_size: int = 8):
    from gradremedy.data.batching import Batch

    lens = torch.tensor([8000, 6000, 7200][:batch])
    clean = 0.3 * torch.randn(batch, int(lens.max())) * (torch.arange(int(lens.max())) < lens[:, None])
    tokens = torch.randint(1, vocab_size - 1, (batch, 4))
    ids = [f"u{i}" for i in range(batch)]
    return Batch(
        ids,
        clean + 0.05 * torch.randn_like(clean),
        lens,
        clean,
        torch.ones(batch, dtype=torch.bool),
        tokens,
        torch.full((batch,), 4),
        torch.ones(batch, dtype=torch.bool),
    )


def test_compile_covers_the_encoder_and_decoder_and_gives_the_eager_gradients(tmp_path) -> None:
    """train.compile=true compiles the Conformer and the decoder (the STFT front ends stay eager), in
    place, and the combined gradients are eager mode's."""
    from dataclasses import replace
    from types import SimpleNamespace

    from gradremedy.config import load_config

    compiled_cfg = load_config(write_config(tmp_path / "c.yaml", train={"compile": True}))
    eager_cfg = replace(compiled_cfg, train=replace(compiled_cfg.train, compile=False))
    batch = _random_batch()
    grads = []
    for cfg in (eager_cfg, compiled_cfg):
        torch.manual_seed(0)
        run = loop.build_run(cfg, SimpleNamespace(vocab_size=8), torch.device("cpu"), rank=0, world_size=1)
        run.model.eval()  # no dropout: compiled code draws its random numbers differently
        loop.forward_backward(run, batch, 1)
        run.engine.combine()
        grads.append({name: p.grad.clone() for name, p in run.model.named_parameters()})
    compiled = {name for name, m in run.model.named_children() if m._compiled_call_impl is not None}
    assert compiled == {"encoder", "decoder"}
    assert grads[0].keys() == grads[1].keys()  # in place: the parameter names do not change
    # Fused kernels round differently, so: close relative to each tensor's norm, or for a gradient that is
    # zero in exact arithmetic (an attention key's bias) and rounding noise in both, to the whole gradient's.
    total = torch.cat([g.flatten() for g in grads[0].values()]).norm()
    for name in grads[0]:
        difference = (grads[1][name] - grads[0][name]).norm()
        assert difference <= 1e-4 * grads[0][name].norm() + 1e-6 * total, (name, float(difference))


def test_per_task_clipping_with_one_micro_batch_per_step_accepts_either_policy(tmp_path) -> None:
    from types import SimpleNamespace

    from gradremedy.config import load_config
    from gradremedy.surgery import ClipPerTask

    overrides = ["surgery.accumulation=per_micro", "train.accum_grad=1", "train.clip_mode=per_task"]
    cfg = load_config(write_config(tmp_path / "c.yaml"), overrides)
    run = loop.build_run(cfg, SimpleNamespace(vocab_size=8), torch.device("cpu"), rank=0, world_size=1)
    assert any(isinstance(step, ClipPerTask) for step in run.engine.before_combination)
    loop.forward_backward(run, _random_batch(), 1)
    diagnostics = loop.optimizer_step(run)
    assert "clipped" in diagnostics and all(p.grad is None for p in run.model.parameters())


def test_the_sum_asks_for_task_gradients_only_on_logged_steps(tmp_path, corpus, monkeypatch) -> None:
    from gradremedy.surgery import GradientEngine

    asked: list[bool] = []
    passes: list[bool] = []
    engine_backward = GradientEngine.backward

    def spy(self, main_loss, aux_loss, backward=None, *, task_gradients=True):
        asked.append(task_gradients)

        def counting(loss, retain_graph):
            passes.append(retain_graph)
            backward(loss, retain_graph)

        return engine_backward(self, main_loss, aux_loss, counting, task_gradients=task_gradients)

    monkeypatch.setattr(GradientEngine, "backward", spy)
    config = write_config(tmp_path / "c.yaml", train={"max_steps": 6, "log_every": 3})
    _train(config, corpus, tmp_path / "exp", method="sum")
    assert asked == [False, False, True, False, False, True]
    assert len(passes) == 6 + 2  # one pass a step, two on the logged steps
    with open(tmp_path / "exp" / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["3", "6"]
    assert all(r["conflict_rate"] != "" for r in rows)


def test_adam_is_fused_where_torch_has_the_kernel_and_plain_elsewhere(monkeypatch) -> None:
    from gradremedy.config import Config

    model = torch.nn.Linear(3, 2)
    assert setup.build_optimizer(model, Config()).defaults["fused"] is True
    real_adam = torch.optim.Adam

    def adam_without_fused_kernel(params, **settings):
        if settings.get("fused"):
            raise RuntimeError("`fused=True` requires all the params to be on a supported device")
        return real_adam(params, **settings)

    monkeypatch.setattr(torch.optim, "Adam", adam_without_fused_kernel)
    assert not setup.build_optimizer(model, Config()).defaults["fused"]


@pytest.mark.parametrize(
    ("amp", "device", "native_bf16", "dtype", "message"),
    [
        ("none", "cpu", True, None, ""),
        ("bf16", "cpu", True, torch.bfloat16, ""),
        ("bf16", "cpu", False, None, "no bf16 instructions (AVX512-BF16 or AMX) on this CPU"),
        ("fp16", "cpu", True, None, "applies on CUDA only"),
        ("bf16", "cuda", False, torch.bfloat16, ""),
        ("fp16", "cuda", False, torch.float16, ""),
    ],
)
def test_autocast_follows_train_amp_where_the_device_can_run_it(
    monkeypatch, capsys, amp, device, native_bf16, dtype, message
) -> None:
    from gradremedy.config import Config

    monkeypatch.setattr(setup, "cpu_has_native_bf16", lambda: native_bf16)
    cfg = Config()
    cfg.train.amp = amp
    assert setup.autocast_dtype_for(cfg, torch.device(device)) == dtype
    err = capsys.readouterr().err
    assert (message in err) if message else err == ""


def test_native_bf16_is_read_from_the_cpu_and_false_without_the_probes(monkeypatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert setup.cpu_has_native_bf16()
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert not setup.cpu_has_native_bf16()


@pytest.mark.parametrize("method", ["asr_only", "gr"])
def test_bf16_training_on_the_cpu_keeps_float32_weights_and_tracks_float32(
    tmp_path, corpus, monkeypatch, method
) -> None:
    """bf16 autocast on the CPU: the saved weights stay float32 and finite, run.json says which precision
    ran, and the first logged losses are float32's to within bf16's rounding."""
    monkeypatch.setattr(setup, "cpu_has_native_bf16", lambda: True)  # autocast runs either way, only slower
    steps = {"max_steps": 3, "log_every": 1}
    runs = {}
    for amp in ("none", "bf16"):
        config = write_config(tmp_path / f"{amp}.yaml", train={**steps, "amp": amp})
        runs[amp] = _train(config, corpus, tmp_path / amp, method=method)
    assert runs["none"]["precision"] == "float32" and runs["bf16"]["precision"] == "bfloat16"
    last = load_checkpoint(tmp_path / "bf16" / "checkpoints" / "last.pt")
    floats = [t for t in last["model"].values() if t.is_floating_point()]
    assert all(t.dtype in (torch.float32, torch.float64) and torch.isfinite(t).all() for t in floats)
    first = {amp: _rows(tmp_path / amp / "logs" / "metrics.csv")[0] for amp in runs}
    for name in ("loss", "ctc", "att"):
        assert float(first["bf16"][name]) == pytest.approx(float(first["none"][name]), rel=0.03), name
    float32, bf16 = _weights(tmp_path / "none"), _weights(tmp_path / "bf16")
    assert any(not torch.equal(float32[name], bf16[name]) for name in float32)  # bf16 did run


def test_cpu_training_enlarges_the_onednn_kernel_cache_unless_the_user_set_it(tmp_path, monkeypatch) -> None:
    from types import SimpleNamespace

    from gradremedy import onednn_cache
    from gradremedy.config import load_config

    variable = onednn_cache.ONEDNN_CACHE_VARIABLE
    monkeypatch.delenv(variable, raising=False)
    cfg = load_config(write_config(tmp_path / "c.yaml"))
    loop.build_run(cfg, SimpleNamespace(vocab_size=8), torch.device("cpu"), rank=0, world_size=1)
    assert int(os.environ[variable]) == onednn_cache.ONEDNN_CACHE_CAPACITY > 1024
    monkeypatch.setenv(variable, "77")
    onednn_cache.enlarge_onednn_cache()
    assert os.environ[variable] == "77"
