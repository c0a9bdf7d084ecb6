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

import keras
import numpy as np
import pytest
import tensorflow as tf

from charlstm import fused, kernel
from charlstm.config import ModelConfig
from charlstm.errors import CharlstmError
from charlstm.model import build_model
from charlstm.rundir import RunDir
from charlstm.sample import Sampler
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


def test_the_compiled_loops_equal_the_xla_loops(ops):
    rng = np.random.default_rng(0)
    T, B, H = 7, 3, 5
    xw, h0, c0 = _random(rng, (T, B, 4 * H)), _random(rng, (B, H), 0.5), _random(rng, (B, H))
    U = _random(rng, (H, 4 * H), 0.4)
    mask = tf.constant((rng.random((B, H)) > 0.3).astype(np.float32) / 0.7)
    want = fused._forward_loop(xw, h0, c0, U, mask)
    got = ops.charlstm_lstm_forward(xw, h0, c0, U, mask)
    for name, a, b in zip(("hs", "cs", "gates"), want, got):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=name)
    hs, cs, gates = want
    d_hs, d_h, d_c = _random(rng, (T, B, H)), _random(rng, (B, H)), _random(rng, (B, H))
    want = fused._backward_loop(gates, cs, c0, d_hs, d_h, d_c, U, mask)
    got = ops.charlstm_lstm_backward(gates, cs, c0, d_hs, d_h, d_c, U, mask)
    for name, a, b in zip(("dz", "dh0", "dc0"), want, got):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=name)


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
    texts = ["".join(Sampler(run.load_model(), run.tokenizer).generate("a", 40)) for run in runs]
    assert texts[0] == texts[1]
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


def test_the_start_of_a_run_names_the_compiled_kernel(ops, tmp_path, text_file):
    done = _train_command(tmp_path, "run", "--epochs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"kernel: compiled (MKL, {kernel.load().path})" in done.stderr.splitlines()


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


def test_an_unknown_kernel_is_refused():
    with pytest.raises(CharlstmError, match="kernel must be one of auto, compiled, xla"):
        kernel.choose("fast", "float32")


def test_auto_takes_the_compiled_kernel_where_it_measured_faster(ops):
    assert kernel.choose("auto", "float32", "lstm", 256) == "compiled"
    assert kernel.choose("auto", "float32", "lstm", 512) == "xla"
    assert kernel.choose("auto", "bfloat16", "lstm", 256) == "xla"
    assert kernel.choose("auto", "float32", "layernorm", 256) == "xla"
    assert kernel.choose("compiled", "float32", "lstm", 512) == "compiled"
