"""The joint model: named losses, their arithmetic, padding invariance, shared parameters, asr_only,
inference helpers and a quick overfitting check."""

from __future__ import annotations

import pytest
import torch

from gradremedy.config import EnhancerConfig
from gradremedy.models import ENHANCERS, JointModel

from .helpers import VOCAB, random_batch, select, small_model_config

LOSS_KEYS = {"se", "ctc", "att", "asr", "main", "aux", "loss", "acc"}


def trained_statistics_model(use_enhancer: bool = True) -> JointModel:
    """A small model in eval mode whose SE normalisation statistics have been filled."""
    model = JointModel(small_model_config(), VOCAB, use_enhancer=use_enhancer)
    model.train()
    if model.enhancer is not None:
        model.enhancer(torch.randn(3, 8000), torch.tensor([8000, 6000, 4000]))
    return model.eval()


def test_forward_returns_scalar_named_losses_that_combine_as_specified() -> None:
    model = JointModel(small_model_config(ctc_weight=0.4, se_weight=0.25), VOCAB).train()
    losses = model(**random_batch([8000, 6000, 5000], [5, 3, 4]))
    assert set(losses) == LOSS_KEYS
    assert all(value.shape == () for value in losses.values())
    assert torch.allclose(losses["asr"], 0.4 * losses["ctc"] + 0.6 * losses["att"])
    assert torch.allclose(losses["main"], 0.75 * losses["asr"])
    assert torch.allclose(losses["aux"], 0.25 * losses["se"])
    assert torch.allclose(losses["loss"], losses["main"] + losses["aux"])
    assert not losses["acc"].requires_grad and 0.0 <= float(losses["acc"]) <= 1.0


def test_mean_losses_are_per_utterance_sums_over_the_batch_size() -> None:
    model = trained_statistics_model()
    batch = random_batch([8000, 6000, 5000], [5, 3, 4])
    batch["has_clean"] = torch.tensor([True, False, True])
    with torch.no_grad():
        mean, per_utterance = model(**batch), model(**batch, reduction="none")
    assert per_utterance["ctc"].shape == (3,)
    assert torch.allclose(mean["ctc"], per_utterance["ctc"].sum() / 3)
    assert torch.allclose(mean["att"], per_utterance["att"].sum() / 3)
    assert float(per_utterance["se"][1]) == 0.0  # no reference, no SE loss
    assert torch.allclose(mean["se"], (per_utterance["se"][0] + per_utterance["se"][2]) / 2)


def test_se_loss_without_any_reference_is_a_connected_zero() -> None:
    model = JointModel(small_model_config(), VOCAB).train()
    batch = random_batch([6000, 5000], [3, 2])
    for kwargs in ({"has_clean": torch.tensor([False, False])}, {"clean": None, "has_clean": None}):
        losses = model(**{**batch, **kwargs})
        assert float(losses["se"].detach()) == 0.0 and float(losses["aux"].detach()) == 0.0
        gradients = torch.autograd.grad(losses["aux"], model.shared_parameters(), allow_unused=True)
        assert all(g is not None and torch.count_nonzero(g) == 0 for g in gradients)


def test_per_utterance_results_do_not_depend_on_padding() -> None:
    model = trained_statistics_model()
    batch = random_batch([9000, 4321, 6500], [6, 2, 4])
    with torch.no_grad():
        batched = model(**batch, reduction="none")
        batched_enc, batched_enc_lens = model.encode(batch["noisy"], batch["noisy_lens"])
        for index in range(3):
            utterance = select(batch, index)
            alone = model(**utterance, reduction="none")
            for key in ("se", "ctc", "att", "asr", "acc"):
                assert torch.allclose(batched[key][index], alone[key][0], rtol=1e-5, atol=1e-5), key
            enc, enc_lens = model.encode(utterance["noisy"], utterance["noisy_lens"])
            assert int(enc_lens[0]) == int(batched_enc_lens[index]) == enc.shape[1]
            assert torch.allclose(batched_enc[index, : enc.shape[1]], enc[0], atol=1e-5)
            prefix = torch.tensor([[VOCAB - 1, 3, 5]])
            alone_next = model.decoder_log_probs(prefix, enc, enc_lens)
            batched_next = model.decoder_log_probs(
                prefix, batched_enc[index : index + 1], batched_enc_lens[index : index + 1]
            )
            assert torch.allclose(alone_next, batched_next, atol=1e-5)


