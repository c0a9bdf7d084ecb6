import math

import numpy as np
import pytest
import tensorflow as tf

from charlstm.evaluate import Loss, eval_windows, evaluate_windows, walk
from charlstm.rundir import RunDir


def test_loss_units_convert_between_nats_bits_and_perplexity():
    loss = Loss(nats=math.log(4), chars=10)
    assert loss.bits == pytest.approx(2.0)
    assert loss.perplexity == pytest.approx(4.0)
    assert loss.as_dict()["bits_per_char"] == pytest.approx(2.0)


def test_walk_feeds_each_window_the_states_of_the_previous_one():
    windows = eval_windows(np.arange(41, dtype=np.int32), batch_size=2, seq_len=6)
    calls = []

    def step(x, y, states):
        calls.append(states)
        return int(x.numpy()[0, 0]), states + 1

    results = list(walk(windows, step, 0))
    assert calls == list(range(len(windows)))
    assert [k for k, _, _ in results] == list(range(len(windows)))
    assert [out for _, out, _ in results] == [int(windows[k][0][0, 0]) for k in range(len(windows))]


def test_evaluation_equals_one_full_forward_pass_per_stream(trained_run):
    run = RunDir.open(trained_run)
    model = run.load_model()
    ids = run.tokenizer.encode("The cat sees the ball.\nA dog keeps her horse.\n" * 3)
    windows = eval_windows(ids, batch_size=1, seq_len=5)  # many windows, one stream
    loss = evaluate_windows(model, windows)
    logits, _ = model(ids[None, :-1])
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids[None, 1:], logits=logits)
    assert loss.chars == len(ids) - 1
    assert loss.nats == pytest.approx(float(tf.reduce_mean(nll)), rel=1e-5)


def test_eval_windows_scores_all_but_fewer_than_b_characters():
    for n in (10, 57, 400):
        windows = eval_windows(np.arange(n, dtype=np.int32), batch_size=8, seq_len=7)
        streams = windows.inputs.shape[0]
        assert n - 1 - streams < windows.num_chars <= n - 1


def test_evaluation_without_carry_scores_each_window_from_zero_state(trained_run):
    run = RunDir.open(trained_run)
    model = run.load_model()
    windows = eval_windows(run.tokenizer.encode("The cat sees the ball.\n" * 6), 2, 8)

    reset = evaluate_windows(model, windows, carry=False)

    total = 0.0
    for x, y in windows:
        logits, _ = model(x)
        total += float(
            tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        )
    assert reset.nats == pytest.approx(total / windows.num_chars, rel=1e-5)
    assert reset.nats != pytest.approx(evaluate_windows(model, windows).nats, rel=1e-4)
