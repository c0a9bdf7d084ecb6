"""Where a training step's time goes: TensorFlow's profiler over charlstm's train step.

    python scripts/profile_step.py                            # 2 x 256, B 64, T 100
    python scripts/profile_step.py --units 512 --kernel xla   # the XLA loops at 2 x 512

Builds the benchmark's model (scripts/benchmark.py: Embedding(V, 64) -> N x LSTM(H) ->
Dense(V), no dropout, Adam) on Tiny Shakespeare's windows, runs warm-up steps, then:

- times `--steps` steps and reads the process' CPU time and page faults over them, and its
  peak resident memory at their end;
- records `--steps` more with tf.profiler and prints, per step, each op's time summed over the
  threads that ran it, by op type and then the largest ops by name.

TensorFlow runs up to two ops at once on its inter-op threads, each on the intra-op pool, so
the op times add up to more than the step's wall time; an op that shares the cores runs
longer than it would alone.
"""

from __future__ import annotations

import argparse
import collections
import glob
import resource
import sys
import tempfile
import time

import benchmark  # scripts/benchmark.py: quiet import, pooled allocator, the backends
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from charlstm.corpus import read_text
from charlstm.data import tbptt_windows
from charlstm.precision import cpu_name
from charlstm.tokenizer import CharTokenizer


def op_times(logdir: str, steps: int) -> dict[tuple[str, str], float]:
    """ms per step of each (op name, op type) in the profile under `logdir`, over all threads."""
    (path,) = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    times: dict[tuple[str, str], float] = collections.Counter()
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor's threads run the ops
                continue
            for event in line.events:
                label = names.get(event.metadata_id, "")
                name, _, kind = label.rpartition(":")
                if name and "::" not in label:  # "name:Type" is an op, "A::B" the executor's
                    times[name, kind] += event.duration_ps / 1e9 / steps
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--kernel", choices=["compiled", "xla"], default="compiled")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--top", type=int, default=20, help="ops shown by name")
    args = parser.parse_args()

    text = read_text(benchmark.CORPUS)
    tokenizer = CharTokenizer.build(text)
    windows = tbptt_windows(tokenizer.encode(text), args.batch, args.seq_len)
    model = benchmark.CharlstmBackend(
        tokenizer.vocab_size, 64, args.units, args.layers, args.batch, args.seq_len,
        dtype=args.precision, kernel=args.kernel,
    )  # fmt: skip
    for k in range(args.warmup):
        model.step(*windows[k])

    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for k in range(args.steps):
        model.step(*windows[args.warmup + k])
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    faults = (after.ru_minflt - before.ru_minflt) / args.steps

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for k in range(args.steps):
            model.step(*windows[args.warmup + args.steps + k])
        tf.profiler.experimental.stop()
        times = op_times(logdir, args.steps)

    chars = args.batch * args.seq_len
    print(
        f"{cpu_name()}; {args.layers} x {args.units}, B {args.batch}, T {args.seq_len}, "
        f"{args.kernel} kernel, {args.precision}, TensorFlow {tf.__version__}"
    )
    print(
        f"step {1000 * wall / args.steps:.1f} ms ({chars * args.steps / wall:,.0f} chars/s); "
        f"CPU time {user / wall:.2f} user + {system / wall:.2f} system per wall second; "
        f"{faults:,.0f} page faults per step; peak resident memory "
        f"{after.ru_maxrss / 1024:,.0f} MB"
    )
    by_type: dict[str, float] = collections.Counter()
    for (_, kind), ms in times.items():
        by_type[kind] += ms
    print(f"\nop time per step, summed over threads: {sum(times.values()):.1f} ms")
    for kind, ms in sorted(by_type.items(), key=lambda item: -item[1]):
        if ms >= 0.5:
            print(f"{ms:8.1f} ms  {kind}")
    print(f"\nthe {args.top} largest ops")
    for (name, kind), ms in sorted(times.items(), key=lambda item: -item[1])[: args.top]:
        print(f"{ms:8.1f} ms  {kind:28s} {name}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
