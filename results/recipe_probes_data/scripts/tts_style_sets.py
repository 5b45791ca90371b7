"""Two diagnostic sets with training voices (flite slt and kal16) and the real-voice set's texts:

- ``tts_words/<voice>``: every word of the real-voice set spoken alone by the voice, in the file layout of
  Asterisk's prompts, so that ``gradremedy data real-voice --sounds tts_words/<voice>`` builds the
  real-voice set's utterances (same texts, gaps, padding and seed) from that voice's isolated words;
- ``cont_<voice>``: the same 100 texts spoken as continuous sentences by the voice (a Kaldi directory).

Run in /work/probes2 after the real-voice set of the demo exists (its texts are read from
``rvstyle_slt/clean/text``, built first by the command in NOTE.md).
"""

import subprocess
import sys
from pathlib import Path

from gradremedy.data.real_voice import WORD_FILES
from gradremedy.data.synth.text import tts_text

OTHER_PROMPTS = [
    "please hold the line", "your call is important", "goodbye", "thank you for calling",
    "the number you have dialed", "press the pound key", "welcome to the system", "try again later",
]


def words(voice: str) -> None:
    root = Path("tts_words") / voice
    for word, name in WORD_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["flite", "-voice", voice, "-t", tts_text(word), "-o", str(path)], check=True)
    for i, prompt in enumerate(OTHER_PROMPTS):  # babble talkers of the noisy set
        path = root / f"other{i}.wav"
        subprocess.run(["flite", "-voice", voice, "-t", prompt, "-o", str(path)], check=True)


def continuous(voice: str) -> None:
    out = Path(f"cont_{voice}")
    (out / "wav").mkdir(parents=True, exist_ok=True)
    texts = [line.split(None, 1) for line in open("rvstyle_slt/clean/text")]
    wav = []
    for utt, sentence in texts:
        path = (out / "wav" / f"{utt}.wav").resolve()
        spoken = tts_text(sentence.strip())
        subprocess.run(["flite", "-voice", voice, "-t", spoken, "-o", str(path)], check=True)
        wav.append(f"{utt} {path}\n")
    (out / "wav.scp").write_text("".join(wav))
    (out / "utt2spk").write_text("".join(f"{u} allison\n" for u, _ in texts))
    (out / "text").write_text("".join(f"{u} {t.strip()}\n" for u, t in texts))
    (out / "spk2utt").write_text("allison " + " ".join(u for u, _ in texts) + "\n")


if __name__ == "__main__":
    for voice in ("slt", "kal16"):
        (continuous if sys.argv[1:] == ["continuous"] else words)(voice)
