"""TanhRNNCell against Keras' SimpleRNNCell and a NumPy loop; CharRNN's state in and out."""

import keras
import numpy as np
import pytest

from charlstm.config import ModelConfig
from charlstm.explore.rnn import CharRNN, TanhRNNCell, build_rnn_model

B, T, D, H = 2, 3, 5, 7
V, E, N = 11, 4, 2
WEIGHT_NAMES = ("kernel", "recurrent_kernel", "bias")


def _random_case(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, D)).astype("float32")
    h0 = rng.normal(scale=0.5, size=(B, H)).astype("float32")
    weights = {
        "kernel": rng.normal(scale=0.5, size=(D, H)).astype("float32"),
        "recurrent_kernel": rng.normal(scale=0.5, size=(H, H)).astype("float32"),
        "bias": rng.normal(scale=0.5, size=(H,)).astype("float32"),
    }
    return x, h0, weights


def _rnn(cell):
    rnn = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    rnn.build((B, T, D))
    return rnn


def test_cell_matches_keras_simplernncell_with_copied_weights():
    x, h0, weights = _random_case()
    ours, theirs = _rnn(TanhRNNCell(H)), _rnn(keras.layers.SimpleRNNCell(H))
    for name in WEIGHT_NAMES:
        getattr(ours.cell, name).assign(weights[name])
        getattr(theirs.cell, name).assign(getattr(ours.cell, name))

    out, h = ours(x, initial_state=[h0])
    out_k, h_k = theirs(x, initial_state=[h0])

    assert out.shape == (B, T, H) and h.shape == (B, H)
    np.testing.assert_allclose(out, out_k, rtol=0, atol=1e-5)
    np.testing.assert_allclose(h, h_k, rtol=0, atol=1e-5)


def test_cell_matches_numpy_loop_of_docstring_equation():
    x, h, weights = _random_case(seed=1)
    rnn = _rnn(TanhRNNCell(H))
    for name in WEIGHT_NAMES:
        getattr(rnn.cell, name).assign(weights[name])

    out, _ = rnn(x, initial_state=[h])

    expected = []
    for t in range(T):
        h = np.tanh(x[:, t] @ weights["kernel"] + h @ weights["recurrent_kernel"] + weights["bias"])
        expected.append(h)
    np.testing.assert_allclose(out, np.stack(expected, axis=1), rtol=0, atol=1e-5)


def test_cell_get_config_round_trips_through_keras_serialization():
    cell = TanhRNNCell(H, recurrent_initializer=keras.initializers.Orthogonal(gain=2.0))
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cell))

    assert isinstance(rebuilt, TanhRNNCell)
    assert rebuilt.units == H
    assert rebuilt.recurrent_initializer.gain == 2.0


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_rnn_model(ModelConfig(vocab_size=V, embedding_dim=E, units=H, num_layers=N))


def test_char_rnn_returns_logits_and_one_h_per_layer(model):
    ids = np.random.default_rng(0).integers(0, V, size=(B, T)).astype("int32")

    logits, states = model(ids)

    assert tuple(logits.shape) == (B, T, V)
    assert [len(s) for s in states] == [1] * N
    assert all(tuple(h.shape) == (B, H) for (h,) in states)


def test_char_rnn_t_steps_equal_t_calls_of_step_carrying_state(model):
    ids = np.random.default_rng(1).integers(0, V, size=(B, T)).astype("int32")
    logits, final = model(ids)

    states = model.zero_states(B)
    for t in range(T):
        step_logits, states = model.step(ids[:, t], states)
        np.testing.assert_allclose(step_logits, logits[:, t], rtol=0, atol=1e-5)
    for (h,), (h_e,) in zip(states, final):
        np.testing.assert_allclose(h, h_e, rtol=0, atol=1e-5)


def test_char_rnn_two_halves_with_carried_state_equal_the_whole(model):
    ids = np.random.default_rng(2).integers(0, V, size=(B, 2 * T)).astype("int32")
    whole, _ = model(ids)

    first, states = model(ids[:, :T])
    second, _ = model(ids[:, T:], states)

    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-5)


def test_char_rnn_recurrent_initializer_reaches_every_cell():
    keras.utils.set_random_seed(0)
    config = ModelConfig(vocab_size=V, embedding_dim=E, units=H, num_layers=N)
    model = build_rnn_model(config, recurrent_initializer=keras.initializers.Orthogonal(gain=3.0))

    for rnn in model.rnns:
        u = np.asarray(rnn.cell.recurrent_kernel)
        np.testing.assert_allclose(u.T @ u, 9.0 * np.eye(H), atol=1e-4)


def test_char_rnn_refuses_a_config_without_vocab_size():
    with pytest.raises(ValueError, match="vocab_size"):
        CharRNN(ModelConfig(units=H))
