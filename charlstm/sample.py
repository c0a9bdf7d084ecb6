"""Generate text: next-character strategies over logits, and the loop that feeds them.

Strategies are pure functions over logits (B, V). `generate` feeds the prime once, then one id
per step, carrying the state; the steps run in a compiled TensorFlow loop, `chunk` characters
per call, and each chunk is handed out as soon as it is ready. Randomness is one
`tf.random.stateless_uniform` number per stream and step, seeded with (seed, t) for step t, so
a seed gives the same text however the steps are grouped into chunks.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

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


# up to this vocabulary size the filters rank characters by comparing all pairs, (B, V, V):
# several times faster than a sort under XLA on the CPU; beyond it, (B, V, V) grows too large
PAIRWISE_MAX_VOCAB = 512


def top_k_top_p_filter(logits, k, p, pairwise: bool | None = None):
    """Keep the k most likely characters, then of those the fewest whose probability (renormalized
    over the k) reaches p; set the rest to -inf.

    In the order of decreasing logits (ties: the lower id first), position r is kept while
    r < k and the probability mass of positions before r, over the k, is < p. Ties with the last
    kept logit are kept too. The most likely character is always kept; k <= 0 and p >= 1 each
    keep all.

    logits: (B, V); k: int or int32 scalar, p: float or float32 scalar (tensors let one
    compiled sampler serve every setting). pairwise: rank by comparing all pairs of characters
    ((B, V, V), no sort) or by one sort; None picks pairwise up to PAIRWISE_MAX_VOCAB. Both give
    the same result. Returns (B, V).
    """
    V = logits.shape[-1]
    if pairwise is None:
        pairwise = V <= PAIRWISE_MAX_VOCAB
    k = tf.convert_to_tensor(k, tf.int32)
    p = tf.convert_to_tensor(p, logits.dtype)
    neg_inf = tf.constant(-np.inf, logits.dtype)
    if pairwise:
        # ahead[b, j, i]: character j comes before i in the order
        lj, li = logits[:, :, None], logits[:, None, :]
        earlier = tf.range(V)[:, None] < tf.range(V)[None, :]
        ahead = tf.cast((lj > li) | ((lj == li) & earlier), logits.dtype)  # (B, V, V)
        rank = tf.cast(tf.reduce_sum(ahead, axis=1), tf.int32)  # (B, V): position in the order
        in_top_k = (rank < k) | (k <= 0)
        probs = tf.nn.softmax(tf.where(in_top_k, logits, neg_inf), axis=-1)
        before = tf.einsum("bj,bji->bi", probs, ahead)  # mass of the kept ones ahead of i
        ranked = logits
    else:
        ranked = tf.sort(logits, axis=-1, direction="DESCENDING")  # (B, V), position r
        in_top_k = (tf.range(V) < k) | (k <= 0)
        probs = tf.nn.softmax(tf.where(in_top_k, ranked, neg_inf), axis=-1)
        before = tf.cumsum(probs, axis=-1, exclusive=True)
    keep = in_top_k & ((before < p) | (p >= 1))  # a prefix of the order
    cutoff = tf.reduce_min(tf.where(keep, ranked, np.inf), axis=-1, keepdims=True)
    return tf.where(logits >= cutoff, logits, neg_inf)


def top_k_filter(logits, k):
    """Keep the k largest logits of each row, the rest -inf; k <= 0 keeps all. (B, V)."""
    return top_k_top_p_filter(logits, k, 1.0)


def top_p_filter(logits, p):
    """Nucleus filter: keep the fewest most likely characters whose probability sum reaches p.

    The most likely character is always kept; p >= 1 keeps all. (B, V).
    """
    return top_k_top_p_filter(logits, 0, p)


def draw(logits, seed, step):
    """One id per row (B,) int32, drawn from softmax(logits) (B, V) by inverting the cumulative
    distribution at one uniform number per row, `tf.random.stateless_uniform` seeded with
    (seed, step): V times fewer random numbers than drawing from per-character noise. Rows may
    hold -inf (filtered characters); those are never drawn.
    """
    probs = tf.nn.softmax(logits, axis=-1)
    cumulative = tf.cumsum(probs, axis=-1)  # (B, V)
    pair = tf.stack([tf.cast(seed, tf.int32), tf.cast(step, tf.int32)])
    u = tf.random.stateless_uniform(tf.shape(logits)[:1], seed=pair, dtype=logits.dtype)
    target = u[:, None] * cumulative[:, -1:]  # (B, 1), in [0, total)
    # the first id whose cumulative probability passes the target; rounding can push the count
    # past the last drawable id, which caps it
    count = tf.reduce_sum(tf.cast(cumulative <= target, tf.int32), axis=-1)
    ids = tf.range(tf.shape(logits)[-1])
    last = tf.reduce_max(tf.where(probs > 0, ids, 0), axis=-1)
    return tf.minimum(count, last)


def pick_next(logits, temperature, top_k, top_p, seed, step, filtering: bool = True):
    """Next ids (B,) int32 from logits (B, V).

    temperature 0 takes the argmax; otherwise `draw` from softmax(filtered logits / temperature)
    seeded with (seed, step). All arguments but `filtering` may be tensors, so one compiled
    sampler serves every setting. filtering (a Python bool): False leaves out the top-k/top-p
    filter, which keeps all anyway when top_k <= 0 and top_p >= 1, and saves its work.
    """
    greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)
    scaled = logits / tf.maximum(tf.cast(temperature, logits.dtype), 1e-6)
    if filtering:
        scaled = top_k_top_p_filter(scaled, top_k, top_p)
    return tf.where(temperature > 0, draw(scaled, seed, step), greedy)


def prime_states(model: CharLSTM, prime_ids: np.ndarray, num_samples: int):
    """Feed all but the last prime id: (states, last ids (B,)) to start sampling from."""
    rows = np.tile(prime_ids[None, :], (num_samples, 1)).astype(np.int32)  # (B, P)
    states = model.zero_states(num_samples)
    if rows.shape[1] > 1:
        states = compiled(model).feed(tf.constant(rows[:, :-1]), states)
    return states, tf.constant(rows[:, -1])


class Compiled(NamedTuple):
    """A model's compiled loops, built once per model and reused across calls and settings.

    feed: (ids (B, P), states) -> states after them, `model.step` after step; a TensorFlow
        graph, not XLA, traced once for every B and prime length P (XLA compiles per shape).
    sample: (last (B,), states, t0, steps, temperature, top_k, top_p, seed, filtering) ->
        (ids (B, steps), last, states); XLA. `steps` and `filtering` are Python values (each
        distinct value compiles once). XLA always: compiled and uncompiled kernels draw
        different random streams.
    """

    feed: Callable
    sample: Callable


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled(model: CharLSTM) -> Compiled:
    """The model's `Compiled` loops."""
    if model not in _COMPILED:

        def feed(ids, states: States):
            def body(t, states):
                _, states = model.step(ids[:, t], states)
                return t + 1, states

            steps = tf.shape(ids)[1]
            return tf.while_loop(lambda t, _: t < steps, body, (0, states))[1]

        def sample(last, states: States, t0, steps, temperature, top_k, top_p, seed, filtering):
            def body(i, last, states, out):
                logits, states = model.step(last, states)
                nxt = pick_next(logits, temperature, top_k, top_p, seed, t0 + i, filtering)
                return i + 1, nxt, states, out.write(i, nxt)

            out = tf.TensorArray(tf.int32, size=steps)
            _, last, states, out = tf.while_loop(
                lambda i, *_: i < steps, body, (tf.constant(0), last, states, out)
            )
            return tf.transpose(out.stack()), last, states

        any_batch = tf.nest.map_structure(  # states of any batch size
            lambda t: tf.TensorSpec((None, *t.shape[1:]), t.dtype), model.zero_states(1)
        )
        _COMPILED[model] = Compiled(
            feed=tf.function(
                feed, input_signature=[tf.TensorSpec((None, None), tf.int32), any_batch]
            ),
            sample=tf.function(sample, jit_compile=True, reduce_retracing=True),
        )
    return _COMPILED[model]


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
    run = compiled(model).sample
    settings = (
        tf.constant(sampling.temperature, tf.float32),
        tf.constant(sampling.top_k, tf.int32),
        tf.constant(sampling.top_p, tf.float32),
        tf.constant(sampling.seed, tf.int32),
        sampling.top_k > 0 or sampling.top_p < 1,
    )
    t = 0
    while t < length:
        n = min(chunk, length - t)
        ids, last, states = run(last, states, tf.constant(t, tf.int32), n, *settings)
        yield [tokenizer.decode(row) for row in ids.numpy()]
        t += n
