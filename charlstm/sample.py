"""Generate text: next-character strategies over logits, and a sampler that feeds them.

Strategies are pure functions over logits (B, V). A `Sampler` holds a model's two compiled
loops: `feed` runs the prime through the model once, `sample` then draws one id per step,
carrying the state, `chunk` characters per call, each chunk handed out as soon as it is ready.
Randomness is one `tf.random.stateless_uniform` number per stream and step, seeded with
(seed, t) for step t, so a seed gives the same text however the steps are grouped into chunks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf

from charlstm import precision
from charlstm.config import SamplingConfig
from charlstm.errors import CharlstmError
from charlstm.model import CharModel, Ensemble, States, check_fits
from charlstm.tokenizer import UNK_ID, CharTokenizer

MAX_LENGTH = 10_000_000


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


def never_drawn(tokenizer: CharTokenizer) -> np.ndarray:
    """(V,) float32 added to every step's logits: -inf at the unknown token, which stands for
    characters the training text never had, so it is never drawn; 0 elsewhere."""
    never = np.zeros(tokenizer.vocab_size, np.float32)
    never[UNK_ID] = -np.inf
    return never


def empty_prime(tokenizer: CharTokenizer) -> str:
    """What an empty prime reads as: a newline (the start of a line), or the vocabulary's last
    character where the text had no newline."""
    chars = tokenizer.chars
    return "\n" if "\n" in chars else chars[-1]


def feed(model: CharModel, ids, states: States) -> States:
    """ids (B, P) int32 -> the states after them, one `model.step` after another."""

    def body(t, states):
        _, states = model.step(ids[:, t], states)
        return t + 1, states

    steps = tf.shape(ids)[1]
    return tf.while_loop(lambda t, _: t < steps, body, (0, states))[1]


def draw_steps(
    model: CharModel, never, last, states: States, t0, steps, temperature, top_k, top_p, seed,
    filtering: bool, capacity: int | None = None,
):  # fmt: skip
    """`steps` ids after `last` (B,) int32: (ids (B, steps), the last ids, states after).

    Step t0 + i feeds the previous id, adds `never` (V,) to the logits (`never_drawn`) and
    picks with `pick_next` seeded (seed, t0 + i). The Sampler and the exported SavedModel
    both draw through this loop, so a seed gives the same text in both.

    capacity: a Python int >= steps; the ids are then (B, capacity), their columns from
    `steps` on zeros, so one compiled loop serves every `steps` (a tensor) up to it.
    """

    def body(i, last, states, out):
        logits, states = model.step(last, states)
        nxt = pick_next(logits + never, temperature, top_k, top_p, seed, t0 + i, filtering)
        return i + 1, nxt, states, out.write(i, nxt)

    if capacity is None:
        out = tf.TensorArray(tf.int32, size=steps)
    else:
        out = tf.TensorArray(tf.int32, size=capacity, element_shape=last.shape)
        out = out.unstack(tf.zeros([capacity, tf.shape(last)[0]], tf.int32))  # all written
    _, last, states, out = tf.while_loop(
        lambda i, *_: i < steps, body, (tf.constant(0), last, states, out)
    )
    return tf.transpose(out.stack()), last, states


def uniforms(batch, seed, t0, capacity: int):
    """The uniform numbers `draw` takes at steps t0 .. t0 + capacity - 1: (capacity, B)
    float32, row i `tf.random.stateless_uniform` (B,) seeded with (seed, t0 + i). Run under
    XLA, as the XLA sampler's loop is, so both draw the same numbers."""
    pair = lambda i: tf.stack([tf.cast(seed, tf.int32), tf.cast(t0 + i, tf.int32)])  # noqa: E731
    return tf.map_fn(
        lambda i: tf.random.stateless_uniform([batch], seed=pair(i)),
        tf.range(capacity),
        fn_output_signature=tf.float32,
    )


_uniforms = tf.function(uniforms, jit_compile=True, reduce_retracing=True)


def generation_weights(model: CharModel, never) -> tuple:
    """A CharLSTM's weights as the compiled generation op takes them: the first layer's input
    projection as the (V, 4H) table Embedding @ kernel + bias (its product in the model's
    `matmul_dtype`, as the XLA loop computes it per character), every layer's recurrent kernel
    (N, H, 4H), the upper layers' kernels (N-1, H, 4H) and biases (N-1, 4H), the head's kernel
    (H, V) (tied: Embedding^T) and its bias plus `never` (V,)."""
    cells = [rnn.cell for rnn in model.rnns]
    embeddings = tf.convert_to_tensor(model.embedding.embeddings)
    H = model.config.units

    def stacked(weights, shape):  # (N', ...) from N' Keras variables of `shape`
        if not weights:
            return tf.zeros((0, *shape))
        return tf.stack([tf.convert_to_tensor(w) for w in weights])

    upper = cells[1:]
    head = tf.transpose(embeddings) if model.config.tie_embeddings else model.head.kernel
    return (
        precision.matmul(embeddings, cells[0].kernel, model.matmul_dtype) + cells[0].bias,
        stacked([cell.recurrent_kernel for cell in cells], (H, 4 * H)),
        stacked([cell.kernel for cell in upper], (H, 4 * H)),
        stacked([cell.bias for cell in upper], (4 * H,)),
        tf.convert_to_tensor(head),
        model.head.bias + never,
    )


