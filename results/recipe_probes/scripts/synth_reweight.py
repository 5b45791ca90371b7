"""The tiny corpus with the engines weighted espeak 0.2, flite 0.4, festival 0.4 (default 0.5/0.3/0.2)."""

import sys
import time

from gradremedy.data.synth import corpus, synthesize_corpus

corpus._ENGINE_WEIGHTS = {"espeak": 0.2, "flite": 0.4, "festival": 0.4}
t = time.time()
synthesize_corpus(sys.argv[1], preset="tiny", seed=1, jobs=2)
print(f"corpus in {time.time() - t:.0f} s")
