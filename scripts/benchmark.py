"""Training and generation speed: charlstm against keras.layers.LSTM and PyTorch nn.LSTM.

charlstm is timed in float32 and in bfloat16 (`charlstm.precision`), on the XLA loops and,
where it builds, the compiled kernel (`charlstm.kernel`), PyTorch in float32 and under its
bfloat16 autocast; the report names the CPU and its bfloat16 flags. Every backend
trains the same model (Embedding(V, E) -> N x LSTM(H) -> Dense(V)) on the same windows of
the same text with Adam, carrying the state across windows (TBPTT). Backends are timed
interleaved, round after round, after warm-up steps, and the median chars/s is reported with
the ratios of charlstm to each baseline, all measured in this one run. PyTorch is timed
only when installed (`pip install '.[bench]'`, or `pip install torch==2.13.0` here). Per model
the report also gives the rates of the step's matrix products on their shapes and the chars/s a
step made of those products alone would reach (`products_bound_chars_per_s`): what no kernel
around them can pass with products of that precision.

    python scripts/benchmark.py                    # the 2 x 256, B 64, T 100 model
    python scripts/benchmark.py --scaling --json   # + 1 x 128, 3 x 512 and batch 32 / 128
    python scripts/benchmark.py --scaling --no-variants   # the same without the regularizers
    python scripts/benchmark.py --sizes 2x256 2x512      # those models at batch 64
    python scripts/benchmark.py --strategy mirrored   # one device against two logical CPU
                                                      # devices under tf.distribute
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from charlstm.allocator import pool
from charlstm.quiet import install as quiet_tensorflow

quiet_tensorflow()  # TensorFlow's start-up notes off stderr, before it is imported
pool()  # the CPU allocator that training runs with (charlstm.allocator)

import tensorflow as tf  # noqa: E402

from charlstm.config import ModelConfig, SamplingConfig, TrainConfig  # noqa: E402
from charlstm.corpus import read_text  # noqa: E402
from charlstm.data import tbptt_windows  # noqa: E402
from charlstm.kernel import load as load_kernel  # noqa: E402
from charlstm.model import build_model  # noqa: E402
from charlstm.precision import BF16_FLAGS, cpu_flags, cpu_name, resolve  # noqa: E402
from charlstm.sample import Sampler  # noqa: E402
from charlstm.steps import make_optimizer, make_train_step  # noqa: E402
from charlstm.tokenizer import CharTokenizer  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "tinyshakespeare.txt"
# training is about 3x forward (forward, input gradient, weight gradient)


def forward_flops(model) -> float:
    """Forward FLOPs per character: 2 per entry of every weight matrix a character is
    multiplied by (kernels, recurrent kernels, head: 2*(4H(D+H)) per layer + 2*H*V), read
    off the built model; the embedding is a lookup."""
    matrices = [v for v in model.weights if len(v.shape) == 2 and "embedding" not in v.path]
    return 2.0 * sum(v.shape[0] * v.shape[1] for v in matrices)


class CharlstmBackend:
    """charlstm's train step, plain or with one of VARIANTS (in training mode, so the cost of
    a regularizer shows), its products in float32 or bfloat16 (`charlstm.precision`), its
    loops XLA's or the compiled kernel's (`charlstm.kernel`)."""

    def __init__(
        self, vocab, emb, units, layers, batch, seq_len, variant=None, dtype="float32",
        kernel="xla",
    ):  # fmt: skip
        self.name = "charlstm" if variant is None else f"charlstm, {variant}"
        self.name += "" if dtype == "float32" else f" {dtype}"
        self.name += "" if kernel == "xla" else f", {kernel} kernel"
        options = {"dropout": 0.0, **VARIANTS.get(variant, {})}
        self.model = build_model(
            ModelConfig(
                vocab_size=vocab, embedding_dim=emb, units=units, num_layers=layers, **options
            ),
            matmul_dtype=dtype,
            kernel=kernel,
        )
        self.step_fn = make_train_step(self.model, make_optimizer(TrainConfig()))
        self.states = self.model.zero_states(batch)

    def step(self, x, y):
        loss, self.states = self.step_fn(tf.constant(x), tf.constant(y), self.states)
        return float(loss)


class MirroredBackend:
    """charlstm's distributed step (`charlstm.distribute`) on MirroredStrategy over `devices`
    (logical CPU devices here: they share the same cores, so this shows the cost of the
    distributed step, not a speed-up)."""

    def __init__(self, vocab, emb, units, layers, batch, seq_len, devices):
        from charlstm.distribute import Replicas  # noqa: PLC0415
        from charlstm.steps import loss_and_gradients  # noqa: PLC0415

        self.name = f"charlstm mirrored x {len(devices)}"
        self.replicas = Replicas(tf.distribute.MirroredStrategy(devices), batch)
        config = ModelConfig(
            vocab_size=vocab, embedding_dim=emb, units=units, num_layers=layers, dropout=0.0
        )
        with self.replicas.scope():
            self.model = build_model(config)
            optimizer = make_optimizer(TrainConfig(), clip=False)
            optimizer.build(self.model.trainable_variables)
        gradients = loss_and_gradients(self.model)
        self.step_fn = self.replicas.train_step(self.model, optimizer, gradients, 5.0)
        self.states = self.replicas.split(self.model.zero_states(batch), batch)

    def step(self, x, y):
        loss, self.states = self.step_fn(tf.constant(x), tf.constant(y), self.states)
        return float(loss)


def time_strategies(args, ids, vocab) -> dict:
    """chars/s of the 2 x 256 model on one device and under MirroredStrategy on two logical
    CPU devices (set up in `main` before TensorFlow starts), interleaved in one run."""
    batch = 64
    windows = tbptt_windows(ids, batch, args.seq_len)
    shape = (vocab, args.embedding_dim, 256, 2, batch, args.seq_len)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    backends = [CharlstmBackend(*shape), MirroredBackend(*shape, devices)]
    rates = time_training(backends, windows, args.warmup, args.steps, args.rounds)
    return {"train_chars_per_s": rates, "ratio": rates[backends[1].name] / rates["charlstm"]}


class KerasLSTMBackend:
    """keras.layers.LSTM stacked the same way, its state carried the same way."""

    name = "keras.layers.LSTM"

    def __init__(self, vocab, emb, units, layers, batch, seq_len, jit=True):
        import keras

        ids = keras.Input((seq_len,), batch_size=batch, dtype="int32")
        states_in = [keras.Input((units,), batch_size=batch) for _ in range(2 * layers)]
        x = keras.layers.Embedding(vocab, emb)(ids)
        states_out = []
        for i in range(layers):
            x, h, c = keras.layers.LSTM(units, return_sequences=True, return_state=True)(
                x, initial_state=states_in[2 * i : 2 * i + 2]
            )
            states_out += [h, c]
        logits = keras.layers.Dense(vocab)(x)
        self.model = keras.Model([ids, *states_in], [logits, *states_out])
        self.optimizer = make_optimizer(TrainConfig())
        self.states = [tf.zeros((batch, units)) for _ in range(2 * layers)]

        def train_step(x, y, states):
            with tf.GradientTape() as tape:
                logits, *states = self.model([x, *states], training=True)
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                )
            variables = self.model.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss, states

        self.step_fn = tf.function(train_step, jit_compile=jit)

    def step(self, x, y):
        loss, self.states = self.step_fn(tf.constant(x), tf.constant(y), self.states)
        return float(loss)


TORCH = "torch nn.LSTM"
TORCH_BF16 = "torch nn.LSTM bf16 autocast"
CHARLSTM_BF16 = "charlstm bfloat16"
COMPILED = "charlstm, compiled kernel"
COMPILED_BF16 = "charlstm bfloat16, compiled kernel"


class TorchBackend:
    """nn.LSTM stacked the same way; with autocast, under `torch.autocast("cpu",
    dtype=torch.bfloat16)` (PyTorch's own mixed precision: bf16 products, float32 weights)."""

    def __init__(self, vocab, emb, units, layers, batch, seq_len, autocast=False):
        import torch

        self.name = TORCH_BF16 if autocast else TORCH
        self.autocast = autocast

        torch.set_num_threads(os.cpu_count() or 1)
        torch.manual_seed(0)
        self.torch = torch
        self.emb = torch.nn.Embedding(vocab, emb)
        self.lstm = torch.nn.LSTM(emb, units, layers, batch_first=True)
        self.head = torch.nn.Linear(units, vocab)
        self.params = [*self.emb.parameters(), *self.lstm.parameters(), *self.head.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=2e-3)
        self.state = None

    def step(self, x, y):
        torch = self.torch
        x, y = torch.from_numpy(x).long(), torch.from_numpy(y).long()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            out, state = self.lstm(self.emb(x), self.state)
            logits = self.head(out)
        self.state = tuple(s.detach().float() for s in state)
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1)
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 5.0)
        self.optimizer.step()
        return loss.item()