def test_inference_helpers_have_the_contract_shapes() -> None:
    model = trained_statistics_model()
    noisy, lengths = torch.randn(2, 7000), torch.tensor([7000, 5000])
    with torch.no_grad():
        enhanced, enhanced_lens = model.enhance(noisy, lengths)
        enc, enc_lens = model.encode(noisy, lengths)
        ctc = model.ctc_log_probs(enc)
        next_token = model.decoder_log_probs(torch.tensor([[VOCAB - 1], [VOCAB - 1]]), enc, enc_lens)
    assert enhanced.shape == noisy.shape and torch.equal(enhanced_lens, lengths)
    assert enc.shape == (2, int(enc_lens.max()), 32)
    assert ctc.shape == (2, enc.shape[1], VOCAB)
    assert torch.allclose(ctc.exp().sum(-1), torch.ones(2, enc.shape[1]), atol=1e-5)
    assert next_token.shape == (2, VOCAB)
    assert torch.allclose(next_token.exp().sum(-1), torch.ones(2), atol=1e-5)
    assert model.vocab_size == VOCAB and model.sample_rate == 16000


@pytest.mark.parametrize("use_enhancer", [True, False])
def test_forward_can_return_the_ctc_log_probs_that_encode_gives(use_enhancer: bool) -> None:
    model = trained_statistics_model(use_enhancer)
    batch = random_batch([8000, 6000, 5000], [5, 3, 4])
    with torch.no_grad():
        plain = model(**batch)
        outputs = model(**batch, return_ctc_log_probs=True)
        enc, enc_lens = model.encode(batch["noisy"], batch["noisy_lens"])
        expected = model.ctc_log_probs(enc)
    assert set(plain) == LOSS_KEYS and set(outputs) == LOSS_KEYS | {"ctc_log_probs", "enc_lens"}
    assert all(torch.equal(plain[key], outputs[key]) for key in LOSS_KEYS)
    assert torch.equal(outputs["enc_lens"], enc_lens)
    assert torch.allclose(outputs["ctc_log_probs"], expected, atol=1e-6)


def test_decoder_log_probs_agree_with_the_training_forward() -> None:
    model = trained_statistics_model()
    batch = random_batch([6000], [4])
    with torch.no_grad():
        enc, enc_lens = model.encode(batch["noisy"], batch["noisy_lens"])
        decoder_in, target = model._decoder_io(batch["tokens"], batch["token_lens"])
        logits = model.decoder(decoder_in, batch["token_lens"] + 1, enc, enc_lens)  # (1, U + 1, V)
        for length in range(1, 6):
            step = model.decoder_log_probs(decoder_in[:, :length], enc, enc_lens)
            assert torch.allclose(step, torch.log_softmax(logits[:, length - 1], dim=-1), atol=1e-5)
    assert decoder_in[0, 0] == VOCAB - 1 and target[0, 4] == VOCAB - 1  # sos in front, eos at the end
    assert torch.equal(decoder_in[0, 1:], batch["tokens"][0]) and torch.equal(
        target[0, :4], batch["tokens"][0]
    )


