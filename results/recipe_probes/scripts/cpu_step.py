"""CPU time per training step of several tiny variants, measured side by side (alternating steps, one
torch thread, batch 16 of 1.6-4 s random audio at 8 kHz; the thread's CPU time, not elapsed time)."""

import statistics
import sys
import time
from types import SimpleNamespace

import torch

sys.path.insert(0, "/work/wt/recipe/benchmarks")
from gradremedy.config import load_config
from gradremedy.train import loop
from step_speed import random_batches

torch.set_num_threads(1)
VARIANTS = {
    "asr_only": ["surgery.method=asr_only"],
    "sum_blstm": ["surgery.method=sum"],
    "gr_blstm": ["surgery.method=gr"],
    "sum_tcn": [
        "surgery.method=sum",
        "model.enhancer.kind=mask_tcn",
        "model.enhancer.lstm_layers=3",
        "model.enhancer.lstm_units=896",
    ],
    "gr_tcn": [
        "surgery.method=gr",
        "model.enhancer.kind=mask_tcn",
        "model.enhancer.lstm_layers=3",
        "model.enhancer.lstm_units=896",
    ],
    "asr_only_vn": ["surgery.method=asr_only", "model.frontend.normalize_variance=true"],
    "sum_tcn_vn": [
        "surgery.method=sum",
        "model.enhancer.kind=mask_tcn",
        "model.enhancer.lstm_layers=3",
        "model.enhancer.lstm_units=896",
        "model.frontend.normalize_variance=true",
    ],
    "gr_tcn_vn": [
        "surgery.method=gr",
        "model.enhancer.kind=mask_tcn",
        "model.enhancer.lstm_layers=3",
        "model.enhancer.lstm_units=896",
        "model.frontend.normalize_variance=true",
    ],
    "asr_only_specaug": [
        "surgery.method=asr_only",
        "model.frontend.specaugment=true",
        "model.frontend.freq_mask_width=8",
        "model.frontend.time_mask_width=10",
    ],
}
names = sys.argv[2].split(",") if len(sys.argv) > 2 else list(VARIANTS)
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
runs = {}
for n in names:
    cfg = load_config("/work/wt/recipe/configs/tiny.yaml", VARIANTS[n])
    tok = SimpleNamespace(vocab_size=cfg.tokenizer.vocab_size + 2)
    torch.manual_seed(1)
    runs[n] = (loop.build_run(cfg, tok, torch.device("cpu"), rank=0, world_size=1), cfg)
cfg0 = runs[names[0]][1]
batches = random_batches(cfg0, cfg0.tokenizer.vocab_size + 2, 4, 16, 4.0, 2.0)
times = {n: [] for n in names}
for step in range(steps + 3):
    order = names if step % 2 == 0 else names[::-1]
    for n in order:
        b = batches[step % len(batches)]
        t0 = time.thread_time()
        loop.forward_backward(runs[n][0], b, 1)
        loop.optimizer_step(runs[n][0])
        if step >= 3:
            times[n].append(time.thread_time() - t0)
for n in names:
    print(f"{n}: median {statistics.median(times[n]) * 1000:.0f} ms CPU/step over {len(times[n])} steps")
