"""oneDNN's kernel cache, made large enough for batches of changing lengths.

oneDNN keeps 1,024 compiled kernels ("primitives") by default, one per operation and input shape. On the
CPU the convolutions run through oneDNN, and in bf16 the matrix products too. A training run or a test set
brings a few hundred batch lengths, each with its own kernels for every layer, forward and backward: past
1,024 kernels oneDNN compiles them over and over. bf16 then trained slower than float32, float32 lost 5 %
a training step, and ``gradremedy eval`` about 10 % (benchmarks/RESULTS.md). oneDNN reads the capacity
when it first runs, so :func:`enlarge_onednn_cache` takes effect only in a process that has not run a
oneDNN operation yet; a value the user set is kept.
"""

import os

ONEDNN_CACHE_VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
ONEDNN_CACHE_CAPACITY = 16384


def enlarge_onednn_cache() -> None:
    """Raise oneDNN's kernel cache to :data:`ONEDNN_CACHE_CAPACITY` unless the environment sets it."""
    os.environ.setdefault(ONEDNN_CACHE_VARIABLE, str(ONEDNN_CACHE_CAPACITY))
