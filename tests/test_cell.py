"""LSTMCell against Keras' LSTMCell, a NumPy loop of its docstring and finite differences;
LayerNormLSTMCell against a NumPy loop of its docstring and finite differences."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from charlstm.cell import LayerNormLSTMCell, LSTMCell

B, T, D, H = 2, 3, 5, 7
WEIGHT_NAMES = ("kernel", "recurrent_kernel", "bias")


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _numpy_lstm(x, h, c, kernel, recurrent_kernel, bias):
    """The docstring's equations, one step at a time. x: (B, T, D); h, c: (B, H)."""
    outputs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent_kernel + bias
        z_i, z_f, z_g, z_o = np.split(z, 4, axis=-1)
        c = _sigmoid(z_f) * c + _sigmoid(z_i) * np.tanh(z_g)
        h = _sigmoid(z_o) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1), h, c


def _random_case(seed=0):
    """Inputs, nonzero initial states and weights far from the initial ones, all float32."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, D)).astype("float32")
    h0 = rng.normal(scale=0.5, size=(B, H)).astype("float32")
    c0 = rng.normal(scale=0.5, size=(B, H)).astype("float32")
    weights = {
        "kernel": rng.normal(scale=0.5, size=(D, 4 * H)).astype("float32"),
        "recurrent_kernel": rng.normal(scale=0.5, size=(H, 4 * H)).astype("float32"),
        "bias": rng.normal(scale=0.5, size=(4 * H,)).astype("float32"),
    }
    return x, h0, c0, weights


def _rnn(cell):
    """The cell in the RNN the model uses, built for (B, T, D) inputs."""
    rnn = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    rnn.build((B, T, D))
    return rnn


def _assign(cell, weights):
    for name in WEIGHT_NAMES:
        getattr(cell, name).assign(weights[name])


@pytest.mark.parametrize("direction", ["ours_to_keras", "keras_to_ours"])
def test_cell_matches_keras_lstmcell_with_copied_weights(direction):
    x, h0, c0, weights = _random_case()
    keras.utils.set_random_seed(0)
    ours, theirs = _rnn(LSTMCell(H)), _rnn(keras.layers.LSTMCell(H))
    source, target = (ours, theirs) if direction == "ours_to_keras" else (theirs, ours)
    _assign(source.cell, weights)
    for name in WEIGHT_NAMES:
        getattr(target.cell, name).assign(getattr(source.cell, name))

    out, h, c = ours(x, initial_state=[h0, c0])
    out_k, h_k, c_k = theirs(x, initial_state=[h0, c0])

    assert out.shape == (B, T, H) and h.shape == (B, H) and c.shape == (B, H)
    np.testing.assert_allclose(out, out_k, rtol=0, atol=1e-5)
    np.testing.assert_allclose(h, h_k, rtol=0, atol=1e-5)
    np.testing.assert_allclose(c, c_k, rtol=0, atol=1e-5)


def test_cell_matches_numpy_loop_of_docstring_equations():
    x, h0, c0, weights = _random_case(seed=1)
    rnn = _rnn(LSTMCell(H))
    _assign(rnn.cell, weights)

    out, h, c = rnn(x, initial_state=[h0, c0])
    out_np, h_np, c_np = _numpy_lstm(
        x.astype("float64"),
        h0.astype("float64"),
        c0.astype("float64"),
        **{k: v.astype("float64") for k, v in weights.items()},
    )

    np.testing.assert_allclose(out, out_np, rtol=0, atol=1e-5)
    np.testing.assert_allclose(h, h_np, rtol=0, atol=1e-5)
    np.testing.assert_allclose(c, c_np, rtol=0, atol=1e-5)
    # the final output is h, and the states are not swapped
    np.testing.assert_array_equal(out[:, -1], h)


def _central_differences(loss, value, eps=1e-6):
    grad = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        saved = value[index]
        value[index] = saved + eps
        up = loss()
        value[index] = saved - eps
        down = loss()
        value[index] = saved
        grad[index] = (up - down) / (2 * eps)
    return grad


def _assert_gradients_match_central_differences(grads, loss, values, rtol, atol):
    """Each of `grads` (name -> autodiff gradient) equals the central differences of the
    NumPy `loss` with respect to values[name], which it must depend on."""
    for name, grad in grads.items():
        expected = _central_differences(loss, values[name])
        assert np.abs(expected).max() > 1e-2, name  # the loss does depend on it
        np.testing.assert_allclose(grad, expected, rtol=rtol, atol=atol, err_msg=name)


def test_cell_gradients_match_finite_differences():
    x, h0, c0, weights = _random_case(seed=2)
    rng = np.random.default_rng(3)
    # random projections so every output, h and c element carries its own weight in the loss
    w_out = rng.normal(size=(B, T, H))
    w_h, w_c = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    rnn = _rnn(LSTMCell(H))
    _assign(rnn.cell, weights)

    x_t, h0_t, c0_t = tf.constant(x), tf.constant(h0), tf.constant(c0)
    with tf.GradientTape() as tape:
        tape.watch([x_t, h0_t, c0_t])
        out, h, c = rnn(x_t, initial_state=[h0_t, c0_t])
        loss = (
            tf.reduce_sum(out * w_out.astype("float32"))
            + tf.reduce_sum(h * w_h.astype("float32"))
            + tf.reduce_sum(c * w_c.astype("float32"))
        )
    cell = rnn.cell
    sources = {
        "kernel": cell.kernel,
        "recurrent_kernel": cell.recurrent_kernel,
        "bias": cell.bias,
        "inputs": x_t,
        "h0": h0_t,
        "c0": c0_t,
    }
    grads = dict(zip(sources, tape.gradient(loss, list(sources.values())), strict=True))

    values = {name: v.astype("float64") for name, v in weights.items()}
    values.update(inputs=x.astype("float64"), h0=h0.astype("float64"), c0=c0.astype("float64"))

    def numpy_loss():
        o, hT, cT = _numpy_lstm(
            values["inputs"],
            values["h0"],
            values["c0"],
            values["kernel"],
            values["recurrent_kernel"],
            values["bias"],
        )
        return np.sum(o * w_out) + np.sum(hT * w_h) + np.sum(cT * w_c)

    _assert_gradients_match_central_differences(grads, numpy_loss, values, rtol=1e-3, atol=1e-4)


def test_cell_weights_have_keras_names_and_shapes():
    cell = LSTMCell(H)
    cell.build((B, D))

    assert [w.name for w in cell.weights] == list(WEIGHT_NAMES)
    assert [tuple(w.shape) for w in cell.weights] == [(D, 4 * H), (H, 4 * H), (4 * H,)]
    assert cell.state_size == [H, H] and cell.output_size == H


def test_cell_forget_bias_block_starts_at_one_and_the_others_at_zero():
    cell = LSTMCell(H)
    cell.build((B, D))
    bias = cell.bias.numpy()

    i, f, g, o = np.split(bias, 4)
    np.testing.assert_array_equal(f, np.ones(H))
    np.testing.assert_array_equal(np.concatenate([i, g, o]), np.zeros(3 * H))


def test_cell_bias_starts_at_zero_without_unit_forget_bias():
    cell = LSTMCell(H, unit_forget_bias=False)
    cell.build((B, D))

    np.testing.assert_array_equal(cell.bias.numpy(), np.zeros(4 * H))


def test_cell_recurrent_kernel_starts_orthogonal():
    keras.utils.set_random_seed(0)
    cell = LSTMCell(H)
    cell.build((B, D))
    recurrent = cell.recurrent_kernel.numpy()

    # (H, 4H) with orthonormal rows, as Keras' orthogonal initializer gives
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(H), atol=1e-5)


def test_cell_is_not_a_subclass_of_keras_lstm():
    mro = LSTMCell.__mro__

    assert keras.layers.LSTMCell not in mro
    assert keras.layers.LSTM not in mro
    assert keras.layers.Layer in mro


def test_cell_config_round_trips_through_from_config():
    cell = LSTMCell(
        H, kernel_initializer="he_normal", recurrent_initializer="zeros", unit_forget_bias=False
    )
    config = cell.get_config()

    assert config["units"] == H and config["unit_forget_bias"] is False
    assert LSTMCell.from_config(config).get_config() == config


def test_cell_is_registered_as_charlstm_lstmcell():
    assert keras.saving.get_registered_object("charlstm>LSTMCell") is LSTMCell

    serialized = keras.saving.serialize_keras_object(LSTMCell(H, unit_forget_bias=False))
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is LSTMCell
    assert restored.units == H and restored.unit_forget_bias is False


# LayerNormLSTMCell

LN_WEIGHT_NAMES = (
    *WEIGHT_NAMES,
    "input_gamma",
    "input_beta",
    "recurrent_gamma",
    "recurrent_beta",
    "cell_gamma",
    "cell_beta",
)


def _numpy_layer_norm(v, gamma, beta, eps=1e-5):
    mean = v.mean(axis=-1, keepdims=True)
    var = ((v - mean) ** 2).mean(axis=-1, keepdims=True)
    return gamma * (v - mean) / np.sqrt(var + eps) + beta


def numpy_layernorm_lstm(x, h, c, w):
    """LayerNormLSTMCell's docstring, one step at a time. x: (B, T, D); h, c: (B, H); w: its
    weights by name. Returns outputs (B, T, H), h_T, c_T."""
    outputs = []
    for t in range(x.shape[1]):
        z = (
            _numpy_layer_norm(x[:, t] @ w["kernel"], w["input_gamma"], w["input_beta"])
            + _numpy_layer_norm(
                h @ w["recurrent_kernel"], w["recurrent_gamma"], w["recurrent_beta"]
            )
            + w["bias"]
        )
        z_i, z_f, z_g, z_o = np.split(z, 4, axis=-1)
        c = _sigmoid(z_f) * c + _sigmoid(z_i) * np.tanh(z_g)
        h = _sigmoid(z_o) * np.tanh(_numpy_layer_norm(c, w["cell_gamma"], w["cell_beta"]))
        outputs.append(h)
    return np.stack(outputs, axis=1), h, c


def random_layernorm_weights(rng, D, H, dtype="float32"):
    """Every weight of a LayerNormLSTMCell far from its initial value: gammas around 1 and
    betas around 0 but each entry its own."""
    shapes = {"kernel": (D, 4 * H), "recurrent_kernel": (H, 4 * H), "bias": (4 * H,)}
    weights = {name: rng.normal(scale=0.5, size=shape) for name, shape in shapes.items()}
    for part, size in (("input", 4 * H), ("recurrent", 4 * H), ("cell", H)):
        weights[f"{part}_gamma"] = rng.uniform(0.5, 1.5, size) * rng.choice([-1, 1], size)
        weights[f"{part}_beta"] = rng.normal(scale=0.3, size=size)
    return {name: w.astype(dtype) for name, w in weights.items()}


def _layernorm_cell(weights, dtype="float32"):
    cell = LayerNormLSTMCell(H, dtype=dtype)
    cell.build((B, D))
    for name in LN_WEIGHT_NAMES:
        getattr(cell, name).assign(weights[name])
    return cell


def test_layernorm_cell_step_and_rnn_match_numpy_loop_of_docstring_equations():
    rng = np.random.default_rng(4)
    x, h0, c0, _ = _random_case(seed=4)
    weights = random_layernorm_weights(rng, D, H)
    cell = _layernorm_cell(weights)
    w64 = {k: v.astype("float64") for k, v in weights.items()}
    out_np, h_np, c_np = numpy_layernorm_lstm(
        x.astype("float64"), h0.astype("float64"), c0.astype("float64"), w64
    )

    h1, (h1_state, c1) = cell(x[:, 0], [h0, c0])  # one step
    np.testing.assert_allclose(h1, out_np[:, 0], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(h1, h1_state)
    _, h1_np, c1_np = numpy_layernorm_lstm(
        x[:, :1].astype("float64"), h0.astype("float64"), c0.astype("float64"), w64
    )
    np.testing.assert_allclose(c1, c1_np, rtol=0, atol=1e-5)

    rnn = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    out, h, c = rnn(x, initial_state=[h0, c0])  # T steps
    np.testing.assert_allclose(out, out_np, rtol=0, atol=1e-5)
    np.testing.assert_allclose(h, h_np, rtol=0, atol=1e-5)
    np.testing.assert_allclose(c, c_np, rtol=0, atol=1e-5)


def test_layernorm_cell_gradients_match_finite_differences_in_float64():
    """Float64 throughout, so central differences (eps 1e-6) are good to about 1e-9 and the
    tolerance can be tight."""
    rng = np.random.default_rng(5)
    x, h0, c0 = (rng.normal(size=shape) for shape in ((B, T, D), (B, H), (B, H)))
    weights = random_layernorm_weights(rng, D, H, dtype="float64")
    w_out, w_h, w_c = rng.normal(size=(B, T, H)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
    cell = _layernorm_cell(weights, dtype="float64")

    x_t, h_t, c_t = tf.constant(x), tf.constant(h0), tf.constant(c0)
    with tf.GradientTape() as tape:
        tape.watch([x_t, h_t, c_t])
        h, c, outputs = h_t, c_t, []
        for t in range(T):
            out, (h, c) = cell(x_t[:, t], [h, c])
            outputs.append(out)
        loss = (
            tf.reduce_sum(tf.stack(outputs, axis=1) * w_out)
            + tf.reduce_sum(h * w_h)
            + tf.reduce_sum(c * w_c)
        )
    sources = {name: getattr(cell, name) for name in LN_WEIGHT_NAMES}
    sources |= {"inputs": x_t, "h0": h_t, "c0": c_t}
    grads = dict(zip(sources, tape.gradient(loss, list(sources.values())), strict=True))

    values = {**weights, "inputs": x, "h0": h0, "c0": c0}

    def numpy_loss():
        o, hT, cT = numpy_layernorm_lstm(values["inputs"], values["h0"], values["c0"], values)
        return np.sum(o * w_out) + np.sum(hT * w_h) + np.sum(cT * w_c)

    _assert_gradients_match_central_differences(grads, numpy_loss, values, rtol=1e-6, atol=1e-7)


def test_layernorm_cell_output_ignores_the_scale_of_its_kernels_unlike_lstmcell():
    """LN(h @ (s U)) = LN(h @ U) for s > 0, whatever gamma and beta: scaling the recurrent
    kernel (or the kernel) by 10 leaves the step unchanged; a plain LSTM's step changes."""
    rng = np.random.default_rng(6)
    x, h0, c0, _ = _random_case(seed=6)
    weights = random_layernorm_weights(rng, D, H)
    normalized, plain = _layernorm_cell(weights), LSTMCell(H)
    plain.build((B, D))
    _assign(plain, weights)
    before = [normalized(x[:, 0], [h0, c0]), plain(x[:, 0], [h0, c0])]

    for name in ("recurrent_kernel", "kernel"):
        for cell in (normalized, plain):
            getattr(cell, name).assign(10 * getattr(cell, name))
        (h_ln, (_, c_ln)), (h_plain, _) = (cell(x[:, 0], [h0, c0]) for cell in (normalized, plain))
        # exact but for eps: sqrt(var + eps) moves LN's output by about eps / (2 var), with
        # var(h @ U) about 0.4 here a few 1e-5; the plain LSTM moves by more than 0.1
        np.testing.assert_allclose(h_ln, before[0][0], rtol=0, atol=2e-4, err_msg=name)
        np.testing.assert_allclose(c_ln, before[0][1][1], rtol=0, atol=2e-4, err_msg=name)
        assert np.abs(h_plain - before[1][0]).max() > 0.1, name


