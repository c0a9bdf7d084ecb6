"""probe: the trace is held to the model itself; features, cell search, gradients, losses."""

import keras
import numpy as np
import pytest

from charlstm.config import ModelConfig
from charlstm.explore import probe
from charlstm.explore.rnn import build_rnn_model
from charlstm.model import build_model
from charlstm.tokenizer import CharTokenizer

E, H, N = 5, 7, 2
TEXT = "def f(x):\n    return 'a(b' + g(x)\n"


@pytest.fixture(scope="module")
def tokenizer():
    return CharTokenizer.build(TEXT + "xyz")


@pytest.fixture(scope="module")
def model(tokenizer):
    keras.utils.set_random_seed(3)
    model = build_model(
        ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=E, units=H, num_layers=N)
    )
    # weights far from their initial values, so every gate takes values across (0, 1)
    rng = np.random.default_rng(0)
    for v in model.weights:
        v.assign(rng.normal(scale=0.6, size=v.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def traced(model, tokenizer):
    return probe.trace(model, tokenizer, TEXT)


def test_trace_h_and_c_equal_the_rnn_layers_of_the_model(model, tokenizer, traced):
    ids = tokenizer.encode(TEXT)[None, :]  # (1, T)
    x = model.embedding(ids)
    for layer, rnn in zip(traced.layers, model.rnns):
        x, h, c = rnn(x)
        np.testing.assert_allclose(layer.h, np.asarray(x)[0], rtol=0, atol=1e-5)
        np.testing.assert_allclose(layer.c[-1], np.asarray(c)[0], rtol=0, atol=1e-5)
        np.testing.assert_allclose(layer.h[-1], np.asarray(h)[0], rtol=0, atol=1e-5)


def test_trace_c_at_every_step_equals_the_states_of_model_step(model, tokenizer, traced):
    states = model.zero_states(1)
    for t, j in enumerate(tokenizer.encode(TEXT)):
        _, states = model.step(np.array([j], np.int32), states)
        for layer, (h, c) in zip(traced.layers, states):
            np.testing.assert_allclose(layer.c[t], np.asarray(c)[0], rtol=0, atol=1e-5)
            np.testing.assert_allclose(layer.h[t], np.asarray(h)[0], rtol=0, atol=1e-5)


def test_trace_probs_equal_softmax_of_model_logits(model, tokenizer, traced):
    logits, _ = model(tokenizer.encode(TEXT)[None, :])

    expected = np.asarray(keras.ops.softmax(logits, axis=-1))[0]
    assert traced.probs.shape == (len(TEXT), tokenizer.vocab_size)
    np.testing.assert_allclose(traced.probs, expected, rtol=0, atol=1e-6)


def test_trace_from_given_states_continues_the_model(model, tokenizer):
    first, rest = TEXT[:9], TEXT[9:]
    _, states = model(tokenizer.encode(first)[None, :])

    continued = probe.trace(model, tokenizer, rest, states=states)
    whole = probe.trace(model, tokenizer, TEXT)

    np.testing.assert_allclose(continued.layers[1].c, whole.layers[1].c[9:], atol=1e-5)


def test_trace_gates_satisfy_the_cell_equations(traced):
    layer = traced.layers[0]
    c_prev = np.vstack([np.zeros((1, H)), layer.c[:-1]])

    np.testing.assert_allclose(layer.c, layer.f * c_prev + layer.i * layer.g, atol=1e-6)
    np.testing.assert_allclose(layer.h, layer.o * np.tanh(layer.c), atol=1e-6)
    assert 0 < layer.f.min() and layer.f.max() < 1 and layer.g.min() < 0 < layer.g.max()


def test_trace_keeps_the_characters_and_scores_each_next_one(tokenizer, traced):
    assert traced.text == TEXT and traced.vocab == tokenizer.chars
    bits = traced.surprisal_bits()
    ids = tokenizer.encode(TEXT)
    assert bits.shape == (len(TEXT) - 1,)
    np.testing.assert_allclose(bits[4], -np.log2(traced.probs[4, ids[5]]), rtol=1e-6)
    top = traced.top_next(4, k=3)
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    assert top[0][1] == pytest.approx(traced.probs[4].max())


def test_trace_refuses_a_model_that_is_not_an_lstm(tokenizer):
    rnn = build_rnn_model(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=3, units=4))
    with pytest.raises(TypeError, match="not an LSTM"):
        probe.trace(rnn, tokenizer, "def")


def test_text_features_track_quotes_brackets_column_and_indentation():
    text = "a('x)'\n  b]\n"
    f = probe.text_features(text)

    np.testing.assert_array_equal(f["in_quotes"], [0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(f["bracket_depth"], [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(f["column"], [1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 0])
    np.testing.assert_array_equal(f["indentation"], [0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 2, 0])
    np.testing.assert_array_equal(f["line_start"], [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])


def test_find_cells_ranks_the_unit_that_copies_a_feature_first(traced):
    feature = traced.layers[1].c[:, 4] * 3 + 1  # an exact linear function of one cell
    noise = np.random.default_rng(0).normal(size=len(feature))

    (best,) = probe.find_cells(traced, {"copy": feature, "noise": noise}, top=1)[:1]

    assert (best.feature, best.layer, best.unit) == ("copy", 1, 4)
    assert best.correlation == pytest.approx(1.0)


def test_gate_saturation_counts_steps_below_and_above_thresholds(traced):
    shut, open_ = probe.gate_saturation(traced, 1)["f"]
    f = traced.layers[1].f

    assert shut.shape == open_.shape == (H,)
    np.testing.assert_allclose(shut, (f < 0.1).sum(axis=0) / len(f))
    np.testing.assert_allclose(open_, (f > 0.9).sum(axis=0) / len(f))


def test_forget_half_life_is_where_the_product_of_f_halves(traced):
    life = probe.forget_half_life(traced, 0)
    mean_log_f = np.log(traced.layers[0].f).mean(axis=0)

    np.testing.assert_allclose(np.exp(mean_log_f * life), 0.5, rtol=1e-6)


def test_state_gradient_norms_match_central_differences_of_the_model(model, tokenizer):
    ids = tokenizer.encode(TEXT[:6])[None, :].repeat(2, axis=0)
    ids[1, 0] = tokenizer.encode("x")[0]
    targets = tokenizer.encode("fx")
    t, layer, eps = 2, N - 1, 1e-2  # the top layer: c^top_t reaches the loss only through time

    norms = probe.state_gradient_norms(model, ids, targets)

    _, states = model(ids[:, : t + 1])  # the states after step t
    states = [[np.asarray(h, np.float64), np.asarray(c, np.float64)] for h, c in states]

    # dL/dc_t is the total derivative: h_t = o_t * tanh(c_t) moves with c_t
    o = np.stack([probe.trace(model, tokenizer, tokenizer.decode(row[: t + 1])).layers[layer].o[t]
                  for row in ids])  # fmt: skip

    def loss(c):  # sum over the batch of -ln p(target) at the last step, from c^top_t = c
        given = [[h.astype("float32"), c_.astype("float32")] for h, c_ in states]
        given[layer] = [(o * np.tanh(c)).astype("float32"), c.astype("float32")]
        logits, _ = model(ids[:, t + 1 :], given)
        p = keras.ops.softmax(np.asarray(logits[:, -1], np.float64), axis=-1)
        return -np.log(np.asarray(p)[np.arange(2), targets]).sum()

    c0 = states[layer][1]
    grad = np.zeros_like(c0)
    for idx in np.ndindex(*c0.shape):
        step = np.zeros_like(c0)
        step[idx] = eps
        grad[idx] = (loss(c0 + step) - loss(c0 - step)) / (2 * eps)
    expected = np.linalg.norm(grad, axis=-1).mean()
    assert norms["h"].shape == norms["c"].shape == (N, 6)
    assert norms["c"][layer, 6 - 1 - t] == pytest.approx(expected, rel=2e-2)


def test_state_gradient_norms_of_a_tanh_rnn_have_h_only_and_shrink_with_small_weights():
    keras.utils.set_random_seed(0)
    rnn = build_rnn_model(
        ModelConfig(vocab_size=9, embedding_dim=3, units=4, num_layers=1),
        recurrent_initializer=keras.initializers.Orthogonal(gain=0.3),
    )
    ids = np.random.default_rng(0).integers(0, 9, size=(3, 12))

    norms = probe.state_gradient_norms(rnn, ids, np.array([1, 2, 3]))

    assert set(norms) == {"h"} and norms["h"].shape == (1, 12)
    assert norms["h"][0, 11] < 1e-3 * norms["h"][0, 0]
