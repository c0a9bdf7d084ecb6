"""CharLSTM: shapes, state carried across windows and steps, dropout, variable paths; the
layer-normalized model (cell "layernorm") against NumPy, its reference and a training run."""

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from charlstm.config import ModelConfig, SamplingConfig
from charlstm.data import eval_windows
from charlstm.errors import CharlstmError
from charlstm.evaluate import evaluate_windows
from charlstm.model import (
    CharLSTM,
    LayerNormCharLSTM,
    RNNCharLSTM,
    RNNLayerNormCharLSTM,
    build_model,
    memory_estimate,
    weight_shapes,
)
from charlstm.rundir import RunDir
from charlstm.sample import Sampler
from charlstm.trainer import train
from tests.conftest import tiny_config
from tests.test_cell import numpy_layernorm_lstm, random_layernorm_weights

B, T, V, E, H, N = 2, 6, 11, 5, 7, 2
CONFIG = ModelConfig(vocab_size=V, embedding_dim=E, units=H, num_layers=N, dropout=0.0)
ATOL = 1e-5


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_model(CONFIG)


@pytest.fixture(scope="module")
def ids():
    return np.random.default_rng(0).integers(0, V, size=(B, T)).astype("int32")


@pytest.fixture(scope="module")
def states():
    rng = np.random.default_rng(1)
    return [
        [rng.normal(scale=0.5, size=(B, H)).astype("float32") for _ in range(2)] for _ in range(N)
    ]


def _assert_states_close(actual, expected):
    assert len(actual) == len(expected)
    for (h, c), (h_e, c_e) in zip(actual, expected, strict=True):
        np.testing.assert_allclose(h, h_e, rtol=0, atol=ATOL)
        np.testing.assert_allclose(c, c_e, rtol=0, atol=ATOL)


def test_model_returns_logits_and_one_h_c_pair_per_layer(model, ids):
    logits, states = model(ids)

    assert tuple(logits.shape) == (B, T, V)
    assert len(states) == N
    for h, c in states:
        assert tuple(h.shape) == (B, H) and tuple(c.shape) == (B, H)


