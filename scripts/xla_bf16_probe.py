"""Does XLA run bfloat16 products natively on this CPU? Rerun after a TensorFlow upgrade.

XLA on CPU in TensorFlow 2.21 runs bfloat16 dots no faster than float32 ones (docs/results.md,
bfloat16), while oneDNN outside XLA runs them 2-5 x faster on a CPU with AVX512-BF16 or AMX.
charlstm runs the loop part of this probe once per TensorFlow version and CPU
(`charlstm.precision.xla_bf16_native`) and gives its XLA loops bfloat16 products where XLA runs
them natively; this script shows every route XLA has to a bfloat16 dot.

For each XLA_FLAGS setting (each in a fresh process: XLA reads them once), it times in GFLOP/s:
a loop of 100 chained (64, 256) @ (256, 1024) products + tanh, as the recurrence runs them,
and one (6400, 256) @ (256, 1024) product, as a layer's input projection; each in float32 and
with bfloat16 operands (float32 out). The settings are XLA's routes to oneDNN, XNNPACK and
YNNPACK dots; a flag this TensorFlow does not know ends that child with an error, reported.

    python scripts/xla_bf16_probe.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from charlstm.quiet import install as quiet_tensorflow

quiet_tensorflow()  # TensorFlow's start-up notes off stderr (the children run this file too)

SETTINGS = (
    "",
    "--xla_cpu_use_onednn=true",
    "--xla_cpu_experimental_onednn_custom_call=true",
    "--xla_cpu_experimental_onednn_fusion_type=dot",
    "--xla_cpu_experimental_xnn_fusion_type=dot",
    "--xla_cpu_experimental_ynn_fusion_type=dot",
)
B, H, T = 64, 256, 100


def rates() -> dict[str, float]:
    """GFLOP/s of the loop and the big product, float32 and bfloat16, in this process."""
    import tensorflow as tf

    from charlstm.precision import matmul, xla_loop_rates

    projection = tf.function(lambda a, b, dtype: matmul(a, b, dtype), jit_compile=True)

    def gflops(dtype, repeats=20):
        a, b = tf.random.normal((6400, H)), tf.random.normal((H, 4 * H))
        projection(a, b, dtype).numpy()  # compile
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(repeats):
                out = projection(a, b, dtype)
            out.numpy()
            best = min(best, (time.perf_counter() - start) / repeats)
        return round(2 * 6400 * H * 4 * H / best / 1e9, 1)

    loop = xla_loop_rates(B, H, T)
    out = {}
    for dtype in ("float32", "bfloat16"):
        out[f"loop {dtype}"] = round(loop[dtype], 1)
        out[f"projection {dtype}"] = gflops(dtype)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(rates()))
        return
    from charlstm.precision import BF16_FLAGS, cpu_flags, cpu_name

    have = [flag for flag in BF16_FLAGS if flag in cpu_flags()] or ["no bfloat16 flags"]
    print(f"CPU: {cpu_name()} ({', '.join(have)})")
    for flags in SETTINGS:
        env = os.environ | {"XLA_FLAGS": flags, "TF_CPP_MIN_LOG_LEVEL": "2"}
        done = subprocess.run(
            [sys.executable, __file__, "--child"], env=env, capture_output=True, text=True
        )
        result = done.stdout.strip().splitlines()[-1] if done.returncode == 0 else (
            "failed: " + (done.stderr.strip().splitlines() or ["no output"])[-1]
        )  # fmt: skip
        print(f"{flags or 'XLA defaults'}: {result}")


if __name__ == "__main__":
    main()
