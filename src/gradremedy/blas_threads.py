"""One OpenBLAS thread for the command line, unless the user set ``OPENBLAS_NUM_THREADS`` themselves.

Imported by :mod:`gradremedy.cli` before anything loads numpy (OpenBLAS reads the variable once, when it
loads). The command line's numpy work (audio, STOI, mixing) is on small arrays, where extra BLAS threads
only spin against torch's threads and the scoring workers: two ``gradremedy eval`` runs side by side, as
``compare`` and the demo run them, took 28-29 s each with OpenBLAS's default of one thread per core, and
10 s each with one thread (2-core machine, the same hypotheses and scores). Child processes inherit it.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
