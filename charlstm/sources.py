"""Texts of known entropy: synthetic sources whose best possible loss is exact.

A model's validation loss on natural text has no known floor. On these sources it does: each
is a stationary random process with an exact entropy rate H (bits/char), the loss of the
generating process itself, which no model can beat on average. Each source also gives the
generating process' own loss at every character of the text it made (`Source.bits`), so a
model can be compared with the optimum on the very same characters.

markov(order k, alphabet A): x_t ~ P(. | x_{t-k} .. x_{t-1}), each of the A^k rows of P drawn
    from a Dirichlet(concentration) distribution. With pi the stationary distribution over the
    contexts (the left null vector of the context chain's transition matrix minus I),

        H = sum_ctx pi(ctx) * H(P(. | ctx)),    H(p) = -sum_x p(x) log2 p(x)

brackets(pairs m, fillers f, depth D, quotes): at stack depth d, open one of m brackets
    with probability p_open (d < D), close the innermost one with p_close (d > 0), else one of f
    filler letters. Which closer comes is fixed by the stack: a model must remember the opener,
    however long ago. The depth is a birth-death chain with pi(d) proportional to
    (p_open / p_close)^d, and

        H = sum_d pi(d) * H_d,    H_d = entropy of (open m ways | close | filler f ways) at d

    With quotes, '"' is one more opener and its own closer, never opened directly inside
    another quote (there it can only close): k = m + 1 openers, m when the innermost is a
    quote. The depth chain does not depend on what is open, and the stack, bottom up, is a
    Markov chain (after a quote one of the m brackets, else one of all m + 1), so the innermost
    is a quote at depth d with probability q_d = (1 - q_{d-1}) / (m + 1), q_0 = 0, and

        H = sum_d pi(d) * [q_d H_d(m) + (1 - q_d) H_d(m + 1)],   H_d(k): open k ways at d

copy(length L, alphabet A): blocks of L uniform letters, "|", the same L letters, newline:

        H = L * log2(A) / (2L + 2)
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from charlstm.errors import CharlstmError

LETTERS = "abcdefghijklmnopqrstuvwxyz"
PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">"}
QUOTE = '"'  # brackets(quotes=True): opens and closes
MAX_CONTEXTS = 4096  # A^k: the stationary distribution is an exact solve of this size


@dataclass(frozen=True)
class Source:
    """A text drawn from a process of known entropy.

    Attributes:
        name: the process and its settings, e.g. "markov(order=2, alphabet=8, ...)".
        text: the characters drawn, a stationary stream.
        rate_bits: the process' entropy rate H, bits/char.
        bits: (len(text),) float32, -log2 P(x_t | everything before t) under the process: its
            mean over a stretch is the best loss any model can expect there.
    """

    name: str
    text: str
    rate_bits: float
    bits: np.ndarray

    @property
    def rate_nats(self) -> float:
        return self.rate_bits * math.log(2)


def _check(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise CharlstmError(f"{name} must be in {low}..{high:,}, got {value}")


def _entropy_bits(p: np.ndarray) -> np.ndarray:
    """Entropy of each row of p (..., n), in bits; 0 log 0 = 0."""
    logs = np.log2(np.where(p > 0, p, 1.0))
    return -(p * logs).sum(axis=-1)


def markov(order: int = 2, alphabet: int = 8, chars: int = 1_000_000, concentration: float = 0.5,
           seed: int = 0) -> Source:  # fmt: skip
    """A random Markov chain: each letter depends on the `order` letters before it, through a
    table of next-letter probabilities over the first `alphabet` lowercase letters drawn from a
    Dirichlet(`concentration`) distribution (below 1: peaked rows, a lower entropy rate). Its
    rate is sum over contexts of pi(context) * H(next letter | context), pi the chain's
    stationary distribution, solved exactly."""
    _check("order", order, 1, 12)
    _check("alphabet", alphabet, 2, len(LETTERS))
    _check("chars", chars, 1, 10**9)
    contexts = alphabet**order
    if contexts > MAX_CONTEXTS:
        raise CharlstmError(f"alphabet ** order must be at most {MAX_CONTEXTS}, got {contexts}")
    if not 0 < concentration < math.inf:
        raise CharlstmError(f"concentration must be a positive number, got {concentration}")
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(alphabet, concentration), size=contexts)  # (A^k, A)
    probs = np.maximum(probs, 1e-12)  # every transition possible: one irreducible chain
    probs /= probs.sum(axis=1, keepdims=True)
    nxt = _next_context(contexts, alphabet)
    pi = _stationary(probs, nxt)
    rate = markov_rate(probs)

    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0
    cum_rows, nxt_rows = cum.tolist(), nxt.tolist()  # Python lists: bisect is 10x numpy's call
    uniform = rng.random(chars).tolist()
    ids = np.empty(chars, np.int64)
    ctxs = np.empty(chars, np.int64)
    ctx = int(rng.choice(contexts, p=pi))
    for t in range(chars):
        x = bisect.bisect_right(cum_rows[ctx], uniform[t])
        ids[t], ctxs[t] = x, ctx
        ctx = nxt_rows[ctx][x]
    bits = (-np.log2(probs[ctxs, ids])).astype(np.float32)
    text = "".join(np.array(list(LETTERS[:alphabet]))[ids])
    name = f"markov(order={order}, alphabet={alphabet}, concentration={concentration}, seed={seed})"
    return Source(name, text, rate, bits)


def markov_rate(probs: np.ndarray) -> float:
    """The entropy rate, bits/char, of the Markov chain whose next-letter table is `probs`
    (A^k, A): row c is P(. | context c), context c being the last k letters as a base-A number
    with the newest letter its lowest digit. Every row must be a distribution and the chain
    irreducible."""
    contexts, alphabet = probs.shape
    pi = _stationary(probs, _next_context(contexts, alphabet))
    return float(pi @ _entropy_bits(probs))


def _next_context(contexts: int, alphabet: int) -> np.ndarray:
    """(A^k, A): the context after context c and letter x (the oldest letter dropped)."""
    return (np.arange(contexts)[:, None] * alphabet) % contexts + np.arange(alphabet)[None, :]


def _stationary(probs: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """pi with pi @ M = pi, sum(pi) = 1, for the chain moving from context c to nxt[c, x] with
    probability probs[c, x]: one exact linear solve."""
    n = probs.shape[0]
    move = np.zeros((n, n))
    np.add.at(move, (np.repeat(np.arange(n), probs.shape[1]), nxt.ravel()), probs.ravel())
    system = move.T - np.eye(n)
    system[-1] = 1.0  # replace one (dependent) equation by the normalization
    rhs = np.zeros(n)
    rhs[-1] = 1.0
    pi = np.linalg.solve(system, rhs)
    return np.clip(pi, 0.0, None) / np.clip(pi, 0.0, None).sum()


def brackets(
    pairs: int = 4,
    fillers: int = 4,
    depth: int = 4,
    p_open: float = 0.02,
    p_close: float = 0.02,
    chars: int = 1_000_000,
    seed: int = 0,
    quotes: bool = False,
) -> Source:
    """Nested brackets among filler letters: at stack depth d < `depth` one of `pairs` openers
    with probability `p-open`, at d > 0 the innermost bracket's closer with `p-close`, else
    one of `fillers` letters. Which closer comes is fixed by the opener, which a model must
    remember however long ago it was (1 / p-close characters on average, 50 by default).
    With `quotes`, '"' opens too, and closes itself: inside a quote a '"' only closes, so a
    model must remember whether the innermost thing open is a quote."""
    _check("pairs", pairs, 1, len(PAIRS))
    _check("fillers", fillers, 1, len(LETTERS))
    _check("depth", depth, 1, 1000)
    _check("chars", chars, 1, 10**9)
    if not (0 < p_open < 1 and 0 < p_close < 1 and p_open + p_close < 1):
        raise CharlstmError("p_open and p_close must be in (0, 1) with p_open + p_close < 1")
    # emission probabilities of (open, close, filler) at each depth d = 0..D
    emit = np.zeros((depth + 1, 3))
    for d in range(depth + 1):
        o = p_open if d < depth else 0.0
        c = p_close if d > 0 else 0.0
        emit[d] = (o, c, 1.0 - o - c)
    ratio = p_open / p_close
    pi = ratio ** np.arange(depth + 1, dtype=np.float64)
    pi /= pi.sum()
    brackets_only = list(PAIRS)[:pairs]
    every = brackets_only + [QUOTE] * quotes  # the openers where the innermost is no quote
    # q[d]: the innermost of d open is a quote (module docstring); 0 without quotes
    q = np.zeros(depth + 1)
    for d in range(1, depth + 1):
        q[d] = (1 - q[d - 1]) / len(every) if quotes else 0.0

    def h_depth(k: int) -> np.ndarray:  # H_d with k openers to choose from, every d
        per_choice = np.array([math.log2(k), 0.0, math.log2(fillers)])
        return _entropy_bits(emit) + (emit * per_choice).sum(axis=1)

    rate = float(pi @ (q * h_depth(pairs) + (1 - q) * h_depth(len(every))))

    rng = np.random.default_rng(seed)
    letters = LETTERS[:fillers]
    out: list[str] = []
    bits = np.empty(chars, np.float32)
    d = int(rng.choice(depth + 1, p=pi))  # a stationary start: d already open, bottom up
    stack: list[str] = []
    for _ in range(d):
        allowed = brackets_only if stack and stack[-1] == QUOTE else every
        stack.append(allowed[int(rng.integers(len(allowed)))])
    kinds = rng.random(chars)
    picks = rng.random(chars)
    for t in range(chars):
        o, c, _ = emit[len(stack)]
        if kinds[t] < o:
            allowed = brackets_only if stack and stack[-1] == QUOTE else every
            stack.append(allowed[int(picks[t] * len(allowed))])
            out.append(stack[-1])
            bits[t] = -math.log2(o / len(allowed))
        elif kinds[t] < o + c:
            opener = stack.pop()
            out.append(QUOTE if opener == QUOTE else PAIRS[opener])
            bits[t] = -math.log2(c)
        else:
            out.append(letters[int(picks[t] * fillers)])
            bits[t] = -math.log2((1.0 - o - c) / fillers)
    name = (
        f"brackets(pairs={pairs}, fillers={fillers}, depth={depth}, p_open={p_open}, "
        f"p_close={p_close}, seed={seed}{', quotes' * quotes})"
    )
    return Source(name, "".join(out), rate, bits)


def copy(length: int = 10, alphabet: int = 8, chars: int = 1_000_000, seed: int = 0) -> Source:
    """Blocks of `length` random letters (uniform over `alphabet`), "|", the same letters again
    and a newline: the copy costs nothing to a model that remembers the block. Rate: length *
    log2(alphabet) / (2 length + 2) bits/char."""
    _check("length", length, 1, 10_000)
    _check("alphabet", alphabet, 2, len(LETTERS))
    _check("chars", chars, 1, 10**9)
    block = 2 * length + 2
    rng = np.random.default_rng(seed)
    n_blocks = -(-chars // block)
    ids = rng.integers(alphabet, size=(n_blocks, length))
    letters = np.array(list(LETTERS[:alphabet]))
    rows = ["".join(row) for row in letters[ids]]
    text = "".join(f"{row}|{row}\n" for row in rows)[:chars]
    one = np.concatenate([np.full(length, math.log2(alphabet)), np.zeros(length + 2)])
    bits = np.tile(one, n_blocks)[:chars].astype(np.float32)
    rate = length * math.log2(alphabet) / block
    return Source(f"copy(length={length}, alphabet={alphabet}, seed={seed})", text, rate, bits)


SOURCES = {"markov": markov, "brackets": brackets, "copy": copy}
