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

XLA on CPU has emulated bfloat16 dots (slower than its float32 ones), so a bfloat16 step runs
as a TensorFlow graph, where oneDNN does the products natively, with the recurrent loops alone
compiled by XLA (`charlstm.fused`); a float32 step is one XLA computation (`jit_compile`). The
loops' per-step products run in float32 unless this TensorFlow's XLA runs bfloat16 ones
natively on this CPU, which a one-time probe finds out (`xla_loop_dtype`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import tensorflow as tf

from charlstm.config import PRECISIONS

# a CPU flag (as /proc/cpuinfo spells it) that gives native bfloat16 products
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# NVIDIA GPUs have bfloat16 tensor cores from Ampere (compute capability 8.0) on
GPU_BF16_CAPABILITY = (8, 0)

# XLA's bfloat16 loop products count as native where they run at least this much faster than
# its float32 ones (TensorFlow 2.21's ran 0.77 x as fast on an AMX Xeon, tf-nightly 2.22's 1.55 x)
NATIVE_BF16_SPEEDUP = 1.2

log = logging.getLogger(__name__)

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


def cpu_has_bf16(flags: Flags | None = None) -> bool:
    """Whether the CPU (`flags`, default: this one's) has one of BF16_FLAGS."""
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in BF16_FLAGS)


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


NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")  # present where NVIDIA's driver is loaded


def describe_device(gpus: Capabilities | None = None, driver: Path = NVIDIA_DRIVER) -> str:
    """What trains here, in words: the GPUs TensorFlow sees (`gpus`, their compute
    capabilities; default: `gpu_capabilities()`), else the CPU's model name and core count,
    and, where NVIDIA's driver is loaded (`driver` exists) but TensorFlow sees no GPU, why
    that may be and what to do."""
    gpus = gpu_capabilities() if gpus is None else gpus
    if gpus:
        names = ", ".join(f"{major}.{minor}" for major, minor in gpus)
        plural = "s" if len(gpus) > 1 else ""
        return f"{len(gpus)} GPU{plural} (compute capability {names})"
    cores = os.cpu_count() or 1
    cpu = f"CPU, {cpu_name()} ({cores} core{'s' if cores > 1 else ''})"
    if driver.exists():
        cpu += (
            "; an NVIDIA driver is loaded but TensorFlow sees no GPU: install charlstm's `gpu`"
            " extra (pip install -e '.[gpu]'), or set TF_CPP_MIN_LOG_LEVEL=0 to see why"
        )
    return cpu


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
    return "bfloat16" if cpu_has_bf16(flags) else "float32"


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


def xla_loop_rates(batch: int = 64, units: int = 256, steps: int = 100) -> dict[str, float]:
    """GFLOP/s of one XLA computation looping over `steps` chained products (B, H) @ (H, 4H)
    and a tanh, as the recurrence runs them, with float32 and with bfloat16 operands (float32
    out), each the best of three timings: {"float32": ..., "bfloat16": ...}."""

    def loop(dtype: str):
        @tf.function(jit_compile=True)
        def run(h, U):
            def body(t, h):
                return t + 1, tf.tanh(matmul(h, U, dtype)[:, :units])

            return tf.while_loop(lambda t, h: t < steps, body, (0, h), maximum_iterations=steps)[1]

        return run

    h, U = tf.random.normal((batch, units)), tf.random.normal((units, 4 * units)) * 0.05
    rates = {}
    for dtype in ("float32", "bfloat16"):
        run = loop(dtype)
        run(h, U).numpy()  # compile
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(5):
                out = run(h, U)
            out.numpy()
            best = min(best, (time.perf_counter() - start) / 5)
        rates[dtype] = 2 * batch * units * 4 * units * steps / best / 1e9
    return rates


def xla_bf16_native(flags: Flags | None = None, folder: Path | None = None) -> bool:
    """Whether this TensorFlow's XLA runs the loops' bfloat16 products at least
    NATIVE_BF16_SPEEDUP x as fast as float32 ones on this CPU.

    False without probing where the CPU has none of BF16_FLAGS (`flags`, default: this CPU's).
    Else the first call times `xla_loop_rates` (a few seconds, one log line) and keeps the
    rates and the answer in `folder` (default: the user's cache folder, probes/ in
    ~/.cache/charlstm on Linux), in a file named by the TensorFlow version and the CPU's flags;
    later calls read it.
    """
    flags = cpu_flags() if flags is None else flags
    if not cpu_has_bf16(flags):
        return False
    if folder is None:
        import platformdirs  # noqa: PLC0415

        folder = Path(platformdirs.user_cache_dir("charlstm")) / "probes"
    key = hashlib.sha256(" ".join([tf.__version__, *sorted(flags)]).encode()).hexdigest()[:16]
    path = folder / f"xla-bf16-{key}.json"
    try:
        return bool(json.loads(path.read_text())["native"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not probed yet here, or a damaged record: probe again
    rates = xla_loop_rates()
    native = rates["bfloat16"] >= NATIVE_BF16_SPEEDUP * rates["float32"]
    log.warning(
        "probed XLA's loop products once: bfloat16 %.0f GFLOP/s, float32 %.0f; the XLA loops "
        "take %s products", rates["bfloat16"], rates["float32"],
        "bfloat16" if native else "float32",
    )  # fmt: skip
    record = {"tensorflow": tf.__version__, "gflops": rates, "native": native}
    folder.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(dir=folder, prefix=".xla-bf16-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    os.replace(part, path)
    return native


@functools.cache
def xla_loop_dtype(precision: str) -> str:
    """The dtype of the XLA loops' per-step products for a resolved `precision`: bfloat16
    where the products are bfloat16 and XLA runs them natively here (`xla_bf16_native`),
    else float32. Once per process."""
    return "bfloat16" if precision == "bfloat16" and xla_bf16_native() else "float32"


def compile_step(step, model):
    """`step` as a compiled TensorFlow function for `model`'s products and loops: one XLA
    computation for float32 products and the XLA loops; a graph for bfloat16 products, so that
    oneDNN runs them (module docstring), and for the compiled kernel (`charlstm.kernel`),
    whose ops XLA cannot take in."""
    xla = model.matmul_dtype == "float32" and getattr(model, "kernel", "xla") == "xla"
    return tf.function(step, jit_compile=xla)
