"""The compiled LSTM kernel (charlstm.kernel, kernels/lstm.cc): its loops equal the XLA loops,
a model on it has the XLA model's loss and every gradient under the presets' regularizers,
training gives the same losses, a run moves between the kernels, and where it cannot be built
one warning line says why and training runs on the XLA loops with the same results."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from charlstm import fused, kernel
from charlstm.config import ModelConfig
from charlstm.errors import CharlstmError
from charlstm.model import build_model
from charlstm.rundir import RunDir
from charlstm.sample import (
    Sampler,
    compiled_draw_steps,
    draw_steps,
    generation_weights,
    never_drawn,
)
from charlstm.tokenizer import CharTokenizer
from charlstm.trainer import train
from tests.conftest import TINY_TRAIN_ARGS, require, tiny_config
from tests.test_cli import run_charlstm


@pytest.fixture(scope="module")
def ops():
    loaded = kernel.load()
    require(loaded.ops is not None, f"the compiled kernel does not build here: {loaded.reason}")
    return loaded.ops


def _random(rng, shape, scale=1.0):
    return tf.constant(rng.normal(0.0, scale, shape).astype(np.float32))


def _window(rng, T, B, H, u_scale, keep):
    """A window's loop inputs: xw (T, B, 4H), h0, c0 (B, H), U (H, 4H), a dropout mask (B, H)
    keeping `keep` of h; then the gradients arriving: d_hs (T, B, H), d_h, d_c (B, H)."""
    xw, h0, c0 = _random(rng, (T, B, 4 * H)), _random(rng, (B, H), 0.5), _random(rng, (B, H))
    U = _random(rng, (H, 4 * H), u_scale)
    mask = tf.constant((rng.random((B, H)) > 1 - keep).astype(np.float32) / keep)
    incoming = (_random(rng, (T, B, H)), _random(rng, (B, H)), _random(rng, (B, H)))
    return (xw, h0, c0, U, mask), incoming


def test_the_compiled_loops_equal_the_xla_loops(ops):
    (xw, h0, c0, U, mask), (d_hs, d_h, d_c) = _window(np.random.default_rng(0), 7, 3, 5, 0.4, 0.7)
    want = fused._forward_loop(xw, h0, c0, U, mask)
    got = ops.charlstm_lstm_forward(xw, h0, c0, U, mask)
    for name, a, b in zip(("hs", "cs", "gates"), want, got):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=name)
    hs, cs, gates = want
    want = fused._backward_loop(gates, cs, c0, d_hs, d_h, d_c, U, mask)
    got = ops.charlstm_lstm_backward(gates, cs, c0, d_hs, d_h, d_c, U, mask)
    for name, a, b in zip(("dz", "dh0", "dc0"), want, got):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=name)


def _cosine(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_the_bfloat16_loops_stay_within_bfloat16_rounding_of_the_float32_ones(ops):
    rng = np.random.default_rng(5)
    (xw, h0, c0, U, mask), (d_hs, d_h, d_c) = _window(rng, 12, 4, 24, 0.3, 0.8)
    want = ops.charlstm_lstm_forward(xw, h0, c0, U, mask)
    got = ops.charlstm_lstm_forward(xw, h0, c0, U, mask, bf16=True)
    for name, a, b in zip(("hs", "cs", "gates"), want, got):
        np.testing.assert_allclose(b, a, atol=0.05, err_msg=name)
        assert not np.array_equal(a, b)  # the products did run in bfloat16
        assert _cosine(a, b) > 0.999, name
    hs, cs, gates = want
    want = ops.charlstm_lstm_backward(gates, cs, c0, d_hs, d_h, d_c, U, mask)
    got = ops.charlstm_lstm_backward(gates, cs, c0, d_hs, d_h, d_c, U, mask, bf16=True)
    for name, a, b in zip(("dz", "dh0", "dc0"), want, got):
        assert _cosine(a, b) > 0.999, name
        assert not np.array_equal(a, b)


def _bf16(x):
    """x rounded to the nearest bfloat16 (ties to even), as float64."""
    return tf.cast(tf.cast(x, tf.bfloat16), tf.float64).numpy()


@pytest.mark.parametrize("batch, units", [(1, 5), (3, 24), (9, 40)])
def test_a_bfloat16_step_is_the_product_of_the_rounded_factors(ops, batch, units):
    # one step, so that no rounding of an earlier step's h enters: the op's product must be
    # bfloat16(h0 * m) @ bfloat16(U) summed exactly enough (float32), whichever GEMM runs it;
    # the sizes leave partial tiles of rows and columns and an odd inner dimension
    rng = np.random.default_rng(units)
    (xw, h0, c0, U, mask), (d_hs, d_h, d_c) = _window(rng, 1, batch, units, 0.3, 0.8)
    hs, cs, gates = ops.charlstm_lstm_forward(xw, h0, c0, U, mask, bf16=True)
    z = xw.numpy()[0] + _bf16(h0 * mask) @ _bf16(U)
    H = units
    sigmoid = 1 / (1 + np.exp(-z))
    want = np.concatenate(
        [sigmoid[:, :H], sigmoid[:, H : 2 * H], np.tanh(z[:, 2 * H : 3 * H]), sigmoid[:, 3 * H :]],
        axis=1,
    )
    np.testing.assert_allclose(gates[0], want, rtol=1e-5, atol=2e-6)
    dz, dh0, _ = ops.charlstm_lstm_backward(gates, cs, c0, d_hs, d_h, d_c, U, mask, bf16=True)
    want = (_bf16(dz[0]) @ _bf16(U).T) * mask.numpy()
    np.testing.assert_allclose(dh0, want, rtol=1e-5, atol=2e-6)
    f32 = ops.charlstm_lstm_backward(gates, cs, c0, d_hs, d_h, d_c, U, mask)[1]
    assert not np.allclose(dh0, f32, rtol=1e-5, atol=2e-6)  # the tolerance tells them apart


def test_the_ops_refuse_shapes_that_disagree(ops):
    with pytest.raises(tf.errors.InvalidArgumentError, match="shapes disagree"):
        ops.charlstm_lstm_forward(
            tf.zeros((2, 3, 20)), tf.zeros((3, 5)), tf.zeros((3, 5)), tf.zeros((5, 16)),
            tf.ones((3, 5)),
        )  # fmt: skip


@pytest.mark.parametrize(
    "regularizers",
    [{}, {"recurrent_dropout": 0.25, "weight_drop": 0.3, "dropout": 0.1}],
    ids=["plain", "the presets' dropouts"],
)
def test_a_model_on_the_compiled_kernel_has_the_xla_models_loss_and_gradients(ops, regularizers):
    config = ModelConfig(vocab_size=11, embedding_dim=6, units=8, num_layers=2, **regularizers)
    rng = np.random.default_rng(1)
    ids = tf.constant(rng.integers(0, 11, (3, 9)), tf.int32)
    targets = tf.constant(rng.integers(0, 11, (3, 9)), tf.int32)
    found = {}
    for name in ("xla", "compiled"):
        keras.utils.set_random_seed(5)  # the same weights
        model = build_model(config, kernel=name)
        keras.utils.set_random_seed(7)  # the same masks
        with tf.GradientTape() as tape:
            logits, states = model(ids, training=True)
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
            )
        grads = tape.gradient(loss, model.trainable_variables)
        found[name] = (loss, grads, states, [v.path for v in model.trainable_variables])
    (loss, grads, states, paths), (c_loss, c_grads, c_states, _) = found["xla"], found["compiled"]
    np.testing.assert_allclose(c_loss, loss, rtol=1e-6)
    for path, a, b in zip(paths, grads, c_grads):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7, err_msg=path)
    for a, b in zip(tf.nest.flatten(states), tf.nest.flatten(c_states)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "regularizers",
    [{}, {"recurrent_dropout": 0.25, "weight_drop": 0.3, "dropout": 0.1}],
    ids=["plain", "the presets' dropouts"],
)
def test_a_bfloat16_model_on_the_compiled_kernel_has_the_float32_loss_and_gradients_nearly(
    ops, regularizers
):
    """Loss within 1 %, every gradient's cosine with the float32 model's at least 0.99."""
    config = ModelConfig(vocab_size=11, embedding_dim=6, units=16, num_layers=2, **regularizers)
    rng = np.random.default_rng(1)
    ids = tf.constant(rng.integers(0, 11, (4, 20)), tf.int32)
    targets = tf.constant(rng.integers(0, 11, (4, 20)), tf.int32)
    found = {}
    for name, dtype in (("xla", "float32"), ("compiled", "bfloat16")):
        keras.utils.set_random_seed(5)
        model = build_model(config, matmul_dtype=dtype, kernel=name)
        keras.utils.set_random_seed(7)
        with tf.GradientTape() as tape:
            logits, _ = model(ids, training=True)
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
            )
        grads = tape.gradient(loss, model.trainable_variables)
        found[name] = (float(loss), grads, [v.path for v in model.trainable_variables])
    (loss, grads, paths), (b_loss, b_grads, _) = found["xla"], found["compiled"]
    assert abs(b_loss - loss) < 0.01 * loss
    for path, a, b in zip(paths, grads, b_grads):
        assert _cosine(a, b) >= 0.99, path


def _losses(events) -> list[float]:
    from charlstm.events import StepEvent  # noqa: PLC0415

    return [e.loss for e in events if isinstance(e, StepEvent)]


def test_training_on_either_kernel_gives_the_same_losses_and_the_run_moves_between_them(
    ops, tmp_path, text_file
):
    """Without dropout: XLA's random kernels and TensorFlow's own draw different masks from
    one seed, so with dropout the runs are alike but not the same."""
    config = tiny_config(str(text_file), epochs=1)
    model = dataclasses.replace(config.model, dropout=0.0)
    found = {}
    for name in ("xla", "compiled"):
        events: list = []
        run_config = dataclasses.replace(config, model=model, kernel=name, precision="float32")
        train(tmp_path / name, run_config, callback=events.append)
        found[name] = _losses(events)
    assert len(found["xla"]) > 100
    np.testing.assert_allclose(found["compiled"], found["xla"], rtol=1e-4)
    # a run trained on the compiled kernel loads (XLA loops) and samples as the other
    runs = [RunDir.open(tmp_path / name) for name in ("xla", "compiled")]
    texts = [
        "".join(Sampler(run.load_model(), run.tokenizer, loop).generate("a", 40))
        for run in runs
        for loop in ("xla", "compiled")
    ]
    assert len(set(texts)) == 1, texts
    # and resumes on the other kernel, where the steps go on
    resumed = train(tmp_path / "compiled", resume=True, epochs=2, kernel="xla")
    assert resumed.step > len(found["xla"])


def _train_command(tmp_path, name, *more, env=None):
    args = [*TINY_TRAIN_ARGS, "--precision", "float32", *more]
    return run_charlstm("train", tmp_path / "tiny.txt", "--out", tmp_path / name, *args,
                        env=env, timeout=300)  # fmt: skip


def _logged_losses(run) -> list[float]:
    return [json.loads(line)["train_loss"] for line in (run / "log.jsonl").open()]


def test_where_it_cannot_build_one_line_says_why_and_the_xla_loops_give_the_same_run(
    tmp_path, text_file
):
    """The build made to fail for real: the compiler named by $CXX is not there, and the
    kernel cache is empty (XDG_CACHE_HOME), so nothing built before is found."""
    broken = {"CXX": str(tmp_path / "no-such-g++"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    auto = _train_command(tmp_path, "auto", env=broken)
    assert auto.returncode == 0, auto.stderr[-3000:]
    warned = [line for line in auto.stderr.splitlines() if "kernel unavailable" in line]
    assert len(warned) == 1 and "no C++ compiler" in warned[0] and "no-such-g++" in warned[0]
    assert "kernel: xla" in auto.stderr.splitlines()
    xla = _train_command(tmp_path, "xla", "--kernel", "xla")
    assert xla.returncode == 0 and "kernel unavailable" not in xla.stderr
    assert _logged_losses(tmp_path / "auto") == _logged_losses(tmp_path / "xla")
    asked = _train_command(tmp_path, "asked", "--kernel", "compiled", env=broken)
    assert asked.returncode == 1 and asked.stdout == ""
    errors = [line for line in asked.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "--kernel compiled cannot run: no C++ compiler" in errors[0]
    assert "Traceback" not in asked.stderr
    # generation too: one line, and the XLA loop's text
    texts = {}
    for loops, env in (("auto", broken), ("xla", None)):
        done = run_charlstm("generate", tmp_path / "auto", "--length", "60", "--kernel", loops,
                            env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        warned = [line for line in done.stderr.splitlines() if "kernel unavailable" in line]
        assert len(warned) == (1 if env else 0), done.stderr
        texts[loops] = done.stdout
    assert texts["auto"] == texts["xla"] and len(texts["xla"]) >= 60
    asked = run_charlstm("generate", tmp_path / "auto", "--kernel", "compiled", env=broken)
    assert asked.returncode == 1 and asked.stdout == "" and "Traceback" not in asked.stderr
    assert "--kernel compiled cannot run: no C++ compiler" in asked.stderr.splitlines()[-1]


def test_the_start_of_a_run_names_the_compiled_kernel(ops, tmp_path, text_file):
    done = _train_command(tmp_path, "run", "--epochs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"kernel: compiled (MKL, {kernel.load().path})" in done.stderr.splitlines()
    # the installed command generates the same text on either kernel
    texts = [
        run_charlstm("generate", tmp_path / "run", "--length", "80", "--kernel", loops).stdout
        for loops in ("compiled", "xla")
    ]
    assert texts[0] == texts[1] and len(texts[0]) >= 80


_BUILD = (
    "from charlstm import kernel\n"
    "loaded = kernel.load()\n"
    "print(loaded.path if loaded.ops is not None else 'none: ' + loaded.reason)\n"
)


@pytest.mark.slow
def test_two_first_uses_at_once_build_one_kernel_both_load(ops, tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _BUILD],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    paths = [out.strip() for out, _ in outputs]
    assert paths[0] == paths[1] and paths[0].endswith(".so"), outputs
    built = [err for _, err in outputs if "built the compiled LSTM kernel" in err]
    assert len(built) == 1  # the second waited on the lock and found the first's file
    folder = tmp_path / "cache" / "charlstm" / "kernels"
    assert [p.name for p in folder.glob("*.so")] == [os.path.basename(paths[0])]
    assert not list(folder.glob(".lstm-*"))  # no temporary left


def test_a_venv_over_the_system_site_packages_finds_the_base_pythons_mkl(ops, tmp_path):
    # pip's mkl lies under the base Python's prefix there, not the venv's
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(tmp_path / "venv")], check=True)  # fmt: skip
    found = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "python"), "-c",
         "from charlstm.kernel import _mkl; print(*_mkl(), sep='\\n')"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    include, library = found.stdout.split()
    assert (Path(include) / "mkl_cblas.h").is_file()
    assert Path(library).name.startswith("libmkl_rt.so")


def test_an_unknown_kernel_is_refused():
    with pytest.raises(CharlstmError, match="kernel must be one of auto, compiled, xla"):
        kernel.choose("fast", "float32")


def test_auto_takes_the_compiled_kernel_where_it_measured_faster(ops):
    bf16_cpu, f32_cpu = frozenset({"avx512f", "avx512_bf16"}), frozenset({"avx2", "fma"})
    for flags in (bf16_cpu, f32_cpu):
        assert kernel.choose("auto", "float32", "lstm", 256, flags=flags) == "compiled"
        assert kernel.choose("auto", "float32", "lstm", 512, flags=flags) == "xla"
        assert kernel.choose("auto", "float32", "lstm", 512, True, flags) == "compiled"
        assert kernel.choose("auto", "float32", "layernorm", 256, flags=flags) == "xla"
        assert kernel.choose("compiled", "float32", "lstm", 512, flags=flags) == "compiled"
        assert kernel.choose("compiled", "bfloat16", "lstm", 256, flags=flags) == "compiled"
        assert kernel.choose("compiled", "bfloat16", "lstm", 256, True, flags) == "compiled"
    # bfloat16 products: the compiled loops at every size where the CPU has bfloat16 units
    assert kernel.choose("auto", "bfloat16", "lstm", 256, flags=bf16_cpu) == "compiled"
    assert kernel.choose("auto", "bfloat16", "lstm", 1024, flags=bf16_cpu) == "compiled"
    assert kernel.choose("auto", "bfloat16", "lstm", 1024, True, bf16_cpu) == "compiled"
    assert kernel.choose("auto", "bfloat16", "lstm", 256, flags=f32_cpu) == "xla"
    assert kernel.choose("auto", "bfloat16", "lstm", 256, True, f32_cpu) == "xla"
    assert kernel.choose("auto", "bfloat16", "layernorm", 256, flags=bf16_cpu) == "xla"


# (temperature, top_k, top_p): greedy, plain, top-k, top-p, both, a k beyond the vocabulary
_SETTINGS = [(0.0, 0, 1.0), (1.0, 0, 1.0), (0.7, 3, 1.0), (1.3, 0, 0.6), (0.8, 4, 0.9),
             (1.0, 50, 0.95)]  # fmt: skip


@pytest.mark.parametrize(
    "layers, units, streams, tied",
    [(1, 32, 1, False), (2, 40, 1, True), (3, 32, 5, False), (2, 16, 2, False)],
)
def test_the_generation_op_draws_what_the_xla_loop_draws(ops, layers, units, streams, tied):
    """Ids equal for every setting, states to rounding; 40 units cut unevenly between two
    threads, 16 run on one; a character made never drawn is never drawn."""
    V = 13
    config = ModelConfig(vocab_size=V, embedding_dim=units if tied else 6, units=units,
                         num_layers=layers, tie_embeddings=tied)  # fmt: skip
    keras.utils.set_random_seed(3)
    model = build_model(config)
    rng = np.random.default_rng(4)
    for w in model.weights:  # larger than the initial weights: sharper, varied distributions
        w.assign(rng.normal(0.0, 0.6, w.shape).astype(np.float32))
    never = tf.constant(np.where(np.arange(V) == 2, -np.inf, 0.0).astype(np.float32))
    states = [[_random(rng, (streams, units), 0.5) for _ in range(2)] for _ in range(layers)]
    last = tf.constant(rng.integers(0, V, streams), tf.int32)
    weights = generation_weights(model, never)
    steps, capacity = 50, 64
    for temperature, top_k, top_p in _SETTINGS:
        settings = [tf.constant(v) for v in (temperature, top_k, top_p, 9)]
        where = (tf.constant(5), tf.constant(steps))
        want = tf.function(draw_steps, jit_compile=True)(
            model, never, last, states, *where, *settings, top_k > 0 or top_p < 1, capacity
        )
        got = compiled_draw_steps(weights, last, states, *where, *settings, capacity)
        setting = f"temperature {temperature}, top-k {top_k}, top-p {top_p}"
        np.testing.assert_array_equal(got[0], want[0], err_msg=setting)
        np.testing.assert_array_equal(got[1], want[1], err_msg=setting)
        for a, b in zip(tf.nest.flatten(want[2]), tf.nest.flatten(got[2])):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=setting)
        ids = got[0].numpy()
        assert not (ids[:, :steps] == 2).any() and (ids[:, steps:] == 0).all()
        assert len(np.unique(ids[:, :steps])) > (1 if temperature == 0 else 3), setting


@pytest.mark.parametrize("streams", [1, 5])
def test_a_bfloat16_generation_step_is_the_product_of_the_rounded_factors(ops, streams):
    """One greedy step of the op in bfloat16, two layers of 40 units (two threads) against
    the recurrence computed here with every product's factors rounded to bfloat16: the same
    states and ids, and states that float32 products do not give."""
    V, H = 13, 40
    config = ModelConfig(vocab_size=V, embedding_dim=6, units=H, num_layers=2)
    keras.utils.set_random_seed(3)
    model = build_model(config, matmul_dtype="bfloat16")
    rng = np.random.default_rng(6)
    for w in model.weights:
        w.assign(rng.normal(0.0, 0.6, w.shape).astype(np.float32))
    never = tf.zeros(V)
    states = [[_random(rng, (streams, H), 0.5) for _ in range(2)] for _ in range(2)]
    last = tf.constant(rng.integers(0, V, streams), tf.int32)
    weights = generation_weights(model, never)
    table, recurrent, kernels, biases, head, head_bias = (w.numpy() for w in weights)
    greedy = [tf.constant(v) for v in (0.0, 0, 1.0, 9)]
    ids, _, got = compiled_draw_steps(weights, last, states, 0, 1, *greedy, 4, bf16=True)

    def lstm(z, c):
        i, f, g, o = np.split(z, 4, axis=1)
        sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(c), c

    x, want = None, []
    for layer, (h, c) in enumerate(states):
        z = _bf16(h) @ _bf16(recurrent[layer])
        z += table[last.numpy()] if layer == 0 else _bf16(x) @ _bf16(kernels[0]) + biases[0]
        x, c = lstm(z, c.numpy())
        want.append((x, c))
    for (h, c), (got_h, got_c) in zip(want, got):
        np.testing.assert_allclose(got_h, h, rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(got_c, c, rtol=1e-5, atol=2e-6)
    logits = _bf16(x) @ _bf16(head) + head_bias
    np.testing.assert_array_equal(ids[:, 0], logits.argmax(axis=1))
    f32 = compiled_draw_steps(weights, last, states, 0, 1, *greedy, 4)[2]
    assert not np.allclose(f32[1][0], want[1][0], rtol=1e-5, atol=2e-6)


def test_the_compiled_sampler_draws_a_bfloat16_model_with_bfloat16_products(ops):
    """The Sampler hands a bfloat16 model's draws to the op in bfloat16: its text is the op's
    in bfloat16 from the same position and seed, which parts from the op's in float32."""
    tokenizer = CharTokenizer.build("the quick brown fox jumps over the lazy dog.\n")
    config = ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=8, units=32,
                         num_layers=2)  # fmt: skip
    keras.utils.set_random_seed(2)
    model = build_model(config, matmul_dtype="bfloat16")
    for w in model.weights:
        w.assign(w * 3.0)
    from charlstm.config import SamplingConfig  # noqa: PLC0415

    sampler = Sampler(model, tokenizer, "compiled")
    got = "".join(sampler.generate("the ", 300, SamplingConfig(temperature=1.0, seed=5), chunk=300))
    weights = generation_weights(model, tf.constant(never_drawn(tokenizer)))
    texts = {}
    for bf16 in (True, False):
        states, last = sampler.prime(tokenizer.encode("the "), 1)
        ids = compiled_draw_steps(weights, last, states, 0, 300, 1.0, 0, 1.0, 5, 300, bf16)[0]
        texts[bf16] = tokenizer.decode(ids.numpy()[0])
    assert got == texts[True] != texts[False]


