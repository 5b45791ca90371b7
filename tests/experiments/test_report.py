"""results.json, report.md and plots built from fabricated runs."""

from __future__ import annotations

import json
import statistics

import matplotlib.image
import numpy as np
import pytest

from gradremedy.errors import UserError
from gradremedy.experiments.report import build_results, format_table, load_run, render_report, write_report

from .conftest import corrupt, make_references, write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def references():
    return make_references(120)


def _runs(tmp_path, references, rates, seeds=(1, 2, 3), **kwargs):
    runs = []
    for method, rate in rates.items():
        for seed in seeds:
            exp = tmp_path / "runs" / method / f"seed{seed}"
            hyps = corrupt(references, rate, seed=100 * seed + len(method))
            write_run(exp, references, hyps, method=method, seed=seed, se=method != "asr_only", **kwargs)
            runs.append(load_run(method, seed, exp, exp / "eval" / "test.json"))
    return runs


def test_results_have_the_documented_shape_and_statistics(tmp_path, references):
    runs = _runs(tmp_path, references, {"asr_only": 0.4, "sum": 0.3, "gr": 0.1})
    results = build_results(runs, references, provenance={"command": "gradremedy compare"}, resamples=500)
    assert results["baseline"] == "sum"
    assert results["provenance"]["command"] == "gradremedy compare"
    assert set(results["methods"]) == {"asr_only", "sum", "gr"}
    for method in ("asr_only", "sum", "gr"):
        entry = results["methods"][method]
        per_seed = entry["wer"]["per_seed"]
        assert set(per_seed) == {"1", "2", "3"}
        eval_files = [tmp_path / "runs" / method / f"seed{s}" / "eval" / "test.json" for s in (1, 2, 3)]
        expected = [json.loads(f.read_text())["wer"] for f in eval_files]
        assert [per_seed[s] for s in ("1", "2", "3")] == pytest.approx(expected)
        assert entry["wer"]["mean"] == pytest.approx(statistics.fmean(expected))
        assert entry["wer"]["std"] == pytest.approx(statistics.stdev(expected))
        assert set(entry["cer"]) >= {"mean", "std", "per_seed"}
        assert set(entry["by_condition"]) == {"white", "babble"}
        assert set(entry["by_condition"]["white"]) >= {"mean", "std"}
        assert list(entry["by_snr"]) == ["-5..0", "0..5", "5..10"]  # numeric order
    sum_wer = results["methods"]["sum"]["wer"]["mean"]
    gr = results["methods"]["gr"]
    assert gr["relative_wer_vs_sum"] == pytest.approx(100 * (gr["wer"]["mean"] - sum_wer) / sum_wer)
    assert gr["relative_wer_vs_sum"] < -30
    assert gr["p_value_vs_sum"] < 0.01  # 10 % vs 30 % word errors over 360 utterance-seeds
    assert results["methods"]["asr_only"]["p_value_vs_sum"] > 0.99  # worse than sum
    assert results["methods"]["sum"]["relative_wer_vs_sum"] == 0.0
    assert results["methods"]["sum"]["p_value_vs_sum"] is None
    bootstrap = gr["significance_vs_sum"]["bootstrap"]
    assert bootstrap["resamples"] == 500 and bootstrap["seeds_pooled"] == [1, 2, 3]
    assert bootstrap["num_utts"] == len(references)
    sign = gr["significance_vs_sum"]["sign_test"]
    assert (sign["wins"], sign["p_value"]) == (3, pytest.approx(0.125))
    assert set(gr["se"]) == {"pesq", "stoi", "si_snr", "si_snr_improvement"}
    assert gr["se"]["pesq"]["mean"] == pytest.approx(statistics.fmean([2.1, 2.2, 2.3]))
    assert results["methods"]["asr_only"]["se"] == {}
    assert results["noisy_input"]["si_snr"]["mean"] == pytest.approx(4.0)  # seeds 1-3 of sum and gr
    assert gr["diagnostics"]["rescale_rate"] is not None
    logged = [r.train_log["norm_ratio_median"] for r in runs if r.method == "gr"]
    assert gr["diagnostics"]["norm_ratio_median"] == pytest.approx(statistics.median(np.concatenate(logged)))
    assert "rescale_rate" not in results["methods"]["sum"]["diagnostics"]  # blank column in sum's log
    assert gr["runs"]["2"]["git_commit"] == "0123456789abcdef"
    json.dumps(results, allow_nan=False)


