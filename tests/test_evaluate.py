import hashlib
import json
import math

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from charlstm.cli import cli
from charlstm.config import DynamicConfig, options
from charlstm.data import Windows, eval_windows
from charlstm.evaluate import DYNAMIC_EPS, Loss, dynamic_evaluate, evaluate_windows
from charlstm.rundir import RunDir
from charlstm.steps import nll_sum, walk
from tests.conftest import make_text
from tests.test_cli import assert_one_error_line, run_charlstm

# the tiny grammar's text, then two sentences it never makes, over and over: a shift of style
# that the weights can learn while reading, in the grammar's own characters; 1 + 16k characters,
# so that one stream lays it out in whole windows of the tiny runs' T = 16 (one shape to compile)
SHIFTED = (make_text(20, seed=3) + "Our dog finds a king.\nThe queen calls my cat.\n" * 60)[
    : 1 + 16 * 200
]


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


def snapshot(folder) -> dict[str, str]:
    """Every path under `folder`, relative, -> the SHA-256 of its bytes ("folder" for one)."""
    return {
        str(p.relative_to(folder)): "folder"
        if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def shifted(trained_run):
    """SHIFTED read by the tiny run as one stream, statically and dynamically (default config),
    with the run directory's snapshots before and after and the adapted model."""
    run = RunDir.open(trained_run)
    windows = eval_windows(run.tokenizer.encode(SHIFTED), 1, 16)
    before = snapshot(trained_run)
    static = evaluate_windows(run.load_model(), windows)
    adapted = run.load_model()
    dynamic = dynamic_evaluate(adapted, windows)
    return {
        "windows": windows,
        "static": static,
        "dynamic": dynamic,
        "adapted": adapted,
        "before": before,
        "after": snapshot(trained_run),
    }


def test_dynamic_evaluation_beats_static_on_a_text_whose_style_shifts(shifted):
    static, dynamic = shifted["static"], shifted["dynamic"]
    assert dynamic.chars == static.chars == shifted["windows"].num_chars == len(SHIFTED) - 1
    assert dynamic.nats < static.nats - 0.1, (static, dynamic)


def test_dynamic_evaluation_scores_each_window_before_learning_from_it(trained_run):
    run = RunDir.open(trained_run)
    lr = 0.05  # large, so that a step on the wrong window or at the wrong time shows
    config = DynamicConfig(dynamic_lr=lr)
    windows = eval_windows(run.tokenizer.encode(SHIFTED)[: 2 * 2 * 8 + 1], 2, 8)  # B, T = 2, 8
    assert len(windows) == 2
    (x0, y0), (x1, y1) = windows
    first = Windows(x0, y0, 8)

    # the oracle: window 0 scored under the run's weights; the first update is then
    # -lr * g / (|g| + eps), since the unbiased mean square of one gradient is g^2
    reference = run.load_model()
    variables = reference.trainable_variables
    with tf.GradientTape() as tape:
        nll0, states = nll_sum(reference, x0, y0, reference.zero_states(2))
        loss0 = nll0 / y0.size
    grads = [g.numpy() for g in tape.gradient(loss0, variables)]
    before = [v.numpy() for v in variables]
    steps = [-g / (np.abs(g) + DYNAMIC_EPS) for g in grads]
    for v, theta, step in zip(variables, before, steps):
        v.assign(theta + lr * step)
    nll1, _ = nll_sum(reference, x1, y1, states)  # window 1 under the updated weights

    once = run.load_model()
    assert dynamic_evaluate(once, first, config).nats == pytest.approx(
        float(nll0) / y0.size, rel=1e-5
    )  # the first window's loss is its static loss: scored before any update
    for v, theta, g, step in zip(once.trainable_variables, before, grads, steps):
        taken = (v.numpy() - theta) / lr
        clear = np.abs(g) > 1e-6  # where rounding cannot flip the sign of a tiny gradient
        assert clear.any()
        np.testing.assert_allclose(taken[clear], step[clear], atol=1e-3)
        assert np.all(np.abs(taken) <= 1 + 1e-3)

    both = dynamic_evaluate(run.load_model(), windows, config)
    assert both.nats == pytest.approx(float(nll0 + nll1) / windows.num_chars, rel=1e-4)


def test_dynamic_evaluation_leaves_the_run_directory_and_its_model_as_they_were(
    trained_run, shifted
):
    assert shifted["after"] == shifted["before"]
    windows, static = shifted["windows"], shifted["static"]
    # the adapted weights live only in memory; the run's model still gives the static loss
    assert evaluate_windows(shifted["adapted"], windows).nats < static.nats
    reloaded = RunDir.open(trained_run).load_model()
    assert evaluate_windows(reloaded, windows).nats == pytest.approx(static.nats, rel=1e-6)


def test_evaluate_dynamic_prints_the_static_and_the_dynamic_loss(trained_run, tmp_path, shifted):
    text = tmp_path / "shifted.txt"
    text.write_text(SHIFTED, encoding="utf-8")
    # float32, as the library's numbers it is held to (auto is bfloat16 on some CPUs)
    args = ["evaluate", str(trained_run), str(text), "--dynamic", "--precision", "float32"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    static, dynamic = result.stdout.splitlines()
    assert static.split()[0] == "static" and dynamic.split()[0] == "dynamic"
    assert float(static.split()[1]) == pytest.approx(shifted["static"].nats, abs=1e-4)
    assert float(dynamic.split()[1]) == pytest.approx(shifted["dynamic"].nats, abs=1e-4)


def test_evaluate_dynamic_json_through_the_command_leaves_the_run_unchanged(trained_run, tmp_path):
    text = tmp_path / "shifted.txt"
    text.write_text(SHIFTED, encoding="utf-8")
    before = snapshot(trained_run)
    result = run_charlstm(
        "evaluate", trained_run, text, "--dynamic", "--json", "--dynamic-lr", "1e-3"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dynamic_lr"] == 1e-3 and report["dynamic_decay"] == 0.0
    assert set(report["static"]) == set(report["dynamic"]) == set(Loss(1.0, 1).as_dict())
    assert report["dynamic"]["nats_per_char"] < report["static"]["nats_per_char"]
    assert report["static"]["chars"] == report["dynamic"]["chars"] == len(SHIFTED) - 1
    assert snapshot(trained_run) == before


def test_bad_dynamic_learning_rate_is_a_usage_error_in_one_line(trained_run, tmp_path):
    text = tmp_path / "shifted.txt"
    text.write_text(SHIFTED, encoding="utf-8")
    result = run_charlstm("evaluate", trained_run, text, "--dynamic", "--dynamic-lr", "-1")
    result.exit_code = result.returncode
    assert_one_error_line(result, code=2)
    assert "--dynamic-lr" in result.stderr


def test_dynamic_settings_without_dynamic_are_a_usage_error(trained_run, tmp_path):
    text = tmp_path / "shifted.txt"
    text.write_text(SHIFTED, encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["evaluate", str(trained_run), str(text), "--dynamic-decay", "0.1"]
    )
    assert_one_error_line(result, code=2)
    assert "--dynamic-decay" in result.stderr and "--dynamic" in result.stderr


def test_dynamic_options_are_the_dynamic_config_declarations():
    params = {p.name: p for p in cli.commands["evaluate"].params}
    for option in options(DynamicConfig):
        r, kind = option.range, params[option.name].type
        assert (kind.min, kind.max, kind.min_open, kind.max_open) == (
            r.min,
            r.max,
            r.min_open,
            r.max_open,
        )
        assert option.help in params[option.name].help