@pytest.mark.parametrize("kind", ["mask_blstm", "mask_tcn"])
def test_shared_parameters_are_exactly_the_enhancer_and_receive_both_gradients(kind: str) -> None:
    cfg = small_model_config()
    if kind != "mask_blstm":
        cfg.enhancer = EnhancerConfig(kind=kind, n_fft=256, hop_length=128, dropout=0.0, tcn_channels=16)
    model = JointModel(cfg, VOCAB).train()
    assert type(model.enhancer) is ENHANCERS[kind]
    shared = model.shared_parameters()
    assert {id(p) for p in shared} == {id(p) for p in model.enhancer.parameters()}
    others = [p for p in model.parameters() if id(p) not in {id(q) for q in shared}]
    assert len(shared) > 0 and len(others) > 0

    losses = model(**random_batch([8000, 6000], [4, 3]))
    asr_on_shared = torch.autograd.grad(losses["main"], shared, retain_graph=True, allow_unused=True)
    assert all(g is not None for g in asr_on_shared) and any(
        torch.count_nonzero(g) > 0 for g in asr_on_shared
    )
    se_on_shared = torch.autograd.grad(losses["aux"], shared, retain_graph=True, allow_unused=True)
    assert all(g is not None for g in se_on_shared) and any(torch.count_nonzero(g) > 0 for g in se_on_shared)
    se_on_others = torch.autograd.grad(losses["aux"], others, allow_unused=True)
    assert all(g is None or torch.count_nonzero(g) == 0 for g in se_on_others)


def test_asr_only_has_no_enhancer_and_a_zero_se_loss() -> None:
    model = JointModel(small_model_config(), VOCAB, use_enhancer=False).train()
    assert model.enhancer is None and model.shared_parameters() == []
    assert model.parameter_counts()["enhancer"] == 0
    batch = random_batch([6000, 5000], [3, 2])
    losses = model(**batch)
    assert float(losses["se"].detach()) == 0.0 and torch.allclose(losses["loss"], losses["main"])
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    enhanced, _ = model.enhance(batch["noisy"], batch["noisy_lens"])
    assert torch.equal(enhanced, batch["noisy"])


def test_too_short_utterances_and_bad_settings_are_refused() -> None:
    model = JointModel(small_model_config(), VOCAB).eval()
    with pytest.raises(ValueError, match="samples"):
        model.encode(torch.randn(1, 500), torch.tensor([500]))
    with pytest.raises(ValueError, match="ctc_weight"):
        JointModel(small_model_config(ctc_weight=1.5), VOCAB)
    with pytest.raises(ValueError, match="vocab_size"):
        JointModel(small_model_config(), 2)


def test_small_model_overfits_a_few_fixed_utterances() -> None:
    torch.manual_seed(0)
    model = JointModel(small_model_config(), VOCAB).train()
    batch = random_batch([4800, 4000, 3600, 3200], [4, 3, 4, 2])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(50):
        optimizer.zero_grad()
        losses = model(**batch)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        history.append({key: float(value.detach()) for key, value in losses.items()})
    assert history[-1]["asr"] < 0.3 * history[0]["asr"]
    assert history[-1]["se"] < history[0]["se"]
    assert history[-1]["acc"] > 0.9


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_forward_and_backward_under_cpu_autocast(dtype: torch.dtype) -> None:
    model = JointModel(small_model_config(), VOCAB).train()
    batch = random_batch([8000, 6000], [4, 3])
    batch["noisy"] = batch["noisy"] * 30.0  # loud: a float16 power spectrum would overflow
    with torch.autocast("cpu", dtype=dtype):
        losses = model(**batch)
    losses["loss"].backward()
    assert all(torch.isfinite(value) for value in losses.values())
    assert all(p.grad is not None for p in model.shared_parameters())
    if dtype == torch.bfloat16:  # float16 gradients may overflow without a loss scaler, which is its job
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.gpu
def test_model_on_cuda_matches_cpu_and_runs_under_bf16(device: torch.device) -> None:
    device = device if device.type == "cuda" else torch.device("cuda")
    model = trained_statistics_model()
    batch = random_batch([9000, 4321, 6500], [6, 2, 4])
    with torch.no_grad():
        on_cpu = model(**batch, reduction="none")
        model.to(device)
        on_device = model(**{key: value.to(device) for key, value in batch.items()}, reduction="none")
    for key in ("se", "ctc", "att"):
        assert torch.allclose(on_device[key].cpu(), on_cpu[key], rtol=1e-3, atol=1e-3), key
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        losses = model(**{key: value.to(device) for key, value in batch.items()})
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and all(
        p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters()
    )