def compiled_draw_steps(
    weights: tuple, last, states: States, t0, steps, temperature, top_k, top_p, seed,
    capacity: int, bf16: bool = False,
):  # fmt: skip
    """`draw_steps` with its loop in the compiled kernel's generation op (`charlstm.kernel`),
    over `generation_weights`: the same ids for a seed wherever rounding leaves a draw alone
    (greedy ones always) in float32. bf16: every product in the op in bfloat16 with float32
    sums, where the XLA loop rounds each product to bfloat16 too (`charlstm.precision`), so
    their texts part sooner or later. The uniform numbers of the draws come from `uniforms`,
    made by XLA as the XLA loop makes them.

    Call it eagerly: inside a graph, TensorFlow's own threads compete with the op's for the
    cores, and it ran at half the speed.
    """
    from charlstm.kernel import ops  # noqa: PLC0415

    numbers = _uniforms(last.shape[0], seed, t0, capacity)
    ids, last, h, c = ops().charlstm_generate(
        *weights, tf.stack([s[0] for s in states]), tf.stack([s[1] for s in states]), last,
        numbers, temperature, top_k, top_p, steps, bf16=bf16,
    )  # fmt: skip
    return ids, last, [[h[i], c[i]] for i in range(len(states))]


class StopAt:
    """Ends a text handed out piece by piece just after the first occurrence of any of `stops`
    (the stop is kept). Occurrences are looked for in the pieces only, across their edges.

    Args:
        stops: the texts to stop at; empty ones are ignored, none stops nothing.
    """

    def __init__(self, stops: Sequence[str] = ()):
        self.stops = tuple(stop for stop in stops if stop)
        self.keep = max((len(stop) for stop in self.stops), default=1) - 1
        self.tail = ""  # the last `keep` characters handed out: a stop may start in them
        self.done = False

    def cut(self, piece: str) -> str:
        """What of `piece` to hand out: all of it, up to and with a stop (then `done`), or
        nothing once done."""
        if self.done or not self.stops:
            return "" if self.done else piece
        text = self.tail + piece
        ends = [text.find(stop) + len(stop) for stop in self.stops if stop in text]
        if ends:  # the earliest to be complete; none lies within the tail, checked before
            self.done = True
            return text[len(self.tail) : min(ends)]
        self.tail = text[len(text) - self.keep :] if self.keep else ""
        return piece