def time_training(backends, windows, warmup: int, steps: int, rounds: int) -> dict[str, float]:
    """Median chars/s of each backend over `rounds` interleaved rounds of `steps` steps."""
    B, T = windows.inputs.shape[0], windows.seq_len
    n = len(windows)
    for backend in backends:
        for k in range(warmup):
            backend.step(*windows[k % n])
    rates: dict[str, list[float]] = {b.name: [] for b in backends}
    k = warmup
    for _ in range(rounds):
        for backend in backends:
            start = time.perf_counter()
            for j in range(steps):
                backend.step(*windows[(k + j) % n])
            rates[backend.name].append(B * T * steps / (time.perf_counter() - start))
        k += steps
    return {name: statistics.median(r) for name, r in rates.items()}


# regularizers and cells whose cost in the train step the report shows, against none
VARIANTS = {
    "dropout 0.2": {"dropout": 0.2},
    "recurrent dropout 0.2": {"recurrent_dropout": 0.2},
    "weight drop 0.2": {"weight_drop": 0.2},
    "layernorm cell": {"cell": "layernorm"},
}

# what generation is timed with: filtered sampling (top-k and top-p), and plain sampling
GENERATION_SETTINGS = {
    "top-k 20, top-p 0.95": dict(temperature=0.8, top_k=20, top_p=0.95),
    "temperature only": dict(temperature=1.0),
}


