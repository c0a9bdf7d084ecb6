"""tasks: the bracket task's data, and the trainers on tiny models."""

import keras
import numpy as np
import pytest

from charlstm.config import ModelConfig
from charlstm.data import tbptt_windows
from charlstm.explore import tasks
from charlstm.explore.rnn import build_rnn_model
from charlstm.model import build_model


@pytest.fixture(scope="module")
def tokenizer():
    return tasks.bracket_tokenizer()


def test_bracket_batch_puts_the_opener_k_before_the_closer_to_predict(tokenizer):
    ks = [1, 4, 9]
    x, y = tasks.bracket_batch(tokenizer, ks, length=12, seed=5)

    assert x.shape == (3, 12) and y.shape == (3,)
    for row, closer, k in zip(x, y, ks):
        text = tokenizer.decode(row)
        opener = text[12 - 1 - k]
        assert tasks.PAIRS[opener] == tokenizer.decode([closer])
        assert set(text.replace(opener, "", 1)) <= set(tasks.FILLER)


def test_bracket_batch_is_the_same_for_the_same_seed_only(tokenizer):
    a = tasks.bracket_batch(tokenizer, [3] * 8, seed=1)
    b = tasks.bracket_batch(tokenizer, [3] * 8, seed=1)
    c = tasks.bracket_batch(tokenizer, [3] * 8, seed=2)

    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_bracket_batch_refuses_rows_too_short_for_k(tokenizer):
    with pytest.raises(ValueError, match="length"):
        tasks.bracket_batch(tokenizer, [5], length=5)


def test_bracket_text_writes_one_example_per_line():
    lines = tasks.bracket_text(3, 4, seed=0).splitlines()

    assert len(lines) == 4
    assert all(len(line) == 5 and tasks.PAIRS[line[0]] == line[-1] for line in lines)


def test_fit_last_teaches_an_lstm_a_short_bracket(tokenizer):
    keras.utils.set_random_seed(0)
    model = build_model(
        ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=6, units=10, num_layers=1)
    )

    losses = tasks.fit_last(model, tokenizer, k_max=2, steps=150, batch_size=16, learning_rate=2e-2)

    assert len(losses) == 150 and np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    assert tasks.last_accuracy(model, tokenizer, k=2, n=64, length=3) > 0.9


def test_fit_windows_lowers_a_tanh_rnn_loss_on_repeating_text():
    text_ids = np.tile(np.arange(1, 6, dtype=np.int32), 60)
    windows = tbptt_windows(text_ids, 2, 10)
    keras.utils.set_random_seed(0)
    model = build_rnn_model(ModelConfig(vocab_size=6, embedding_dim=3, units=8, num_layers=1))

    losses = tasks.fit_windows(model, windows, steps=40, learning_rate=2e-2)

    assert len(losses) == 40 and losses[-1] < 0.2 * losses[0]
