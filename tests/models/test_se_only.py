"""SE-only utterances (a clean reference, no transcript): they train the SE loss and nothing else."""

from __future__ import annotations

import pytest
import torch

from gradremedy.models import JointModel
from gradremedy.surgery import GradientEngine, build_method

from .helpers import VOCAB, random_batch, small_model_config


def _model() -> JointModel:
    torch.manual_seed(0)
    model = JointModel(small_model_config(), VOCAB)
    return model.eval()  # running batch-norm statistics: no utterance changes another's output


def _batches() -> tuple[dict, dict]:
    """(two transcribed utterances, the same two plus an SE-only one, no longer than them)."""
    torch.manual_seed(1)
    both = random_batch([8000, 6400, 7200], [5, 4, 3])
    with_se = dict(both, has_text=torch.tensor([True, True, False]))
    with_se["tokens"] = both["tokens"].clone()
    with_se["tokens"][2] = -1
    with_se["token_lens"] = torch.tensor([5, 4, 0])
    transcribed = {k: v[:2] for k, v in both.items()}
    transcribed["noisy"], transcribed["clean"] = both["noisy"][:2], both["clean"][:2]
    return transcribed, with_se


def _grads(model: JointModel, loss: torch.Tensor) -> list[torch.Tensor]:
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def test_an_se_only_utterance_changes_no_asr_loss_accuracy_or_gradient() -> None:
    model = _model()
    transcribed, with_se = _batches()
    plain, mixed = model(**transcribed), model(**with_se)
    for name in ("ctc", "att", "asr", "main", "acc"):
        assert torch.allclose(mixed[name], plain[name], rtol=1e-5, atol=1e-6), name
    for a, b in zip(_grads(model, plain["main"]), _grads(model, mixed["main"])):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)


def test_the_se_loss_still_sees_the_se_only_utterance() -> None:
    model = _model()
    transcribed, with_se = _batches()
    per_utt = model(**with_se, reduction="none")
    assert per_utt["ctc"][2] == 0 and per_utt["att"][2] == 0 and per_utt["acc"][2] == 0
    assert per_utt["se"][2] > 0
    mean = model(**with_se)["se"]
    assert torch.allclose(mean, per_utt["se"].mean(), rtol=1e-5)
    assert not torch.allclose(mean, model(**transcribed)["se"])
    # The SE-only utterance's own SE loss reaches the enhancer.
    alone = model(**{k: v[2:] for k, v in with_se.items()})
    assert any(g.abs().sum() > 0 for g in _grads(model, alone["aux"]))


@pytest.mark.parametrize("method", ["sum", "gr"])
def test_a_batch_without_any_transcript_trains_the_se_task_alone(method: str) -> None:
    model = _model()
    _, with_se = _batches()
    se_only = {k: v[2:] for k, v in with_se.items()}
    se_only["tokens"] = se_only["tokens"][:, :0]  # (1, 0): what collate gives a batch without tokens
    losses = model(**se_only)
    assert float(losses["main"].detach()) == 0.0
    assert all(float(g.abs().sum()) == 0.0 for g in _grads(model, losses["main"]))
    expected = _grads(model, losses["aux"])
    engine = GradientEngine(model.parameters(), model.shared_parameters(), build_method(method))
    engine.backward(losses["main"], losses["aux"])
    engine.combine()
    params = [p for p in model.parameters() if p.requires_grad]
    for p, g in zip(params, expected):
        got = torch.zeros_like(p) if p.grad is None else p.grad
        assert torch.isfinite(got).all()
        assert torch.allclose(got, g, rtol=1e-5, atol=1e-8)