def time_generation(
    model, tokenizer, streams: int, length: int, rounds: int, settings, loop: str
) -> float:
    """Median chars/s (all streams together) of `Sampler.generate`, SamplingConfig(**settings),
    its draws in `loop` ("xla" or "compiled", `charlstm.kernel`)."""
    sampler = Sampler(model, tokenizer, loop)
    warmup = SamplingConfig(**settings)
    for _ in sampler.generate("\n", length, warmup, streams, chunk=length):
        pass  # compile
    rates = []
    for r in range(rounds):
        sampling = SamplingConfig(**settings, seed=r)
        start = time.perf_counter()
        for _ in sampler.generate("\n", length, sampling, streams, chunk=length):
            pass
        rates.append(streams * length / (time.perf_counter() - start))
    return statistics.median(rates)


def matmul_peak(n: int = 1024, rounds: int = 5) -> float:
    """Measured float32 matmul FLOP/s of TensorFlow on this machine (n x n x n)."""
    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    f = tf.function(lambda a, b: tf.matmul(a, b))
    f(a, b).numpy()
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(10):
            f(a, b).numpy()
        best = max(best, 10 * 2 * n**3 / (time.perf_counter() - start))
    return best


def recurrent_matmul_rates(batch: int, units: int, steps: int = 300, rounds: int = 5) -> dict:
    """FLOP/s of the recurrence's per-step matmul (B, H) @ (H, 4H): chained in an XLA loop, as
    charlstm runs it, and PyTorch's (MKL) on the same shapes, when installed. Training does
    two such matmuls per step and layer, one way and back; they bound how fast a loop over
    them can be."""
    flops = 2 * batch * units * 4 * units * steps
    U = tf.random.normal((units, 4 * units)) * 0.05
    h = tf.random.normal((batch, units))
    rates = {"xla": flops * _chain_runs_per_s(h, U, steps, rounds)}
    try:
        import torch
    except ImportError:
        return rates
    torch.set_num_threads(os.cpu_count() or 1)
    tU, th = torch.from_numpy(U.numpy()), torch.from_numpy(h.numpy())
    z = torch.empty(batch, 4 * units)
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):  # the matmul alone: its rate, without Python's per-op cost
            torch.mm(th, tU, out=z)
        best = max(best, flops / (time.perf_counter() - start))
    rates["torch"] = best
    return rates


