"""Decoding settings of a trained model, scored on a validation set: WER for a grid of CTC weight, beam and
length penalty (greedy and joint search through gradremedy's own Recognizer)."""

import dataclasses
import sys

from gradremedy.data import load_audio, read_data_dir
from gradremedy.data.wer import error_counts
from gradremedy.evaluate.run import Recognizer

exp, data = sys.argv[1], sys.argv[2]
rec = Recognizer(exp, checkpoint="average")
dd = read_data_dir(data)
utts = list(dd.utterances)[: int(sys.argv[3]) if len(sys.argv) > 3 else None]
audio = {u.utt_id: load_audio(u.wav, rec.sample_rate) for u in utts}
order = sorted(utts, key=lambda u: len(audio[u.utt_id]))
base = rec.decode_cfg
for ctc in (0.3, 0.5, 0.7, 0.9):
    for beam in (5, 10):
        for lp in (0.0, 0.5, 1.0):
            rec.decode_cfg = dataclasses.replace(base, ctc_weight=ctc, length_penalty=lp)
            rec.beam = beam
            words = errors = 0
            for i in range(0, len(order), 8):
                chunk = order[i : i + 8]
                hyps = rec.recognize([audio[u.utt_id] for u in chunk])
                for u, h in zip(chunk, hyps):
                    c = error_counts(u.text, h)
                    words += c.reference_length
                    errors += c.errors
            print(f"ctc {ctc} beam {beam} lp {lp}: WER {100 * errors / words:.2f}", flush=True)