def test_model_on_t_steps_equals_two_halves_with_carried_state(model, ids, states):
    logits, final = model(ids, states)
    first_logits, mid = model(ids[:, : T // 2], states)
    second_logits, end = model(ids[:, T // 2 :], mid)

    np.testing.assert_allclose(
        np.concatenate([first_logits, second_logits], axis=1), logits, rtol=0, atol=ATOL
    )
    _assert_states_close(end, final)
    # the carried state matters: starting the second half from zeros gives other logits
    restarted, _ = model(ids[:, T // 2 :])
    assert not np.allclose(restarted, second_logits, atol=1e-3)


def test_model_step_t_times_equals_call_on_t_steps(model, ids, states):
    logits, final = model(ids, states)

    carried = states
    for t in range(T):
        step_logits, carried = model.step(ids[:, t], carried)
        assert tuple(step_logits.shape) == (B, V)
        np.testing.assert_allclose(step_logits, logits[:, t], rtol=0, atol=ATOL, err_msg=f"t={t}")
    _assert_states_close(carried, final)


def test_model_with_no_states_equals_zero_states(model, ids):
    zeros = model.zero_states(B)
    assert len(zeros) == N
    for h, c in zeros:
        np.testing.assert_array_equal(h, np.zeros((B, H)))
        np.testing.assert_array_equal(c, np.zeros((B, H)))

    logits, final = model(ids)
    logits_zero, final_zero = model(ids, zeros)

    np.testing.assert_allclose(logits, logits_zero, rtol=0, atol=ATOL)
    _assert_states_close(final, final_zero)


def _dropout_models():
    """The same weights with dropout 0.5 and with dropout 0."""
    keras.utils.set_random_seed(0)
    dropped = build_model(dataclasses.replace(CONFIG, dropout=0.5))
    plain = build_model(CONFIG)
    plain.set_weights(dropped.get_weights())
    return dropped, plain


def test_model_dropout_off_outside_training_equals_no_dropout(ids, states):
    dropped, plain = _dropout_models()

    logits, final = dropped(ids, states, training=False)
    again, _ = dropped(ids, states, training=False)
    expected, expected_final = plain(ids, states)

    np.testing.assert_array_equal(logits, again)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=ATOL)
    _assert_states_close(final, expected_final)


def test_model_dropout_in_training_changes_outputs(ids, states):
    dropped, plain = _dropout_models()

    inference, _ = dropped(ids, states, training=False)
    training, training_states = dropped(ids, states, training=True)

    assert not np.allclose(training, inference, atol=1e-3)
    # dropout sits between layers, so the second layer's state moves too
    _, inference_states = dropped(ids, states, training=False)
    assert not np.allclose(training_states[1][1], inference_states[1][1], atol=1e-3)
    # with dropout 0, training is the same computation
    plain_training, _ = plain(ids, states, training=True)
    np.testing.assert_allclose(plain_training, inference, rtol=0, atol=ATOL)


def test_model_variable_paths_are_unique_and_stable(model):
    paths = [v.path for v in model.weights]

    assert len(set(paths)) == len(paths)
    assert set(paths) == {
        "char_lstm/embedding/embeddings",
        *(
            f"char_lstm/lstm_{i}/cell/{name}"
            for i in range(N)
            for name in ("kernel", "recurrent_kernel", "bias")
        ),
        "char_lstm/head/kernel",
        "char_lstm/head/bias",
    }
    # a second model (as when a checkpoint is loaded) names its variables the same way
    assert [v.path for v in build_model(CONFIG).weights] == paths


def test_model_config_round_trips_through_get_config(model):
    restored = CharLSTM.from_config(model.get_config())

    assert restored.config == CONFIG
    assert restored.name == model.name


@pytest.mark.parametrize("cell", ["lstm", "layernorm"])
@pytest.mark.parametrize(
    "config",
    [CONFIG, ModelConfig(vocab_size=3, embedding_dim=1, units=2, num_layers=3)],
)
def test_weight_shapes_from_the_config_are_the_built_models(config, cell):
    config = dataclasses.replace(config, cell=cell)
    built = {v.path: tuple(v.shape) for v in build_model(config).weights}
    assert weight_shapes(config) == built


def test_memory_estimate_grows_with_the_model_and_the_window():
    small = memory_estimate(CONFIG, 2, 3, training=True)
    assert small > 4 * 4 * build_model(CONFIG).count_params()
    assert memory_estimate(CONFIG, 4, 3, training=True) > small
    assert memory_estimate(dataclasses.replace(CONFIG, units=2 * H), 2, 3, training=True) > small
    assert memory_estimate(CONFIG) < small  # inference: no gradients, no optimizer, one step


@pytest.mark.parametrize("fused", [True, False])
def test_window_dropout_masks_each_unit_for_the_whole_window_and_redraws_per_window(fused, ids):
    """dropout_mask="window": the mask the model applies to its layer outputs is the same at
    every step of a window (in the model's own layout: time-major when fused) and is drawn
    afresh for the next window; "step" draws it at every step."""
    config = dataclasses.replace(CONFIG, dropout=0.5, dropout_mask="window")
    keras.utils.set_random_seed(2)
    model = build_model(config, fused=fused)
    time_axis = 0 if fused else 1
    outputs = np.random.default_rng(0).uniform(0.1, 1.0, size=(T, B, H) if fused else (B, T, H))

    first = model.dropouts[0](outputs.astype("float32"), training=True).numpy() == 0
    second = model.dropouts[0](outputs.astype("float32"), training=True).numpy() == 0

    assert (first == first.take([0], axis=time_axis)).all()  # one mask for every step
    assert 0 < first.mean() < 1 and (first != second).any()  # random, redrawn per window
    stepwise = build_model(dataclasses.replace(config, dropout_mask="step"), fused=fused)
    drops = stepwise.dropouts[0](outputs.astype("float32"), training=True).numpy() == 0
    assert not (drops == drops.take([0], axis=time_axis)).all()


def test_window_dropout_changes_training_outputs_only(ids, states):
    config = dataclasses.replace(CONFIG, dropout=0.5, dropout_mask="window")
    model = build_model(config)
    inference, _ = model(ids, states, training=False)
    training, _ = model(ids, states, training=True)
    plain = build_model(CONFIG)
    plain.set_weights(model.get_weights())
    np.testing.assert_allclose(inference, plain(ids, states)[0], rtol=0, atol=ATOL)
    assert not np.allclose(training, inference, atol=1e-3)


def test_tied_embeddings_make_the_table_the_output_layer():
    config = ModelConfig(vocab_size=6, embedding_dim=4, units=4, num_layers=1, tie_embeddings=True)
    tied = build_model(config)
    assert {v.path: tuple(v.shape) for v in tied.weights} == weight_shapes(config)
    assert "char_lstm/head/kernel" not in weight_shapes(config)
    table = tied.embedding.embeddings
    h = tf.constant(np.random.default_rng(0).normal(size=(3, 4)), tf.float32)
    np.testing.assert_allclose(tied.logits(h), h @ tf.transpose(table) + tied.head.bias, atol=1e-6)
    # character 5 is never an input, only a target: its row learns from the output side alone
    x, y = np.zeros((2, 5), np.int32), np.full((2, 5), 5, np.int32)
    untied = build_model(dataclasses.replace(config, tie_embeddings=False))
    rows = []
    for model in (tied, untied):
        with tf.GradientTape() as tape:
            logits, _ = model(x)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        grad = tf.convert_to_tensor(tape.gradient(loss, model.embedding.embeddings))
        rows.append(float(tf.reduce_max(tf.abs(grad[5]))))
    assert rows[0] > 0 and rows[1] == 0
    with pytest.raises(CharlstmError, match="embedding_dim equal to units, got 3 and 4"):
        ModelConfig(embedding_dim=3, units=4, tie_embeddings=True)


# the layer-normalized LSTM (ModelConfig.cell "layernorm")

LN_CONFIG = dataclasses.replace(CONFIG, cell="layernorm")
LN_WEIGHTS = ("input_gamma", "input_beta", "recurrent_gamma", "recurrent_beta", "cell_gamma",
              "cell_beta")  # fmt: skip


@pytest.mark.parametrize(
    "cell, fused, expected",
    [
        ("lstm", True, CharLSTM),
        ("lstm", False, RNNCharLSTM),
        ("layernorm", True, LayerNormCharLSTM),
        ("layernorm", False, RNNLayerNormCharLSTM),
    ],
)
def test_build_model_picks_the_class_from_config_cell(cell, fused, expected):
    model = build_model(dataclasses.replace(CONFIG, cell=cell), fused=fused)
    assert type(model) is expected
    paths = {v.path for v in model.weights}
    assert ("char_lstm/lstm_1/cell/cell_gamma" in paths) == (cell == "layernorm")
    assert "char_lstm/lstm_1/cell/recurrent_kernel" in paths


def _layernorm_pair(seed=7):
    """The fused LayerNormCharLSTM and its reference with the same weights, every weight of
    the cells random (gammas and betas far from 1 and 0)."""
    fused, reference = build_model(LN_CONFIG), build_model(LN_CONFIG, fused=False)
    rng = np.random.default_rng(seed)
    for layer, rnn in enumerate(fused.rnns):
        weights = random_layernorm_weights(rng, E if layer == 0 else H, H)
        for name, value in weights.items():
            getattr(rnn.cell, name).assign(value)
    assert [v.path for v in fused.weights] == [v.path for v in reference.weights]
    for a, b in zip(fused.weights, reference.weights, strict=True):
        b.assign(a)
    return fused, reference


def _numpy_layernorm_model(model, ids, states):
    """Embedding -> LayerNormLSTMCell layers (the NumPy loop of test_cell) -> Dense, float64."""
    x = model.embedding.embeddings.numpy().astype("float64")[ids]  # (B, T, E)
    finals = []
    for rnn, (h, c) in zip(model.rnns, states, strict=True):
        weights = {v.name: v.numpy().astype("float64") for v in rnn.cell.weights}
        x, h, c = numpy_layernorm_lstm(x, h.astype("float64"), c.astype("float64"), weights)
        finals.append((h, c))
    return x @ model.head.kernel.numpy() + model.head.bias.numpy(), finals


@pytest.mark.parametrize("fused", [True, False])
def test_layernorm_model_matches_numpy_equations_over_a_window(fused, ids, states):
    model = _layernorm_pair()[0 if fused else 1]
    logits, final = model(ids, states)
    expected_logits, expected_final = _numpy_layernorm_model(model, ids, states)

    np.testing.assert_allclose(logits, expected_logits, rtol=0, atol=ATOL)
    _assert_states_close(final, expected_final)


def test_layernorm_fused_model_gives_the_reference_outputs_states_and_gradients(ids, states):
    """The fused model's gradient is taken under XLA, as the train step takes it."""
    fused, reference = _layernorm_pair()
    rng = np.random.default_rng(8)
    targets = rng.integers(0, V, size=(B, T)).astype("int32")
    w_h, w_c = rng.normal(size=(B, H)).astype("float32"), rng.normal(size=(B, H)).astype("float32")

    def loss_and_grads(model, ids, states):
        with tf.GradientTape() as tape:
            logits, final = model(ids, states)
            nll = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits)
            # the final states too, so their gradient paths are held to the reference's
            loss = tf.reduce_sum(nll) + sum(
                tf.reduce_sum(h * w_h) + tf.reduce_sum(c * w_c) for h, c in final
            )
        return logits, final, tape.gradient(loss, model.trainable_variables)

    compiled = tf.function(lambda i, s: loss_and_grads(fused, i, s), jit_compile=True)
    results = [compiled(ids, states), loss_and_grads(reference, ids, states)]
    (logits_f, final_f, grads_f), (logits_r, final_r, grads_r) = results

    np.testing.assert_allclose(logits_f, logits_r, rtol=0, atol=ATOL)
    _assert_states_close(final_f, final_r)
    for g_f, g_r, v in zip(grads_f, grads_r, fused.trainable_variables, strict=True):
        g_f, g_r = tf.convert_to_tensor(g_f), tf.convert_to_tensor(g_r)
        assert float(tf.reduce_max(tf.abs(g_r))) > 0, v.path
        np.testing.assert_allclose(g_f, g_r, rtol=1e-4, atol=1e-5, err_msg=v.path)


def test_layernorm_model_step_t_times_and_two_halves_equal_call_on_t_steps(ids, states):
    model = _layernorm_pair()[0]
    logits, final = model(ids, states)

    carried = states
    for t in range(T):
        step_logits, carried = model.step(ids[:, t], carried)
        np.testing.assert_allclose(step_logits, logits[:, t], rtol=0, atol=ATOL, err_msg=f"t={t}")
    _assert_states_close(carried, final)
    first, mid = model(ids[:, : T // 2], states)
    second, end = model(ids[:, T // 2 :], mid)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), logits, atol=ATOL)
    _assert_states_close(end, final)


@pytest.mark.slow
def test_layernorm_run_learns_resumes_and_loads_evaluates_and_samples(tmp_path, text_file):
    config = tiny_config(str(text_file), learning_rate=1e-2, epochs=1)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, cell="layernorm"))
    out = tmp_path / "run"
    first = train(out, config)
    more = train(out, resume=True, epochs=2)
    assert more.step == 2 * first.step

    run = RunDir.open(out)
    assert run.config.model.cell == "layernorm"
    records = run.read_log()
    uniform = math.log(run.config.model.vocab_size)
    assert records[-1].val_loss < min(records[0].val_loss, 0.6 * uniform)
    model = run.load_model()
    assert type(model) is LayerNormCharLSTM
    # the normalization weights were trained, not left at their initial 1 and 0
    for name in LN_WEIGHTS:
        initial = 1.0 if name.endswith("gamma") else 0.0
        assert np.abs(getattr(model.rnns[0].cell, name).numpy() - initial).max() > 1e-3, name

    text = text_file.read_text(encoding="utf-8")
    loss = evaluate_windows(model, eval_windows(run.tokenizer.encode(text[-2000:]), 4, 16))
    assert loss.nats < 0.6 * uniform
    sample = "".join(
        Sampler(model, run.tokenizer).generate("The ", 60, SamplingConfig(temperature=0.5))
    )
    assert len(sample) == 60 and set(sample) <= set(text)