def window_matmul_rates(batch: int, seq_len: int, units: int, rounds: int = 5) -> dict:
    """Best FLOP/s of a window's large products, (T * B, H) @ (H, 4H) (a layer's input
    projection), its input gradient (T * B, 4H) @ (H, 4H)^T and a weight gradient
    (T * B, H)^T @ (T * B, 4H): in TensorFlow's graph as the compiled kernel's step runs them,
    and in PyTorch (MKL) on the same shapes where it is installed; the better of the two."""
    rows, flops = seq_len * batch, 2 * seq_len * batch * units * 4 * units
    x, z = tf.random.normal((rows, units)), tf.random.normal((rows, 4 * units))
    W = tf.random.normal((units, 4 * units))
    products = {  # name: (transpose_a, transpose_b, a, b)
        "projection": (False, False, x, W),
        "input_gradient": (False, True, z, W),
        "weight_gradient": (True, False, x, z),
    }
    try:
        import torch
    except ImportError:
        torch = None
    rates = {}
    for name, (ta, tb, a, b) in products.items():
        runs = [(tf.function(lambda a, b, ta=ta, tb=tb: tf.matmul(a, b, ta, tb)), a, b)]
        if torch is not None:
            pa, pb = torch.from_numpy(a.numpy()), torch.from_numpy(b.numpy())
            pa, pb = (pa.T if ta else pa), (pb.T if tb else pb)
            runs.append((torch.mm, pa, pb))
        best = 0.0
        for run, a_, b_ in runs:
            run(a_, b_)
            for _ in range(rounds):
                start = time.perf_counter()
                out = run(a_, b_)
                _ = out.numpy()  # TensorFlow's result is ready once read
                best = max(best, flops / (time.perf_counter() - start))
        rates[name] = best
    return rates


def products_bound(layers: int, units: int, vocab: int, loop_rate: float, window: dict,
                   peak: float) -> float:  # fmt: skip
    """Training chars/s if a step did nothing but its products, each at the best rate measured
    for its shape: per character, 2L loop products (B, H) @ (H, 4H) one way and back at
    `loop_rate`; L - 1 input projections, their L - 1 input gradients and 2L - 1 weight
    gradients (W of layers 2..L, U of every layer; the first layer's input is an embedding
    lookup) at `window`'s rates (window_matmul_rates); the head's three products at `peak`.
    Each of those products costs 2 * H * 4H FLOPs a character."""
    product = 2 * units * 4 * units
    seconds = (
        2 * layers * product / loop_rate
        + (layers - 1) * product / window["projection"]
        + (layers - 1) * product / window["input_gradient"]
        + (2 * layers - 1) * product / window["weight_gradient"]
        + 3 * 2 * units * vocab / peak
    )
    return 1 / seconds


