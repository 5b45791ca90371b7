"""Collect every probe in /work/probes into one table (JSON and CSV)."""

import csv
import json
import sys
from pathlib import Path

P = Path("/work/probes")
rows = []


def wer(path):
    try:
        return round(json.loads(Path(path).read_text())["wer"], 1)
    except Exception:
        return None


for cmd in sorted(P.glob("*.cmd")):
    name = cmd.stem
    d = P / name
    row = {
        "probe": name,
        "command": cmd.read_text().strip().replace("/work/main/.venv/bin/python -m gradremedy", "gradremedy"),
        "commit": (P / f"{name}.commit").read_text().strip() if (P / f"{name}.commit").exists() else None,
    }
    run = json.loads((d / "run.json").read_text()) if (d / "run.json").exists() else {}
    row["seed"] = run.get("seed")
    row["steps"] = run.get("steps")
    valid = d / "logs" / "valid.csv"
    if valid.exists():
        rowsv = list(csv.DictReader(valid.open()))
        last = rowsv[-1] if rowsv else {"wer": "nan", "step": 0}
        row["valid_wer_greedy"] = round(100 * float(last["wer"]), 1)
        row["valid_step"] = int(last["step"])
    text = cmd.read_text()
    corpus = "rw" if "data_rw" in text else "hp" if "data_hp" in text else "original"
    row["train_corpus"] = corpus
    own = wer(d / "eval_test.json")
    row["test_wer_original"] = own if corpus == "original" else wer(d / "eval_oldtest.json")
    row["test_wer_hp"] = own if corpus == "hp" else wer(d / "eval_newtest.json")
    row["test_wer_rw"] = own if corpus == "rw" else None
    row["real_voice_clean_wer"] = wer(d / "eval_rv_clean.json")
    row["real_voice_noisy_wer"] = wer(d / "eval_rv_noisy.json")
    t = P / f"{name}.time"
    if (
        t.exists()
        and row["steps"]
        and len(t.read_text().split()) >= 3
        and "resumed" not in text
        and "checkpoints at step" not in text
    ):
        user, system, elapsed = map(float, t.read_text().split()[-3:])
        row["train_cpu_s"] = round(user + system, 1)
        row["cpu_s_per_step"] = round((user + system) / row["steps"], 3)
    rows.append(row)
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
(out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
keys = list(dict.fromkeys(k for r in rows for k in r))
with (out / "results.csv").open("w", newline="") as f:
    w = csv.DictWriter(f, keys)
    w.writeheader()
    w.writerows(rows)
for r in rows:
    print(
        {
            k: r.get(k)
            for k in (
                "probe",
                "steps",
                "valid_wer_greedy",
                "train_corpus",
                "test_wer_original",
                "test_wer_hp",
                "test_wer_rw",
                "real_voice_clean_wer",
                "real_voice_noisy_wer",
                "cpu_s_per_step",
            )
        }
    )
