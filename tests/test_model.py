"""CharLSTM: shapes, state carried across windows and steps, dropout, variable paths."""

import dataclasses

import keras
import numpy as np
import pytest

from charlstm.config import ModelConfig
from charlstm.model import CharLSTM, build_model, memory_estimate, weight_shapes

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


@pytest.mark.parametrize(
    "config",
    [CONFIG, ModelConfig(vocab_size=3, embedding_dim=1, units=2, num_layers=3)],
)
def test_weight_shapes_from_the_config_are_the_built_models(config):
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