def weight_read_bound(floats: int, rows: int = 256, steps: int = 2000, rounds: int = 5) -> float:
    """One stream's limit, chars/s, if a character cost nothing but reading `floats` weights
    once: a chain of one-row products (1, rows) @ (rows, floats / rows), each a single XLA dot
    over a matrix of the model's size, in a compiled loop."""
    W = tf.random.normal((rows, floats // rows // rows * rows)) * 0.01
    return steps * _chain_runs_per_s(tf.random.normal((1, rows)), W, steps, rounds)


def _chain_runs_per_s(h, W, steps: int, rounds: int) -> float:
    """Best runs per second of one compiled loop of `steps` products h @ W, (B, K) @ (K, N),
    each folded back to (B, K) by summing its N / K blocks: every column is used, so XLA
    cannot drop any."""

    @tf.function(jit_compile=True)
    def chain(h):
        def body(t, h):
            z = tf.reshape(tf.matmul(h, W), (h.shape[0], -1, h.shape[1]))
            return t + 1, tf.tanh(tf.reduce_sum(z, axis=1))

        return tf.while_loop(lambda t, _: t < steps, body, (0, h))[1]

    chain(h).numpy()
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        chain(h).numpy()
        best = max(best, 1 / (time.perf_counter() - start))
    return best


def run_config(layers, units, batch, args, ids, vocab, with_generation: bool) -> dict:
    windows = tbptt_windows(ids, batch, args.seq_len)
    shape = (vocab, args.embedding_dim, units, layers, batch, args.seq_len)
    variants = () if args.no_variants else VARIANTS
    backends = [CharlstmBackend(*shape, variant) for variant in (None, *variants)]
    backends.append(CharlstmBackend(*shape, dtype="bfloat16"))
    if load_kernel().ops is not None:
        backends.append(CharlstmBackend(*shape, kernel="compiled"))
        backends.append(CharlstmBackend(*shape, "recurrent dropout 0.2", kernel="compiled"))
        # bfloat16 loops: MKL (AMX), the kernel's own (AVX512-BF16 alone), or MKL converting
        backends.append(CharlstmBackend(*shape, dtype="bfloat16", kernel="compiled"))
    else:
        print(f"no compiled kernel: {load_kernel().reason}", file=sys.stderr)
    backends.append(KerasLSTMBackend(*shape))
    try:
        backends.append(TorchBackend(*shape))
        autocast = TorchBackend(*shape, autocast=True)
        autocast.step(*windows[0])  # oneDNN's bfloat16 LSTM needs AVX512 at least
        backends.append(autocast)
    except ImportError:
        print("torch is not installed: no PyTorch baseline", file=sys.stderr)
    except RuntimeError as err:
        print(f"torch's bfloat16 autocast cannot run here: {err}", file=sys.stderr)
    rates = time_training(backends, windows, args.warmup, args.steps, args.rounds)
    ours = rates["charlstm"]
    train_flops = 3 * forward_flops(backends[0].model)
    result = {
        "layers": layers,
        "units": units,
        "batch_size": batch,
        "seq_len": args.seq_len,
        "train_chars_per_s": rates,
        "ratio_vs": {name: ours / rate for name, rate in rates.items() if name != "charlstm"},
        "train_flops_per_char": train_flops,
        "recurrent_matmul_flops": recurrent_matmul_rates(batch, units),
        "window_matmul_flops": window_matmul_rates(batch, args.seq_len, units),
    }
    if with_generation:
        model = backends[0].model
        tokenizer = CharTokenizer.build("\n" + "".join(map(chr, range(32, 32 + vocab - 2))))
        # the loop's name: (its model, its kernel); bfloat16 on the compiled bfloat16 backend's
        loops = {"xla": (model, "xla")}
        if load_kernel().ops is not None:
            loops["compiled"] = (model, "compiled")
        for backend in backends:
            if backend.name == COMPILED_BF16:
                loops["compiled bfloat16"] = (backend.model, "compiled")
        result["generate_chars_per_s"] = {
            loop: {
                name: {
                    streams: time_generation(
                        used, tokenizer, streams, args.gen_length, args.rounds, settings, kernel
                    )
                    for streams in (1, 64)
                }
                for name, settings in GENERATION_SETTINGS.items()
            }
            for loop, (used, kernel) in loops.items()
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gen-length", type=int, default=2000)
    parser.add_argument("--scaling", action="store_true", help="also 1x128, 3x512, B 32/128")
    parser.add_argument(
        "--sizes", nargs="+", default=["2x256"], metavar="LAYERSxUNITS",
        help="the models timed at batch 64, training and generation",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-variants", action="store_true", help="skip the regularizers' rows")
    parser.add_argument(
        "--strategy",
        choices=["mirrored"],
        help="instead: one device against MirroredStrategy on two logical CPU devices",
    )
    args = parser.parse_args()
    if args.strategy:
        cpu = tf.config.list_physical_devices("CPU")[0]
        two = [tf.config.LogicalDeviceConfiguration()] * 2
        tf.config.set_logical_device_configuration(cpu, two)

    text = read_text(args.corpus)
    tokenizer = CharTokenizer.build(text)
    ids = tokenizer.encode(text)
    vocab = tokenizer.vocab_size
    if args.strategy:
        report = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{cpu_name()}, {os.cpu_count()} cores",
            "tensorflow": tf.__version__,
            **time_strategies(args, ids, vocab),
        }
        print(json.dumps(report, indent=2) if args.json else _strategy_table(report))
        return
    peak = matmul_peak()
    sizes = [size.split("x") for size in args.sizes]
    configs = [(int(n), int(h), 64, True) for n, h in sizes]
    if args.scaling:
        configs += [(1, 128, 64, False), (3, 512, 64, False), (2, 256, 32, False)]
        configs += [(2, 256, 128, False)]
    results = []
    for layers, units, batch, gen in configs:
        r = run_config(layers, units, batch, args, ids, vocab, gen)
        r["fraction_of_matmul_peak"] = (
            r["train_chars_per_s"]["charlstm"] * r["train_flops_per_char"] / peak
        )
        r["products_bound_chars_per_s"] = products_bound(
            layers, units, vocab, max(r["recurrent_matmul_flops"].values()),
            r["window_matmul_flops"], peak,
        )  # fmt: skip
        results.append(r)
        if gen:
            # 64 streams are bound by compute: forward FLOPs per character at the matmul peak;
            # one stream by reading every weight (4 bytes per 2 FLOPs) once per character
            fwd = r["train_flops_per_char"] / 3
            r["generate_compute_bound_chars_per_s"] = peak / fwd
            r["generate_read_bound_chars_per_s"] = weight_read_bound(int(fwd / 2))
            r["weights_mb"] = 4 * fwd / 2 / 1e6
        if not args.json:
            print(_row(r), file=sys.stderr)
    flags = cpu_flags()
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "bf16_flags": [flag for flag in BF16_FLAGS if flag in flags],
        "auto_precision": resolve("auto"),
        "tensorflow": tf.__version__,
        "matmul_peak_flops": peak,
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_table(report))


def _strategy_table(report) -> str:
    rates = report["train_chars_per_s"]
    lines = [
        f"{report['date']}, {report['machine']}, TensorFlow {report['tensorflow']}; "
        "2 x 256, B 64, T 100, float32, training chars/s",
        "",
        "| run | chars/s |",
        "| --- | --- |",
        *(f"| {name} | {rate:,.0f} |" for name, rate in rates.items()),
        "",
        f"mirrored / one device: {report['ratio']:.2f} (the two logical devices share the same "
        "cores: below 1 is the distributed step's cost; above 1, two half-batch steps keeping "
        "the cores busier than one, not a second device's work)",
    ]
    return "\n".join(lines)


def _row(r) -> str:
    rates = ", ".join(f"{k} {v:,.0f}" for k, v in r["train_chars_per_s"].items())
    return f"{r['layers']} x {r['units']}, B {r['batch_size']}: {rates} chars/s"


def _table(report) -> str:
    flags = ", ".join(report["bf16_flags"]) or "none"
    lines = [
        f"{report['date']}, {report['machine']}, TensorFlow {report['tensorflow']}, "
        f"float32 matmul peak {report['matmul_peak_flops'] / 1e9:.0f} GFLOP/s; "
        f"bfloat16 flags: {flags} (auto precision: {report['auto_precision']})",
        "",
        "training chars/s; ratios are charlstm float32 (f32) and bfloat16 (bf16) against each",
        "",
        "| model | B | charlstm f32 | charlstm bf16 | charlstm compiled | compiled bf16 | "
        "keras.layers.LSTM | torch f32 | torch bf16 autocast | f32 vs torch f32 | "
        "compiled vs torch f32 | bf16 vs torch bf16 | compiled bf16 vs torch bf16 | "
        "f32 vs keras | peak |",
        "|" + " --- |" * 15,
    ]

    def cell(rate):
        return f"{rate:,.0f}" if rate else "n/a"

    def ratio(a, b):
        return f"{a / b:.2f}" if a and b else "n/a"

    for r in report["results"]:
        rates = r["train_chars_per_s"]
        f32, bf16, compiled = rates["charlstm"], rates[CHARLSTM_BF16], rates.get(COMPILED)
        compiled16 = rates.get(COMPILED_BF16)
        keras_rate, t32, t16 = rates["keras.layers.LSTM"], rates.get(TORCH), rates.get(TORCH_BF16)
        lines.append(
            f"| {r['layers']} x {r['units']} | {r['batch_size']} | {cell(f32)} | {cell(bf16)} | "
            f"{cell(compiled)} | {cell(compiled16)} | {cell(keras_rate)} | {cell(t32)} | "
            f"{cell(t16)} | {ratio(f32, t32)} | {ratio(compiled, t32)} | {ratio(bf16, t16)} | "
            f"{ratio(compiled16, t16)} | {ratio(f32, keras_rate)} | "
            f"{r['fraction_of_matmul_peak']:.0%} |"
        )
    lines.append("")
    lines.append("regularizers and cells, training chars/s (share of the plain step's):")
    for r in report["results"]:
        rates = r["train_chars_per_s"]
        costs = ", ".join(
            f"{variant} {rates[f'charlstm, {variant}']:,.0f} "
            f"({rates[f'charlstm, {variant}'] / rates['charlstm']:.0%})"
            for variant in VARIANTS
            if f"charlstm, {variant}" in rates
        )
        lines.append(f"- {r['layers']} x {r['units']}, B {r['batch_size']}: {costs or 'not timed'}")
    lines.append("")
    lines.append("per-step recurrent matmul (B, H) @ (H, 4H), GFLOP/s, XLA loop / PyTorch:")
    for r in report["results"]:
        m = r["recurrent_matmul_flops"]
        torch_rate = f"{m['torch'] / 1e9:.0f}" if "torch" in m else "n/a"
        model = f"{r['layers']} x {r['units']}, B {r['batch_size']}"
        lines.append(f"- {model}: {m['xla'] / 1e9:.0f} / {torch_rate}")
    lines.append("")
    lines.append(
        "a window's products (projection, input gradient, weight gradient), GFLOP/s, best of "
        "TensorFlow and PyTorch; the step's products alone at those rates allow (chars/s):"
    )
    for r in report["results"]:
        w = " / ".join(f"{rate / 1e9:.0f}" for rate in r["window_matmul_flops"].values())
        model = f"{r['layers']} x {r['units']}, B {r['batch_size']}"
        lines.append(f"- {model}: {w}; {r['products_bound_chars_per_s']:,.0f}")
    for r in report["results"]:
        if "generate_chars_per_s" in r:
            lines.append("")
            bound = r["generate_compute_bound_chars_per_s"]
            read = r["generate_read_bound_chars_per_s"]
            lines.append(
                f"generation, {r['layers']} x {r['units']} ({r['weights_mb']:.1f} MB of weights); "
                f"references: 1 stream {read:,.0f} chars/s (XLA's matrix-vector product over the "
                f"weights once per character), 64 streams {bound:,.0f} (the matmul peak):"
            )
            for loop, by_setting in r["generate_chars_per_s"].items():
                for name, g in by_setting.items():
                    lines.append(
                        f"- {loop} loop, {name}: 1 stream {g[1]:,.0f} chars/s "
                        f"({g[1] / read:.0%}), 64 streams {g[64]:,.0f} chars/s in total "
                        f"({g[64] / bound:.0%})"
                    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
