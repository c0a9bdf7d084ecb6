"""Loss in nats/char and bits/char, from one state-carrying walk over TBPTT windows.

`walk` is the one loop that carries every layer's (h, c) from window k into window k+1; training,
validation and `charlstm evaluate` all go through it. Evaluation starts every stream from zero
state and scores every character it lays out (the last window may be shorter than T).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from charlstm.data import Windows, tbptt_windows
from charlstm.model import CharModel, States


@dataclass(frozen=True)
class Loss:
    """Mean negative log-likelihood of the next character.

    Attributes:
        nats: mean -ln p(next char), nats/char.
        chars: how many characters were scored.
    """

    nats: float
    chars: int

    @property
    def bits(self) -> float:
        """bits/char = nats / ln 2."""
        return self.nats / math.log(2)

    @property
    def perplexity(self) -> float:
        """exp(nats): the effective number of equally likely next characters."""
        return math.exp(self.nats)

    def as_dict(self) -> dict:
        return {
            "nats_per_char": self.nats,
            "bits_per_char": self.bits,
            "perplexity": self.perplexity,
            "chars": self.chars,
        }


def walk(
    windows: Windows, step: Callable, states: States, start: int = 0
) -> Iterator[tuple[int, object, States]]:
    """Run `step(x, y, states) -> (out, states)` over windows start.., carrying the states.

    Yields (k, out, states after window k). The states go in as plain values, so no gradient
    crosses a window edge.
    """
    for k in range(start, len(windows)):
        x, y = windows[k]
        out, states = step(tf.constant(x), tf.constant(y), states)
        yield k, out, states


def nll_sum(model: CharModel, x, y, states: States, training: bool = False):
    """Sum of -ln p(y | x) over a window and the states after it.

    x, y: (B, T) int32. Returns (scalar float32, states).
    """
    logits, states = model(x, states, training=training)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)  # (B, T)
    return tf.reduce_sum(losses), states


def make_eval_step(model: CharModel) -> Callable:
    """A compiled (x, y, states) -> (nll sum, states) for `walk`."""
    return tf.function(lambda x, y, states: nll_sum(model, x, y, states), jit_compile=True)


def evaluate_windows(
    model: CharModel, windows: Windows, eval_step: Callable | None = None, carry: bool = True
) -> Loss:
    """Mean loss over every target of `windows`, streams starting from zero state.

    carry=True carries each window's final states into the next, so every character sees the
    whole text before it. carry=False starts every window from zeros, so character j of a
    window sees only the j characters before it in that window: the difference is what
    carrying state buys.
    """
    eval_step = eval_step or make_eval_step(model)
    zeros = model.zero_states(windows.inputs.shape[0])
    step = eval_step if carry else (lambda x, y, _: eval_step(x, y, zeros))
    total = sum(float(nll) for _, nll, _ in walk(windows, step, zeros))
    return Loss(nats=total / windows.num_chars, chars=windows.num_chars)


def eval_windows(ids: np.ndarray, batch_size: int, seq_len: int) -> Windows:
    """Evaluation layout of ids: up to `batch_size` streams, fewer when the text is short.

    Each stream is at least one window long when the text allows, so a short text is scored
    with long context rather than cut into many streams that each start cold.
    """
    streams = max(1, min(batch_size, (len(ids) - 1) // seq_len))
    return tbptt_windows(ids, streams, seq_len, whole=False)
