"""sources: exact entropy rates, texts that follow their process, and models trained on them
that reach the rate (Markov) and use carried state across window edges (brackets)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from charlstm import sources
from charlstm.config import ModelConfig, RunConfig, TrainConfig
from charlstm.errors import CharlstmError
from tests.test_cli import run_charlstm


def _h(p: float) -> float:
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def test_markov_rate_matches_the_two_state_closed_form():
    """Order 1 over {a, b}: P(a->b) = u, P(b->a) = v, pi(a) = v / (u + v), and
    H = pi(a) h(u) + pi(b) h(v)."""
    u, v = 0.1, 0.35
    expected = v / (u + v) * _h(u) + u / (u + v) * _h(v)
    assert sources.markov_rate(np.array([[1 - u, u], [v, 1 - v]])) == pytest.approx(expected)


def test_markov_rate_of_an_order_2_chain_that_ignores_its_context_is_the_row_entropy():
    row = np.array([0.5, 0.25, 0.125, 0.125])
    assert sources.markov_rate(np.tile(row, (16, 1))) == pytest.approx(1.75)


def test_markov_rate_weights_each_context_by_how_often_it_occurs():
    """Order 2 over {a, b}: after "aa" always b (0 bits), after the other contexts a fair coin
    (1 bit). The transitions give pi(aa) = pi(ba) / 2 and pi(ab) = pi(ba) = pi(bb), so over
    (aa, ab, ba, bb) pi = (1, 2, 2, 2) / 7 and H = 6 / 7 bits, not the contexts' plain mean."""
    probs = np.array([[0.0, 1.0], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    assert sources.markov_rate(probs) == pytest.approx(6 / 7)


@pytest.mark.parametrize(
    "make",
    [
        lambda: sources.markov(order=3, alphabet=5, chars=400_000, seed=1),
        lambda: sources.brackets(chars=400_000, seed=2),
        # deep and often open, so that quotes inside brackets inside quotes occur
        lambda: sources.brackets(
            pairs=2, depth=6, p_open=0.05, p_close=0.04, chars=400_000, seed=5, quotes=True
        ),  # fmt: skip
        lambda: sources.copy(length=7, alphabet=6, chars=400_000, seed=3),
    ],
    ids=["markov", "brackets", "brackets-and-quotes", "copy"],
)
def test_the_text_costs_its_process_the_entropy_rate_on_average(make):
    """The mean of -log2 P(x_t | past) over a long stationary stream converges to H (ergodic
    theorem): within 4 standard errors of blocks of 10,000 characters."""
    source = make()
    assert len(source.text) == len(source.bits) == 400_000
    blocks = source.bits[: 400_000 // 10_000 * 10_000].reshape(-1, 10_000).mean(axis=1)
    se = blocks.std(ddof=1) / math.sqrt(len(blocks))
    # (+ 1e-5: float32 sums; the copy source costs the same in every block, se = 0)
    assert abs(blocks.mean() - source.rate_bits) < 4 * se + 1e-5, (blocks.mean(), source.rate_bits)


def test_copy_rate_is_its_formula_and_the_copy_is_the_block():
    source = sources.copy(length=5, alphabet=4, chars=1_200, seed=0)
    assert source.rate_bits == pytest.approx(5 * 2 / 12)
    lines = source.text.splitlines()[:-1]  # the last one is cut at 1,200 characters
    assert len(lines) == 1_200 // 12 - 1
    assert all(len(line) == 11 and line[:5] == line[6:] and line[5] == "|" for line in lines)


def test_brackets_are_well_nested_and_the_bits_follow_the_stack():
    source = sources.brackets(pairs=3, fillers=2, depth=3, chars=50_000, seed=4)
    closers = {v: k for k, v in sources.PAIRS.items()}
    depth, stack = 0, []
    for ch in source.text:
        if ch in sources.PAIRS:
            stack.append(ch)
        elif ch in closers and stack:
            assert stack.pop() == closers[ch]  # the innermost opener's own closer
        depth = max(depth, len(stack))
    assert depth <= 3
    assert set(source.text) <= set("([{)]}ab")
    # a closer costs -log2 p_close, whatever its kind: the stack decides the kind
    closing = np.array([ch in closers for ch in source.text])
    assert np.allclose(source.bits[closing][10:], -math.log2(0.02))


def test_quotes_close_themselves_never_open_inside_a_quote_and_cost_what_the_stack_says():
    """A '"' opens where the innermost open thing is a bracket or nothing, and closes where it
    is a quote. An opener costs -log2(p_open / k), k = 3 choices (two brackets, the quote), 2
    inside a quote; a closer -log2(p_close): the costs tell openers from closers. The text
    starts with some already open, so the stack tracked here is what opened in the text."""
    q = sources.QUOTE
    p_open, p_close = 0.1, 0.04
    source = sources.brackets(pairs=2, fillers=2, depth=4, p_open=p_open, p_close=p_close,
                              chars=50_000, seed=6, quotes=True)  # fmt: skip
    closers = {v: k for k, v in sources.PAIRS.items()}
    stack: list[str] = []
    quote_in_bracket_in_quote = False
    for ch, bits in zip(source.text, source.bits):
        closing = bits == pytest.approx(-math.log2(p_close), rel=1e-6)
        if ch == q and closing:
            assert not stack or stack.pop() == q  # never a bracket's closer
        elif ch == q or ch in sources.PAIRS:
            inside_quote = bool(stack) and stack[-1] == q
            assert not (ch == q and inside_quote)  # no quote opens directly inside a quote
            if stack:  # (with nothing tracked open, one opened before the text may be)
                k = 2 if inside_quote else 3
                assert bits == pytest.approx(-math.log2(p_open / k), rel=1e-6)
            quote_in_bracket_in_quote |= ch == q and stack[-2:-1] == [q]
            stack.append(ch)
        elif ch in closers:
            assert closing and (not stack or stack.pop() == closers[ch])
        assert len(stack) <= 4
    assert quote_in_bracket_in_quote
    assert set(source.text) <= set('([)]"ab')
    without = sources.brackets(pairs=2, fillers=2, depth=4, p_open=p_open, p_close=p_close,
                               chars=10)  # fmt: skip
    assert source.rate_bits > without.rate_bits  # a third opener to choose from


def test_same_seed_same_text_other_seed_other_text():
    assert sources.markov(chars=5_000, seed=3).text == sources.markov(chars=5_000, seed=3).text
    assert sources.markov(chars=5_000, seed=3).text != sources.markov(chars=5_000, seed=4).text
    assert sources.brackets(chars=5_000, seed=3).text == sources.brackets(chars=5_000, seed=3).text


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(CharlstmError, match="alphabet"):
        sources.markov(alphabet=1)
    with pytest.raises(CharlstmError, match="4096"):
        sources.markov(order=5, alphabet=8)
    with pytest.raises(CharlstmError, match="p_open"):
        sources.brackets(p_open=0.6, p_close=0.5)


def test_corpus_make_writes_the_text_and_prints_its_rate(tmp_path):
    out = tmp_path / "markov.txt"
    done = run_charlstm("corpus", "make", "markov", "--out", out, "--chars", "20000", "--json")
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    source = sources.markov(chars=20_000)
    assert out.read_text(encoding="utf-8") == source.text
    assert facts["rate_bits"] == pytest.approx(source.rate_bits)
    again = run_charlstm("corpus", "make", "markov", "--out", out, "--seed", "1")
    assert again.returncode == 1 and "exists" in again.stderr
    assert out.read_text(encoding="utf-8") == source.text  # not overwritten
    quoted = tmp_path / "quotes.txt"
    done = run_charlstm("corpus", "make", "brackets", "--quotes", "--chars", "5000", "--out",
                        quoted, "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    source = sources.brackets(chars=5_000, quotes=True)
    assert quoted.read_text(encoding="utf-8") == source.text and sources.QUOTE in source.text
    assert json.loads(done.stdout)["rate_bits"] == pytest.approx(source.rate_bits)


@pytest.mark.slow
def test_a_tiny_model_learns_a_markov_source_to_within_5_percent_of_its_rate(tmp_path):
    """Trained by `train` on 190,000 characters and validated on the next 20,000 (a separate
    file), the validation loss comes within 5% of the entropy rate, and not below what the
    process itself scores on those very characters (no model beats the truth)."""
    from charlstm.trainer import train  # noqa: PLC0415

    n_train, n_val = 190_000, 20_000
    source = sources.markov(order=2, alphabet=6, chars=n_train + n_val, seed=5)
    (tmp_path / "train.txt").write_text(source.text[:n_train], encoding="utf-8")
    (tmp_path / "val.txt").write_text(source.text[n_train:], encoding="utf-8")
    config = RunConfig(
        model=ModelConfig(embedding_dim=8, units=48, num_layers=1, dropout=0.0),
        train=TrainConfig(batch_size=32, seq_len=50, epochs=6, learning_rate=1e-2,
                          warmup_steps=20, eval_every=1000, test_fraction=0.01),
        corpus=str(tmp_path / "train.txt"),
        val_file=str(tmp_path / "val.txt"),
    )  # fmt: skip
    train(tmp_path / "run", config)
    last = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    val = last.get("val_loss_all", last["val_loss"])  # the whole part (here one pass scores it)
    process = float(source.bits[n_train + 1 :].mean()) * math.log(2)  # nats, same characters
    assert val <= 1.05 * source.rate_nats, (val, source.rate_nats)
    assert val >= process - 1e-3, (val, process)


def _closer_choices(model, text: str, tokenizer, seq_len: int, carry: bool):
    """For every closer in `text` whose opener lies before the window the closer is predicted
    in: whether the model, among the closers, ranks the right one first."""
    from charlstm.data import tbptt_windows  # noqa: PLC0415

    ids = tokenizer.encode(text)
    windows = tbptt_windows(ids, 1, seq_len)
    closers = [c for c in sources.PAIRS.values() if c in text]
    closer_ids = [tokenizer.encode(c)[0] for c in closers]
    states = model.zero_states(1)
    right = []
    stack: list[int] = []
    opened_at = {}
    for pos, ch in enumerate(text):  # where each closer's opener is
        if ch in sources.PAIRS:
            stack.append(pos)
        elif ch in closers and stack:  # (a closer of a bracket opened before the text: none)
            opened_at[pos] = stack.pop()
    for k in range(len(windows)):
        x, _ = windows[k]
        logits, states = model(x, states if carry else model.zero_states(1))
        scores = np.asarray(logits)[0][:, closer_ids]  # (T, m)
        for t in range(x.shape[1]):
            target = k * seq_len + t + 1  # the character logits[t] predicts
            if target in opened_at and opened_at[target] < k * seq_len:
                right.append(closer_ids[int(np.argmax(scores[t]))] == ids[target])
    return np.array(right)


@pytest.mark.slow
def test_carried_state_closes_brackets_opened_before_the_window_and_reset_state_cannot():
    """The same tiny model trained twice on nested brackets in windows of 10 characters: once
    carrying (h, c) from window to window (TBPTT), once starting every window from zeros. Only
    the first picks the right closer for brackets opened in an earlier window."""
    import keras  # noqa: PLC0415

    from charlstm.explore.tasks import fit_windows  # noqa: PLC0415
    from charlstm.model import build_model  # noqa: PLC0415
    from charlstm.tokenizer import CharTokenizer  # noqa: PLC0415

    source = sources.brackets(pairs=3, fillers=3, depth=1, p_open=0.05, p_close=0.05,
                              chars=120_000, seed=6)  # fmt: skip
    tokenizer = CharTokenizer.build(source.text)
    ids = tokenizer.encode(source.text[:100_000])
    held_out = source.text[100_000:]
    seq_len = 10
    accuracy = {}
    for carry in (True, False):
        keras.utils.set_random_seed(0)
        config = ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=8, units=32,
                             num_layers=1, dropout=0.0)  # fmt: skip
        model = build_model(config)
        fit_windows(model, _windows(ids, seq_len), steps=1500, learning_rate=1e-2, carry=carry)
        accuracy[carry] = _closer_choices(model, held_out, tokenizer, seq_len, carry).mean()
    assert accuracy[True] > 0.9, accuracy
    assert accuracy[False] < 0.6, accuracy  # about 1/3: a guess among three closers


def _windows(ids, seq_len):
    from charlstm.data import tbptt_windows  # noqa: PLC0415

    return tbptt_windows(ids, 16, seq_len)
