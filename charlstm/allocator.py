"""TensorFlow's pooling CPU allocator for a training process, asked for before its first op.

By default TensorFlow 2.21 takes a CPU tensor's memory from glibc's malloc and gives it back at
once, except where its oneDNN optimizations are on (its default on CPUs with AVX-512), whose
CPU allocator keeps a pool of its own (1,636 faults a step at 2 x 256 on an AMD EPYC Zen 4,
against 30,000 on malloc and 32-156 with the variable below). A training step makes and frees
tensors of tens of megabytes (one layer's gates over a window: T x B x 4H floats, 26 MB at 2 x
256, B 64, T 100; 52 MB at 2 x 512), which malloc maps fresh from the kernel and unmaps again,
so every step faults its working memory in anew, page by page (thousands to about 100,000
faults a step on a 2-core AMD EPYC, Zen 3: docs/results.md#memory-pages).
TensorFlow's BFC allocator, which the variable TF_CPU_ALLOCATOR_USE_BFC=true selects, keeps
the memory it has mapped and hands it out again: no faults after the first steps.

`pool()` sets that variable unless it is set already (the user's choice wins, e.g.
TF_CPU_ALLOCATOR_USE_BFC=false). TensorFlow reads it once, when it makes its CPU device at
the process' first op; so `charlstm.trainer.train` calls `pool()` first, and it takes effect
where nothing in the process has run a TensorFlow op before (the `charlstm` command, a fresh
notebook), else it changes nothing. `pooled()` says whether the process' CPU allocator pools.
"""

from __future__ import annotations

import os

VARIABLE = "TF_CPU_ALLOCATOR_USE_BFC"


def pool() -> None:
    """Ask TensorFlow for its pooling (BFC) CPU allocator, unless the user chose already."""
    os.environ.setdefault(VARIABLE, "true")


def pooled() -> bool:
    """Whether this process' TensorFlow CPU allocator is the pooling one (makes the CPU device
    if no op has yet). Only a pooling allocator keeps the statistics asked for here."""
    import tensorflow as tf  # noqa: PLC0415 (the variable must be set before this import's first op)

    try:
        tf.config.experimental.get_memory_info("CPU:0")
    except ValueError:  # "Allocator stats not available for device 'CPU:0'"
        return False
    return True
