"""FusedLSTM is held to the reference RNN(LSTMCell): same weights, same loss and gradients."""

import keras
import numpy as np
import tensorflow as tf

from charlstm.cell import LSTMCell
from charlstm.config import ModelConfig, TrainConfig
from charlstm.fused import FusedLSTM, lstm_forward, lstm_recurrence
from charlstm.model import build_model
from charlstm.steps import make_optimizer, make_train_step, nll_sum

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
        make_train_step(model, make_optimizer(TrainConfig(warmup_steps=1)))
        for model in (fused, reference)
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


def _regularized(**rates):
    layer = FusedLSTM(CONFIG.units, **rates)
    x = tf.constant(np.random.default_rng(4).normal(size=(B, T, 4)), tf.float32)
    layer(x)  # build
    xw = layer.project(tf.transpose(x, [1, 0, 2]))
    return layer, xw, _data()[2][0]


def _forward(layer, xw, state, h_mask=None, kernel_mask=1.0):
    U = layer.cell.recurrent_kernel * kernel_mask
    hs, _, _ = lstm_forward(xw, *state, U, h_mask)
    return hs


def test_recurrent_dropout_and_weight_drop_use_one_mask_per_window_in_training_only():
    layer, xw, state = _regularized(recurrent_dropout=0.5, weight_drop=0.5)
    plain = _forward(layer, xw, state)
    np.testing.assert_allclose(layer.recur(xw, state)[0], plain, atol=1e-6)  # inference

    before = layer.seed_generator.state.numpy()
    trained = layer.recur(xw, state, training=True)[0]
    layer.seed_generator.state.assign(before)  # draw the same masks again
    h_mask, kernel_mask = layer.masks(B, training=True)
    # one m (B, H) applied at every one of the T steps, one M (H, 4H) on the kernel: the
    # fused output is the plain loop's under exactly these masks
    assert h_mask.shape == (B, CONFIG.units) and kernel_mask.shape == (CONFIG.units, 28)
    assert set(np.unique(h_mask)) == {0.0, 2.0} and set(np.unique(kernel_mask)) == {0.0, 2.0}
    np.testing.assert_allclose(trained, _forward(layer, xw, state, h_mask, kernel_mask), atol=1e-5)
    assert not np.allclose(trained, plain, atol=1e-3)
    # the next window draws new masks
    next_h, next_kernel = layer.masks(B, training=True)
    assert not np.array_equal(next_h, h_mask) and not np.array_equal(next_kernel, kernel_mask)


def test_the_masked_recurrence_has_autodiffs_gradients():
    layer, xw, (h0, c0) = _regularized()
    U = tf.convert_to_tensor(layer.cell.recurrent_kernel)
    mask = tf.constant(np.random.default_rng(5).integers(0, 2, (B, CONFIG.units)) * 2.0, tf.float32)
    weights = tf.constant(np.random.default_rng(6).normal(size=(T, B, CONFIG.units)), tf.float32)
    grads = []
    for run in (lstm_recurrence, lambda *a: lstm_forward(*a)[:1]):
        with tf.GradientTape() as tape:
            tape.watch([xw, h0, c0, U])
            hs = run(xw, h0, c0, U, mask)[0]
            loss = tf.reduce_sum(hs * weights)
        grads.append(tape.gradient(loss, [xw, h0, c0, U]))
    for fused_grad, autodiff_grad in zip(*grads):
        assert float(tf.reduce_max(tf.abs(autodiff_grad))) > 0
        np.testing.assert_allclose(fused_grad, autodiff_grad, rtol=1e-4, atol=1e-5)
