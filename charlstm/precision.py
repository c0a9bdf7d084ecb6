"""Mixed precision: the dtype the matrix products run in, chosen from the CPU, and the products.

    float32:   every product in float32.
    bfloat16:  a @ b = float32(bfloat16(a) @ bfloat16(b))

In bfloat16 the operands are rounded to bfloat16 (8 bits of mantissa, float32's exponent), the
product is summed in float32 inside oneDNN's kernel (AVX512-BF16's vdpbf16ps, or AMX) and
rounded to bfloat16 once, then widened back. Everything else stays float32: the variables and
Adam's moments, the cell state c and the gate nonlinearities, the softmax and the loss. The
gradient of a product is two products through the same casts (dA = dY @ B^T, dB = A^T @ dY),
so the weight gradients run in bfloat16 too, and each lands in float32 variables.

On a GPU "auto" asks the GPU instead of the CPU: bfloat16 where it has bfloat16 tensor cores
(compute capability 8.0 on), the split Keras' "mixed_bfloat16" policy makes (float32
variables, bfloat16 products); the step is compiled as on a CPU. Not yet run on a GPU.

XLA on CPU emulates bfloat16 dots (slower than its float32 ones), so a bfloat16 step runs as a
TensorFlow graph, where oneDNN does the products natively, with the recurrent loops alone
compiled by XLA (`charlstm.fused`); a float32 step is one XLA computation (`jit_compile`).
"""

from __future__ import annotations

import platform
from pathlib import Path

import tensorflow as tf

from charlstm.config import PRECISIONS

# a CPU flag (as /proc/cpuinfo spells it) that gives native bfloat16 products
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# NVIDIA GPUs have bfloat16 tensor cores from Ampere (compute capability 8.0) on
GPU_BF16_CAPABILITY = (8, 0)

Flags = frozenset[str]  # CPU flags, as /proc/cpuinfo spells them
Capabilities = tuple[tuple[int, int], ...]  # each GPU's CUDA compute capability


def cpu_flags() -> Flags:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_capabilities() -> Capabilities:
    """The CUDA compute capability of each GPU TensorFlow sees; () on a machine without one."""
    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        found.append(tuple(capability) if capability else (0, 0))
    return tuple(found)


def resolve(precision: str, cell: str = "lstm", flags: Flags | None = None,
            gpus: Capabilities | None = None) -> str:  # fmt: skip
    """ "float32" or "bfloat16" for a requested precision and ModelConfig.cell.

    "auto" follows the device the products run on: with GPUs (`gpus`, their compute
    capabilities, default: `gpu_capabilities()`), bfloat16 where every one has bfloat16
    tensor cores (GPU_BF16_CAPABILITY); without, bfloat16 where the CPU has one of BF16_FLAGS
    (`flags`, default: this CPU's). Elsewhere float32. The layer-norm cell is float32 only:
    its loop's gradient is autodiff's, which needs the whole step in XLA."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if cell != "lstm":
        return "float32"
    if precision != "auto":
        return precision
    gpus = gpu_capabilities() if gpus is None else gpus
    if gpus:
        return "bfloat16" if min(gpus) >= GPU_BF16_CAPABILITY else "float32"
    flags = cpu_flags() if flags is None else flags
    return "bfloat16" if any(flag in flags for flag in BF16_FLAGS) else "float32"


def explain(precision: str, cell: str = "lstm", flags: Flags | None = None,
            gpus: Capabilities | None = None) -> str:  # fmt: skip
    """One line saying which precision runs and why, for the start of a command."""
    flags = cpu_flags() if flags is None else flags
    gpus = gpu_capabilities() if gpus is None else gpus
    chosen = resolve(precision, cell, flags, gpus)
    if cell != "lstm":
        why = f"the {cell} cell runs in float32 only"
    elif precision != "auto":
        why = "as asked"
    elif gpus:
        names = ", ".join(f"{major}.{minor}" for major, minor in gpus)
        cores = "bfloat16" if chosen == "bfloat16" else "no bfloat16"
        why = f"auto: GPU compute capability {names}: {cores} tensor cores"
    else:
        have = [flag for flag in BF16_FLAGS if flag in flags]
        why = "auto: the CPU has " + (", ".join(have) if have else "no bfloat16 products")
    return f"precision: {chosen} ({why})"


def matmul(a, b, dtype: str = "float32", transpose_a: bool = False):
    """a @ b (a^T @ b with transpose_a), float32 in and out, its product in `dtype` (module
    docstring). a: (..., K) or with transpose_a (K, M); b: (K, N)."""
    if dtype != "float32":
        a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    if a.shape.rank > 2:  # (..., K) as one (N, K) product: oneDNN's 2-D kernel, not a batched one
        flat = tf.matmul(tf.reshape(a, (-1, a.shape[-1])), b)
        product = tf.reshape(flat, tf.concat([tf.shape(a)[:-1], tf.shape(b)[-1:]], axis=0))
    else:
        product = tf.matmul(a, b, transpose_a=transpose_a)
    return product if dtype == "float32" else tf.cast(product, tf.float32)


def compile_step(step, model):
    """`step` as a compiled TensorFlow function for `model`'s products and loops: one XLA
    computation for float32 products and the XLA loops; a graph for bfloat16 products, so that
    oneDNN runs them (module docstring), and for the compiled kernel (`charlstm.kernel`),
    whose ops XLA cannot take in."""
    xla = model.matmul_dtype == "float32" and getattr(model, "kernel", "xla") == "xla"
    return tf.function(step, jit_compile=xla)
