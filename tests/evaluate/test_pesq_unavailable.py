"""Where the pesq package cannot be imported (it is built from source), PESQ is reported unavailable with
the reason and the other scores are still computed."""

from __future__ import annotations

import numpy as np
import pytest

from gradremedy.evaluate import enhancement, metrics


def test_eval_goes_on_without_pesq(monkeypatch) -> None:
    reason = "PESQ unavailable: the pesq package cannot be imported (No module named 'pesq')"
    monkeypatch.setattr(metrics, "_pesq", None)
    monkeypatch.setattr(metrics, "PESQ_UNAVAILABLE", reason)
    with pytest.raises(RuntimeError, match="PESQ unavailable: the pesq package cannot be imported"):
        metrics.pesq_score(np.zeros(8000, np.float32), np.zeros(8000, np.float32), 16000)
    rng = np.random.default_rng(0)
    clean = rng.standard_normal(16000).astype(np.float32)
    noisy = clean + 0.3 * rng.standard_normal(16000).astype(np.float32)
    scores, failures = enhancement._enhancement_scores(clean, noisy, clean.copy(), 16000, "utt1")
    assert "pesq" not in scores and {"stoi", "stoi_noisy", "si_snr", "si_snr_noisy"} <= set(scores)
    assert any("PESQ unavailable" in failure for failure in failures)
