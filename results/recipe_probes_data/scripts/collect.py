"""Collect the probes of /work/probes2 into results.csv and results.json (run from this folder)."""

import csv
import json
from pathlib import Path

P = Path("/work/probes2")
DIAG = {
    "cont_slt": "eval_diag_cont_slt.json",
    "cont_kal16": "eval_diag_cont_kal16.json",
    "isolated_slt": "eval_diag_rvstyle_slt_clean.json",
    "isolated_kal16": "eval_diag_rvstyle_kal16_clean.json",
}


def wer(path: Path):
    return round(json.loads(path.read_text())["wer"], 1) if path.exists() else None


rows = []
for cmd in sorted(P.glob("*.cmd")):
    name, d = cmd.stem, P / cmd.stem
    valid = list(csv.DictReader((d / "logs" / "valid.csv").open()))
    user, system, _ = (P / f"{name}.time").read_text().split()
    steps = int(valid[-1]["step"])
    corpus = cmd.read_text().split("--data ")[1].split()[0]
    own = d / "eval_owntest.json"
    # the s_* probes (TEST=$DATA/test) scored eval_test.json on the probe's own corpus
    own_in_eval_test = corpus != "/work/demo-final/data" and not own.exists()
    row = {
        "probe": name,
        "command": cmd.read_text().strip(),
        "commit": (P / f"{name}.commit").read_text().strip(),
        "seed": 1,
        "corpus": corpus,
        "steps": steps,
        "valid_wer_greedy": round(100 * float(valid[-1]["wer"]), 1),
        # the 4,800-utterance corpus's test set; for the larger corpora its voices are among their
        # training voices (speakers are drawn in order), so their own test set is the fair one
        "test_wer_demo_corpus": None if own_in_eval_test else wer(d / "eval_test.json"),
        "test_wer_own_corpus": wer(own) if own.exists() else wer(d / "eval_test.json"),
        "real_voice_clean_wer": wer(d / "eval_rv_clean.json"),
        "real_voice_noisy_wer": wer(d / "eval_rv_noisy.json"),
        **{f"{k}_wer": wer(d / v) for k, v in DIAG.items()},
        "cpu_s_per_step": round((float(user) + float(system)) / steps, 3),
    }
    rows.append(row)
with open("../results.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
Path("../results.json").write_text(json.dumps(rows, indent=1) + "\n")
print(f"{len(rows)} probes")
