"""Generate text: next-character strategies over logits, and the loop that feeds them.

Strategies are pure functions over logits (B, V). `generate` feeds the prime once, then one id
per step, carrying the state; the steps run in a compiled TensorFlow loop, `chunk` characters
per call, and each chunk is handed out as soon as it is ready. Randomness is
`tf.random.stateless_categorical` seeded with (seed, t) for step t, so a seed gives the same
text however the steps are grouped into chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from charlstm.errors import CharlstmError
from charlstm.model import CharLSTM, States
from charlstm.tokenizer import CharTokenizer

MAX_LENGTH = 10_000_000


@dataclass(frozen=True)
class SamplingConfig:
    """How each next character is drawn.

    temperature: 0 picks the most likely character (greedy); otherwise logits / temperature.
    top_k: keep the k most likely characters (0: all).
    top_p: keep the smallest set whose probability reaches top_p (1: all).
    seed: the same seed, model and prime give the same text.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.temperature >= 0 and np.isfinite(self.temperature)):
            raise CharlstmError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise CharlstmError(f"top_k must be >= 0 (0 keeps all), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise CharlstmError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.seed < 2**31:
            raise CharlstmError(f"seed must be in [0, 2**31), got {self.seed}")


def top_k_filter(logits, k: int):
    """Keep the k largest logits of each row, set the rest to -inf. logits: (B, V)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = tf.math.top_k(logits, k=k).values[:, -1:]  # (B, 1)
    return tf.where(logits < kth, tf.constant(-np.inf, logits.dtype), logits)


def top_p_filter(logits, p: float):
    """Nucleus filter: keep the fewest most likely characters whose probability sum reaches p.

    The most likely character is always kept. logits: (B, V) -> (B, V), the rest -inf.
    """
    if p >= 1:
        return logits
    sorted_logits = tf.sort(logits, axis=-1, direction="DESCENDING")
    probs = tf.nn.softmax(sorted_logits, axis=-1)
    before = tf.cumsum(probs, axis=-1, exclusive=True)  # mass of the strictly more likely ones
    keep = before < p  # (B, V) in sorted order; the first is always kept
    cutoff = tf.reduce_min(tf.where(keep, sorted_logits, np.inf), axis=-1, keepdims=True)
    return tf.where(logits < cutoff, tf.constant(-np.inf, logits.dtype), logits)


def pick_next(logits, sampling: SamplingConfig, step):
    """Next ids (B,) int32 from logits (B, V) at step `step` (an int32 scalar)."""
    if sampling.temperature == 0:
        return tf.argmax(logits, axis=-1, output_type=tf.int32)
    logits = logits / sampling.temperature
    logits = top_p_filter(top_k_filter(logits, sampling.top_k), sampling.top_p)
    seed = tf.stack([tf.constant(sampling.seed, tf.int32), tf.cast(step, tf.int32)])
    return tf.random.stateless_categorical(logits, 1, seed=seed, dtype=tf.int32)[:, 0]


def prime_states(model: CharLSTM, prime_ids: np.ndarray, num_samples: int):
    """Feed all but the last prime id at once: (states, last ids (B,)) to start sampling from."""
    rows = np.tile(prime_ids[None, :], (num_samples, 1)).astype(np.int32)  # (B, P)
    states = model.zero_states(num_samples)
    if rows.shape[1] > 1:
        _, states = model(rows[:, :-1], states)
    return states, tf.constant(rows[:, -1])


def make_sampler(model: CharLSTM, sampling: SamplingConfig, chunk: int):
    """A compiled loop: (last ids (B,), states, t0) -> (ids (B, chunk), last ids, states)."""

    def sample_chunk(last, states: States, t0):
        def body(i, last, states, out):
            logits, states = model.step(last, states)
            nxt = pick_next(logits, sampling, t0 + i)
            return i + 1, nxt, states, out.write(i, nxt)

        out = tf.TensorArray(tf.int32, size=chunk)
        _, last, states, out = tf.while_loop(
            lambda i, *_: i < chunk, body, (tf.constant(0), last, states, out)
        )
        return tf.transpose(out.stack()), last, states

    # XLA always: compiled and uncompiled kernels draw different random streams for one seed
    return tf.function(sample_chunk, jit_compile=True)


def generate(
    model: CharLSTM,
    tokenizer: CharTokenizer,
    prime: str = "",
    length: int = 500,
    sampling: SamplingConfig | None = None,
    num_samples: int = 1,
    chunk: int = 256,
) -> Iterator[list[str]]:
    """Sample `length` characters after `prime` for `num_samples` streams at once.

    Yields lists of num_samples strings, the next piece of each sample, as each chunk of up to
    `chunk` steps is ready; joined, they are the generated text (without the prime). An empty
    prime starts as if after a newline.
    """
    sampling = sampling or SamplingConfig()
    if not 1 <= length <= MAX_LENGTH:
        raise CharlstmError(f"length must be in 1..{MAX_LENGTH:,}, got {length}")
    if num_samples < 1:
        raise CharlstmError(f"num_samples must be at least 1, got {num_samples}")
    context = prime or ("\n" if "\n" in tokenizer.chars else tokenizer.chars[-1])
    states, last = prime_states(model, tokenizer.encode(context), num_samples)
    samplers = {}
    t = 0
    while t < length:
        n = min(chunk, length - t)
        if n not in samplers:
            samplers[n] = make_sampler(model, sampling, n)
        ids, last, states = samplers[n](last, states, tf.constant(t, tf.int32))
        yield [tokenizer.decode(row) for row in ids.numpy()]
        t += n