class Sampler:
    """A model's compiled generation loops, built once and reused across calls and settings.

    The draws run in the compiled kernel's generation op (`compiled_draw_steps`) or in one
    XLA loop (`draw_steps`), as `kernel` says.

    Args:
        model: a CharModel (its `step` and `zero_states`).
        tokenizer: the run's tokenizer.
        kernel: "compiled" (a CharLSTM's draws in the generation op) or "xla"; None: the
            model's `kernel`, or "xla" for an Ensemble (the op draws from one model).
    """

    def __init__(self, model: CharModel | Ensemble, tokenizer: CharTokenizer,
                 kernel: str | None = None):  # fmt: skip
        self.model, self.tokenizer = model, tokenizer
        self.kernel = kernel or ("xla" if isinstance(model, Ensemble) else model.kernel)
        self._never = tf.constant(never_drawn(tokenizer))
        any_batch = tf.nest.map_structure(  # states of any batch size
            lambda s: tf.TensorSpec((None, *s.shape[1:]), s.dtype), model.zero_states(1)
        )
        # a TensorFlow graph, not XLA: traced once for every batch and prime length (XLA
        # compiles per shape)
        self.feed = tf.function(
            self._feed, input_signature=[tf.TensorSpec((None, None), tf.int32), any_batch]
        )
        # XLA always: compiled and uncompiled kernels draw different random streams. Traced
        # once for each chunk size (`capacity`) and `filtering` (Python values), and batch
        # size; the number of draws, the settings and the seed are tensors
        self.sample = tf.function(self._sample, jit_compile=True, reduce_retracing=True)

    def _feed(self, ids, states: States) -> States:
        return feed(self.model, ids, states)

    def _sample(
        self, last, states: States, t0, steps, temperature, top_k, top_p, seed, filtering,
        capacity,
    ):  # fmt: skip
        return draw_steps(self.model, self._never, last, states, t0, steps, temperature, top_k,
                          top_p, seed, filtering, capacity)  # fmt: skip

    def prime(self, prime_ids: np.ndarray, num_samples: int) -> tuple[States, tf.Tensor]:
        """Feed all but the last prime id: (states, last ids (B,)) to start sampling from."""
        rows = np.tile(prime_ids[None, :], (num_samples, 1)).astype(np.int32)  # (B, P)
        states = self.model.zero_states(num_samples)
        if rows.shape[1] > 1:
            states = self.feed(tf.constant(rows[:, :-1]), states)
        return states, tf.constant(rows[:, -1])

    def generate(
        self,
        prime: str = "",
        length: int = 500,
        sampling: SamplingConfig | None = None,
        num_samples: int | None = None,
        chunk: int = 256,
        stop: Sequence[str] = (),
    ) -> Iterator[str] | Iterator[tuple[str, ...]]:
        """Sample `length` characters after `prime`, handed out as each chunk is ready.

        Yields the next piece of the text (without the prime); with num_samples, a tuple of
        the next piece of each of that many samples, drawn at once as a batch. An empty prime
        starts as if after a newline. stop: each sample ends just after the first of these
        texts it draws (kept; `StopAt`), at most `length` characters; drawing ends when every
        sample has.
        """
        sampling = sampling or SamplingConfig()
        self.check_request(length, num_samples)
        context = prime or empty_prime(self.tokenizer)
        position = self.prime(self.tokenizer.encode(context), num_samples or 1)
        stops = [StopAt(stop) for _ in range(num_samples or 1)]
        for ids, _ in self._draw(position, 0, length, sampling, chunk):
            pieces = tuple(s.cut(self.tokenizer.decode(row)) for s, row in zip(stops, ids))
            yield pieces if num_samples is not None else pieces[0]
            if all(s.done for s in stops):
                return

    def check_request(self, length: int, num_samples: int | None) -> None:
        """Refuse a length outside 1..MAX_LENGTH, or a batch of samples too big for memory."""
        if not 1 <= length <= MAX_LENGTH:
            raise CharlstmError(f"length must be in 1..{MAX_LENGTH:,}, got {length}")
        if num_samples is not None and num_samples < 1:
            raise CharlstmError(f"num_samples must be at least 1, got {num_samples}")
        check_fits(self.model.config, batch_size=num_samples or 1)

    def _draw(self, position, t0: int, length: int, sampling: SamplingConfig, chunk: int):
        """From position (states, last ids), `length` draws numbered t0.. in chunks: yields
        (ids (B, n) numpy, (states, last) after them)."""
        states, last = position
        settings = (
            tf.constant(sampling.temperature, tf.float32),
            tf.constant(sampling.top_k, tf.int32),
            tf.constant(sampling.top_p, tf.float32),
            tf.constant(sampling.seed, tf.int32),
        )
        filtering = sampling.top_k > 0 or sampling.top_p < 1
        weights = None
        if self.kernel == "compiled":
            weights = generation_weights(self.model, self._never)
        for t in range(0, length, chunk):
            n = min(chunk, length - t)
            where = (tf.constant(t0 + t, tf.int32), tf.constant(n, tf.int32))
            if weights is None:
                ids, last, states = self.sample(last, states, *where, *settings, filtering, chunk)
            else:
                ids, last, states = compiled_draw_steps(
                    weights, last, states, *where, *settings, chunk,
                    bf16=self.model.matmul_dtype == "bfloat16",
                )  # fmt: skip
            yield ids.numpy()[:, :n], (states, last)


class Conversation:
    """Turns of one text: each turn's prime is read after everything before it (the first
    turn starts as `Sampler.generate` does), and the draws keep counting across turns
    (`charlstm generate --interactive --keep-state`).

    Args:
        sampler: the model's Sampler.
        sampling: temperature, top-k, top-p and seed for every turn.
        keep_state: False starts every turn afresh, as `Sampler.generate` with its prime.
    """

    def __init__(self, sampler: Sampler, sampling: SamplingConfig, keep_state: bool = True):
        self.sampler, self.sampling, self.keep_state = sampler, sampling, keep_state
        self.position = None  # (states, last id) after the text so far
        self.drawn = 0  # draws so far, in all turns

    def reply(self, prime: str, length: int, chunk: int = 64) -> Iterator[str]:
        """The `length` characters after `prime`, piece by piece."""
        s = self.sampler
        s.check_request(length, None)
        ids = s.tokenizer.encode(prime)
        if self.position is None or not self.keep_state:
            context = ids if len(ids) else s.tokenizer.encode(empty_prime(s.tokenizer))
            position, t0 = s.prime(context, 1), (self.drawn if self.keep_state else 0)
        else:  # read the last drawn id and the new prime from where the text stands
            states, last = self.position
            if len(ids):
                rows = tf.concat([last[:, None], tf.constant(ids[None, :-1], tf.int32)], axis=1)
                states = s.feed(rows, states)
                last = tf.constant(ids[-1:], tf.int32)
            position, t0 = (states, last), self.drawn
        for piece, after in s._draw(position, t0, length, self.sampling, chunk):
            self.position = after
            yield s.tokenizer.decode(piece[0])
        self.drawn = t0 + length