def test_identical_methods_are_not_reported_as_different(tmp_path, references):
    hyps = corrupt(references, 0.3, seed=5)
    runs = []
    for method in ("sum", "gr"):
        exp = tmp_path / method
        write_run(exp, references, hyps, method=method, seed=1)
        runs.append(load_run(method, 1, exp, exp / "eval" / "test.json"))
    gr = build_results(runs, references, resamples=300)["methods"]["gr"]
    assert gr["relative_wer_vs_sum"] == 0.0
    assert gr["p_value_vs_sum"] >= 0.5
    assert gr["significance_vs_sum"]["sign_test"] is None  # one seed: no sign test


def test_without_the_baseline_or_hypotheses_the_comparison_fields_are_empty(tmp_path, references):
    runs = _runs(tmp_path, references, {"gr": 0.1, "pcgrad": 0.3}, seeds=(1,))
    results = build_results(runs, references, resamples=100)
    assert all(
        e["relative_wer_vs_sum"] is None and e["p_value_vs_sum"] is None for e in results["methods"].values()
    )
    runs = _runs(tmp_path / "b", references, {"sum": 0.3, "gr": 0.1}, seeds=(1,))
    (tmp_path / "b" / "runs" / "gr" / "seed1" / "eval" / "test.hyp.txt").unlink()
    runs = [load_run(r.method, r.seed, r.exp_dir, r.eval_path) for r in runs]
    gr = build_results(runs, references, resamples=100)["methods"]["gr"]
    assert gr["relative_wer_vs_sum"] is not None and gr["p_value_vs_sum"] is None


def test_report_writes_json_markdown_and_valid_pngs(tmp_path, references):
    runs = _runs(tmp_path, references, {"asr_only": 0.4, "sum": 0.3, "gr": 0.1}, seeds=(1, 2))
    out = tmp_path / "out"
    results = write_report(
        runs, references, out, provenance={"command": "gradremedy compare --x"}, resamples=200
    )
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["methods"]["gr"]["wer"]["mean"] == pytest.approx(results["methods"]["gr"]["wer"]["mean"])
    assert set(on_disk["plots"]) == {
        "wer",
        "wer_by_snr",
        "wer_by_condition",
        "training_curves",
        "gradient_diagnostics",
    }
    report = (out / "report.md").read_text()
    for name, rel in on_disk["plots"].items():
        png = out / rel
        assert png.read_bytes()[:8] == PNG_MAGIC, name
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert f"]({rel})" in report
    assert "| gr |" in report and "paired bootstrap" in report and "200 resamples" in report
    assert "| (noisy input) | 1.50 ± 0.00 |" in report
    assert "gradremedy compare --x" in report
    assert not list(out.rglob("*.tmp"))


def test_plots_cope_with_runs_that_logged_no_diagnostics(tmp_path, references):
    runs = _runs(tmp_path, references, {"asr_only": 0.4, "sum": 0.3}, seeds=(1,), diagnostics=False)
    out = tmp_path / "out"
    results = write_report(runs, references, out, resamples=50)
    assert "gradient_diagnostics" not in results["plots"]
    assert results["methods"]["sum"]["diagnostics"] is None
    assert "No gradient diagnostics were logged." in (out / "report.md").read_text()
    assert (out / "plots" / "training_curves.png").read_bytes()[:8] == PNG_MAGIC