def test_the_compiled_sampler_writes_the_xla_samplers_text_in_any_chunks(ops):
    tokenizer = CharTokenizer.build("the quick brown fox jumps over the lazy dog.\n")
    config = ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=8, units=32,
                         num_layers=2)  # fmt: skip
    keras.utils.set_random_seed(2)
    model = build_model(config)
    for w in model.weights:
        w.assign(w * 3.0)
    from charlstm.config import SamplingConfig  # noqa: PLC0415

    sampling = SamplingConfig(temperature=0.9, top_k=10, top_p=0.95, seed=5)
    want = "".join(Sampler(model, tokenizer, "xla").generate("the ", 300, sampling))
    compiled = Sampler(model, tokenizer, "compiled")
    for chunk in (7, 256):
        assert "".join(compiled.generate("the ", 300, sampling, chunk=chunk)) == want
    several = list(compiled.generate("fox", 120, sampling, num_samples=3, chunk=50))
    expected = list(Sampler(model, tokenizer, "xla").generate("fox", 120, sampling, 3, 50))
    assert several == expected


def test_the_generation_op_refuses_an_id_outside_the_vocabulary(ops):
    config = ModelConfig(vocab_size=5, embedding_dim=4, units=8, num_layers=1)
    model = build_model(config)
    weights = generation_weights(model, tf.zeros(5))
    states = model.zero_states(1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside the vocabulary"):
        compiled_draw_steps(weights, tf.constant([5]), states, 0, 3, 1.0, 0, 1.0, 0, 4)