def test_layernorm_cell_weights_names_shapes_and_initial_values():
    keras.utils.set_random_seed(0)
    cell = LayerNormLSTMCell(H)
    cell.build((B, D))

    assert [w.name for w in cell.weights] == list(LN_WEIGHT_NAMES)
    assert [tuple(w.shape) for w in cell.weights] == [
        (D, 4 * H), (H, 4 * H), (4 * H,), (4 * H,), (4 * H,), (4 * H,), (4 * H,), (H,), (H,)
    ]  # fmt: skip
    assert cell.state_size == [H, H] and cell.output_size == H
    i, f, g, o = np.split(cell.bias.numpy(), 4)  # the LSTMCell's layout: forget bias 1
    np.testing.assert_array_equal(f, np.ones(H))
    np.testing.assert_array_equal(np.concatenate([i, g, o]), np.zeros(3 * H))
    for part in ("input", "recurrent", "cell"):
        np.testing.assert_array_equal(getattr(cell, f"{part}_gamma").numpy(), 1.0)
        np.testing.assert_array_equal(getattr(cell, f"{part}_beta").numpy(), 0.0)


def test_layernorm_cell_is_registered_and_its_config_round_trips():
    assert keras.saving.get_registered_object("charlstm>LayerNormLSTMCell") is LayerNormLSTMCell
    cell = LayerNormLSTMCell(H, recurrent_initializer="zeros", unit_forget_bias=False)
    config = cell.get_config()
    assert config["units"] == H and config["unit_forget_bias"] is False
    assert LayerNormLSTMCell.from_config(config).get_config() == config

    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cell))
    assert type(restored) is LayerNormLSTMCell and restored.get_config() == config
    # not an LSTMCell: code that runs LSTMCell's equations on a cell's weights (the probe)
    # must not take it for one
    assert not {LSTMCell, keras.layers.LSTMCell, keras.layers.LSTM} & set(LayerNormLSTMCell.__mro__)
