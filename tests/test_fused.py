"""FusedLSTM is held to the reference RNN(LSTMCell): same weights, same loss and gradients."""

import keras
import numpy as np
import tensorflow as tf

from charlstm.cell import LSTMCell
from charlstm.config import ModelConfig, TrainConfig
from charlstm.evaluate import nll_sum
from charlstm.fused import FusedLSTM
from charlstm.model import build_model
from charlstm.train import make_optimizer, make_train_step

CONFIG = ModelConfig(vocab_size=11, embedding_dim=5, units=7, num_layers=2, dropout=0.0)
B, T = 3, 9


def _pair():
    fused, reference = build_model(CONFIG, fused=True), build_model(CONFIG, fused=False)
    assert [v.path for v in fused.weights] == [v.path for v in reference.weights]
    for a, b in zip(fused.weights, reference.weights):
        b.assign(a)
    return fused, reference


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, CONFIG.vocab_size, (B, T), dtype=np.int32)
    y = rng.integers(0, CONFIG.vocab_size, (B, T), dtype=np.int32)
    states = [
        [tf.constant(rng.normal(size=(B, CONFIG.units)), tf.float32) for _ in "hc"]
        for _ in range(CONFIG.num_layers)
    ]
    return x, y, states


def test_fused_layer_gives_the_reference_loss_states_and_gradients():
    fused, reference = _pair()
    x, y, states = _data()
    results = []
    for model in (fused, reference):
        with tf.GradientTape() as tape:
            nll, out_states = nll_sum(model, x, y, states)
        grads = tape.gradient(nll, model.trainable_variables)
        results.append((nll, out_states, [tf.convert_to_tensor(g) for g in grads]))
    (nll_f, states_f, grads_f), (nll_r, states_r, grads_r) = results
    np.testing.assert_allclose(nll_f, nll_r, rtol=1e-5)
    for pair_f, pair_r in zip(states_f, states_r):
        for a, b in zip(pair_f, pair_r):
            np.testing.assert_allclose(a, b, atol=1e-5)
    for g_f, g_r in zip(grads_f, grads_r):
        assert float(tf.reduce_max(tf.abs(g_r))) > 0
        np.testing.assert_allclose(g_f, g_r, rtol=1e-4, atol=1e-4)


def test_compiled_fused_train_step_follows_the_reference_over_several_steps():
    fused, reference = _pair()
    steps = [
        make_train_step(model, make_optimizer(TrainConfig(), 100)) for model in (fused, reference)
    ]
    carried = [_data()[2], _data()[2]]
    for k in range(4):
        x, y, _ = _data(seed=k + 1)
        losses = []
        for i, step in enumerate(steps):
            loss, carried[i] = step(tf.constant(x), tf.constant(y), carried[i])
            losses.append(float(loss))
        np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
    for a, b in zip(fused.weights, reference.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)


def test_fused_layer_alone_matches_rnn_of_the_cell():
    x = tf.constant(np.random.default_rng(3).normal(size=(B, T, 4)), tf.float32)
    _, _, states = _data()
    fused = FusedLSTM(CONFIG.units)
    reference = keras.layers.RNN(LSTMCell(CONFIG.units), return_sequences=True, return_state=True)
    fused(x, initial_state=states[0])
    reference(x, initial_state=states[0])
    for a, b in zip(fused.weights, reference.weights):
        b.assign(a)
    for got, want in zip(fused(x, initial_state=states[0]), reference(x, initial_state=states[0])):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert fused(x)[0].shape == (B, T, CONFIG.units)  # zero initial state
