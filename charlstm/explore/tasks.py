"""A long-range dependency task, and a small trainer for any state-in/state-out char model.

The bracket task: an opening bracket, then k random letters, then the matching closing
bracket. Predicting the closer needs the opener k characters back; the letters carry no hint.

    x = "[" + "qhzd...ekw"  (1 + k characters)     y = "]"

`fit_last` trains a model on the prediction at the last position only, so every gradient that
teaches the task has to travel k steps back. `fit_windows` trains next-character prediction by
truncated BPTT, as `trainer.train` does, for any `CharModel` (CharLSTM or rnn.CharRNN), so the
two cells can be compared in one loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from charlstm.tokenizer import CharTokenizer

PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">"}
FILLER = "abcdefghijklmnopqrstuvwxyz"


def bracket_tokenizer() -> CharTokenizer:
    """The tokenizer of the bracket task: the 8 brackets and 26 letters (V = 35 with UNK)."""
    return CharTokenizer.build("".join(PAIRS) + "".join(PAIRS.values()) + FILLER)


def bracket_batch(
    tokenizer: CharTokenizer,
    ks: Sequence[int] | np.ndarray,
    length: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """One example per k in `ks`: the opener k characters before the closer to predict.

    Row b is random letters, the opener, then ks[b] random letters; with `length`, rows are
    left-padded with letters to `length` characters so examples of different k share a batch.
    The same seed gives the same batch.

    Args:
        ks: (B,) distances, each >= 1.
        length: the row length, at least max(ks) + 1; default max(ks) + 1.

    Returns:
        x: (B, length) int32 ids; y: (B,) int32, the id of the closer that comes next.
    """
    k = np.asarray(ks, np.int64)
    length = int(k.max()) + 1 if length is None else length
    if k.min() < 1 or length < k.max() + 1:
        raise ValueError(f"need 1 <= k and length >= k + 1, got k in {k.min()}..{k.max()}")
    rng = np.random.default_rng(seed)
    letters = tokenizer.encode(FILLER)
    openers = tokenizer.encode("".join(PAIRS))
    closers = tokenizer.encode("".join(PAIRS.values()))
    x = rng.choice(letters, size=(len(k), length)).astype(np.int32)
    which = rng.integers(0, len(PAIRS), size=len(k))
    x[np.arange(len(k)), length - 1 - k] = openers[which]
    return x, closers[which].astype(np.int32)


def bracket_text(k: int, n: int, seed: int = 0) -> str:
    """n examples with distance k, each opener, k letters, closer, on one line each."""
    tokenizer = bracket_tokenizer()
    x, y = bracket_batch(tokenizer, [k] * n, seed=seed)
    return "".join(tokenizer.decode(row) + tokenizer.decode([c]) + "\n" for row, c in zip(x, y))


def _train_step(model, learning_rate: float, grad_clip: float, loss=None):
    """steps.make_train_step with a constant learning rate, and optionally another loss."""
    from charlstm.config import TrainConfig
    from charlstm.steps import make_optimizer, make_train_step, mean_nll

    config = TrainConfig(
        learning_rate=learning_rate, grad_clip=grad_clip, schedule="constant", warmup_steps=1
    )
    return make_train_step(model, make_optimizer(config), loss or mean_nll)


def fit_last(
    model,
    tokenizer: CharTokenizer,
    k_max: int,
    steps: int,
    batch_size: int = 32,
    k_min: int = 1,
    learning_rate: float = 3e-3,
    grad_clip: float = 1.0,
    minutes: float | None = None,
    seed: int = 0,
) -> list[float]:
    """Train on the bracket task: loss = -ln p(closer) at the last position only.

    Every batch mixes distances k drawn uniformly from k_min..k_max, rows padded to k_max + 1
    characters, each stream starting from zero state.

    Returns:
        the loss (nats) of every step; stops after `steps` or `minutes`, first reached.
    """
    import tensorflow as tf

    def last_char_loss(model, x, y, states):
        logits, _ = model(x, states, training=True)  # (B, T, V)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits[:, -1])
        return tf.reduce_mean(ce), states

    step = _train_step(model, learning_rate, grad_clip, last_char_loss)
    rng = np.random.default_rng(seed)
    zeros = model.zero_states(batch_size)
    deadline = time.monotonic() + minutes * 60 if minutes else math.inf
    losses = []
    for s in range(steps):
        ks = rng.integers(k_min, k_max + 1, size=batch_size)
        x, y = bracket_batch(tokenizer, ks, length=k_max + 1, seed=seed * 1_000_003 + s)
        loss, _ = step(tf.constant(x), tf.constant(y), zeros)
        losses.append(float(loss))
        if time.monotonic() >= deadline:
            break
    return losses


def last_accuracy(
    model,
    tokenizer: CharTokenizer,
    k: int,
    n: int = 256,
    length: int | None = None,
    seed: int = 1,
) -> float:
    """Fraction of n bracket examples at distance k whose closer is the model's likeliest.

    Args:
        length: rows padded to max(length, k + 1) characters, e.g. the training length, so
            only k differs from what the model was trained on; default k + 1.
    """
    length = max(length or 0, k + 1)
    x, y = bracket_batch(tokenizer, [k] * n, length=length, seed=seed)
    logits, _ = model(x, model.zero_states(n))
    return float(np.mean(np.argmax(np.asarray(logits[:, -1]), axis=-1) == y))


def fit_windows(
    model,
    windows,
    steps: int,
    learning_rate: float = 2e-3,
    grad_clip: float = 5.0,
    minutes: float | None = None,
    carry: bool = True,
) -> list[float]:
    """Next-character training by truncated BPTT, for any CharModel.

    Windows are walked in order with each window's final state carried into the next (and
    reset to zeros after the last), loss = mean -ln p(next char) over the window, as in
    `trainer.train`; no run directory, no checkpoints.

    Args:
        windows: a data.Windows (B streams, windows of T).
        carry: False starts every window from zero states instead (no memory across window
            edges: what TBPTT's carried state buys, taken away).

    Returns:
        the loss (nats/char) of every step; stops after `steps` or `minutes`, first reached.
    """
    from charlstm.steps import walk

    train_step = _train_step(model, learning_rate, grad_clip)
    zeros = model.zero_states(windows.inputs.shape[0])
    step = train_step if carry else lambda x, y, states: train_step(x, y, zeros)
    deadline = time.monotonic() + minutes * 60 if minutes else math.inf
    losses: list[float] = []
    while len(losses) < steps:
        for _, loss, _ in walk(windows, step, zeros):
            losses.append(float(loss))
            if len(losses) >= steps or time.monotonic() >= deadline:
                return losses
    return losses