def test_a_run_without_results_is_a_one_line_user_error(tmp_path):
    with pytest.raises(UserError, match="evaluation results not found"):
        load_run("gr", 1, tmp_path, tmp_path / "eval" / "test.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_run("gr", 1, tmp_path, tmp_path / "bad.json")
    with pytest.raises(UserError, match="no finished runs"):
        write_report([], {}, tmp_path)


def test_the_bootstrap_scores_only_utterances_every_run_decoded(tmp_path, references):
    runs = _runs(tmp_path, references, {"sum": 0.3, "gr": 0.1}, seeds=(1,))
    gr_run = next(r for r in runs if r.method == "gr")
    skipped = sorted(references)[:5]  # the evaluator skipped these (e.g. unreadable audio)
    gr_run.hypotheses = {u: h for u, h in gr_run.hypotheses.items() if u not in skipped}
    bootstrap = build_results(runs, references, resamples=100)["methods"]["gr"]["significance_vs_sum"][
        "bootstrap"
    ]
    assert bootstrap["num_utts"] == len(references) - len(skipped)


def test_keys_against_the_baseline_carry_its_name(tmp_path, references):
    runs = _runs(tmp_path, references, {"sum": 0.3, "pcgrad": 0.25, "gr": 0.1}, seeds=(1, 2, 3))
    results = build_results(runs, references, baseline="pcgrad", resamples=100)
    gr = results["methods"]["gr"]
    assert results["baseline"] == "pcgrad"
    assert not [key for key in json.dumps(results).split('"') if key.endswith("_vs_sum")]
    pcgrad_wer = results["methods"]["pcgrad"]["wer"]["mean"]
    assert gr["relative_wer_vs_pcgrad"] == pytest.approx(100 * (gr["wer"]["mean"] - pcgrad_wer) / pcgrad_wer)
    assert gr["p_value_vs_pcgrad"] == gr["significance_vs_pcgrad"]["bootstrap"]["p_value"] < 0.05
    assert results["methods"]["pcgrad"]["p_value_vs_pcgrad"] is None
    assert "relative_vs_pcgrad" in gr["by_snr"]["0..5"]
    table = format_table(results)
    assert "rel. WER vs pcgrad %" in table
    assert f"| gr | {gr['wer']['mean']:.2f} ± " in table and f"{gr['relative_wer_vs_pcgrad']:+.1f}" in table


def test_only_the_logged_diagnostic_names_are_read(tmp_path, references):
    """The median |s|/|a| is read from the column the training loop writes, ``norm_ratio_median``."""
    runs = _runs(tmp_path, references, {"sum": 0.3}, seeds=(1,))
    runs[0].train_log["norm_ratio"] = runs[0].train_log.pop("norm_ratio_median")  # a name nothing writes
    assert (
        "norm_ratio_median"
        not in build_results(runs, references, resamples=10)["methods"]["sum"]["diagnostics"]
    )


def _fabricated_results(real_voice: dict | None) -> dict:
    entry = {
        "wer": {"mean": 20.0, "std": 1.0, "n": 3, "per_seed": {}},
        "cer": {"mean": 10.0, "std": 0.5, "n": 3, "per_seed": {}},
        "relative_wer_vs_sum": None,
        "p_value_vs_sum": None,
        "significance_vs_sum": None,
    }
    methods = {"sum": dict(entry), "gr": dict(entry, relative_wer_vs_sum=-5.0)}
    if real_voice is not None:
        methods["gr"]["real_voice"] = real_voice
    return {"methods": methods, "baseline": "sum", "seeds": [1, 2, 3], "significance": {}, "provenance": {}}


def test_the_real_voice_column_appears_only_with_real_voice_results():
    plain = format_table(_fabricated_results(None))
    assert "real voice" not in plain and plain.splitlines()[0].count("|") == 8
    results = _fabricated_results({"clean": {"wer": 31.25}, "noisy": {"wer": 58.5}})
    table = format_table(results).splitlines()
    assert table[0].endswith("| real voice WER % (clean / noisy) |") and table[1] == "|---" * 8 + "|"
    assert table[2].endswith("| – / – |")  # sum was not measured on real voices
    assert table[3].endswith("| -5.0 | – | – | 31.25 / 58.50 |")
    results["methods"]["sum"]["real_voice"] = {"clean": {"wer": {"mean": 30.0, "std": 2.0, "n": 3}}}
    assert format_table(results).splitlines()[2].endswith("| 30.00 ± 2.00 / – |")
    report = render_report(results, {})
    assert "| 31.25 / 58.50 |" in report and "Real voice: WER on recorded" in report
