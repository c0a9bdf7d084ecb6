"""Look inside a trained model: gates, cell and hidden states per character, and gradients.

    trace(model, tokenizer, text)    every layer's i, f, g, o, c, h at every character, computed
                                     in NumPy from the model's own weights with LSTMCell's
                                     equations, and p(next char) from the head
    text_features(text)              per-character quantities a cell might track (quotes,
                                     bracket depth, column, indentation)
    find_cells(trace, features)      the cells whose value follows each feature best
    gate_saturation(trace, layer)    how often each gate is nearly shut (< 0.1) or open (> 0.9)
    forget_half_life(trace, layer)   how many steps a cell keeps half of what it holds
    state_gradient_norms(...)        ||d loss / d state|| k steps back, by autodiff
    window_loss(model, windows)      loss with the state carried across windows, or reset

The tests hold `trace` to the model itself (`model(ids)`, its RNN layers and `model.step`), so
it cannot drift from what the model computes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from charlstm.tokenizer import CharTokenizer

GATES = ("i", "f", "g", "o")  # the order of the blocks of kernel, recurrent_kernel and bias
OPENERS, CLOSERS = "([{", ")]}"


@dataclass(frozen=True)
class LayerTrace:
    """One LSTM layer run over T characters; every array is (T, H) float32.

    Row t holds the values after reading character t:
        i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  g = tanh(z_g)
        c = f * c_prev + i * g;  h = o * tanh(c)
    """

    i: np.ndarray
    f: np.ndarray
    g: np.ndarray
    o: np.ndarray
    c: np.ndarray
    h: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        """The array named `name`, one of i, f, g, o, c, h."""
        if name not in ("i", "f", "g", "o", "c", "h"):
            raise KeyError(name)
        return getattr(self, name)


@dataclass(frozen=True)
class Trace:
    """What a model computed reading a text, character by character.

    Attributes:
        chars: the T characters fed (after NFC), one string each.
        ids: (T,) int32, their ids.
        layers: one LayerTrace per LSTM layer, bottom first.
        probs: (T, V) float32; probs[t] = p(next character | chars[: t + 1]).
        vocab: the V characters in id order.
    """

    chars: list[str]
    ids: np.ndarray
    layers: list[LayerTrace]
    probs: np.ndarray
    vocab: list[str]

    @property
    def text(self) -> str:
        return "".join(self.chars)

    def surprisal_bits(self) -> np.ndarray:
        """(T - 1,): -log2 p(chars[t + 1] | chars[: t + 1]), the cost of each next character."""
        p = self.probs[np.arange(len(self.ids) - 1), self.ids[1:]]
        return -np.log2(np.maximum(p, np.finfo(np.float32).tiny))

    def top_next(self, t: int, k: int = 5) -> list[tuple[str, float]]:
        """The k likeliest characters after chars[: t + 1], with their probabilities."""
        best = np.argsort(self.probs[t])[::-1][:k]
        return [(self.vocab[j], float(self.probs[t, j])) for j in best]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + e^-z), without overflow warnings


def _numpy(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def trace(model, tokenizer: CharTokenizer, text: str, states=None) -> Trace:
    """Run `text` through a CharLSTM, keeping every gate and state of every layer.

    For each layer, in NumPy with the layer's own weights (LSTMCell's equations):

        zx  = x @ kernel + bias                        # (T, 4H), all steps at once
        z_t = zx_t + h_{t-1} @ recurrent_kernel        # (4H,), one step at a time
        i, f, g, o, c_t, h_t as in LSTMCell

    then probs = softmax(h_top @ head.kernel + head.bias). Dropout is off, as in `model(ids)`.

    Args:
        model: a CharLSTM (anything with `embedding`, `rnns[l].cell` of LSTMCell layout, `head`).
        tokenizer: the run's tokenizer.
        text: T >= 1 characters (after NFC).
        states: None (zeros) or N [h (1, H) or (H,), c (same)], e.g. from `model.step`.

    Returns:
        a Trace of T characters.
    """
    ids = tokenizer.encode(text)
    if len(ids) == 0:
        raise ValueError("trace needs at least one character")
    x = _numpy(model.embedding.embeddings)[ids]  # (T, E)
    layers = []
    for n, rnn in enumerate(model.rnns):
        cell = rnn.cell
        kernel, recurrent, bias = (
            _numpy(w) for w in (cell.kernel, cell.recurrent_kernel, cell.bias)
        )
        H = recurrent.shape[0]
        if kernel.shape[1] != 4 * H:
            raise TypeError(f"layer {n} is not an LSTM layer (kernel {kernel.shape}, H {H})")
        if states is None:
            h, c = np.zeros(H, np.float32), np.zeros(H, np.float32)
        else:
            h, c = (_numpy(s).reshape(H) for s in states[n])
        zx = x @ kernel + bias  # the input part needs no recurrence: one matmul for all steps
        out = {name: np.empty((len(ids), H), np.float32) for name in ("i", "f", "g", "o", "c", "h")}
        for t in range(len(ids)):
            z_i, z_f, z_g, z_o = np.split(zx[t] + h @ recurrent, 4)
            i, f, g, o = _sigmoid(z_i), _sigmoid(z_f), np.tanh(z_g), _sigmoid(z_o)
            c = f * c + i * g
            h = o * np.tanh(c)
            for name, value in zip("ifgoch", (i, f, g, o, c, h)):
                out[name][t] = value
        layers.append(LayerTrace(**out))
        x = out["h"]
    logits = x @ _numpy(model.head.kernel) + _numpy(model.head.bias)  # (T, V)
    logits -= logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=-1, keepdims=True)
    return Trace(
        chars=[tokenizer.chars[j] for j in ids],
        ids=ids,
        layers=layers,
        probs=probs.astype(np.float32),
        vocab=tokenizer.chars,
    )


def text_features(text: str) -> dict[str, np.ndarray]:
    """Per-character quantities of `text` that an interpretable cell might track.

    Each is (T,) float32, its value after reading character t:
        in_quotes: 1 inside a '...' or "..." string on one line (the quote marks included).
        bracket_depth: how many (, [, { are open.
        column: the position in the line (0 at the first character after a newline).
        indentation: the number of leading spaces of the current line.
        line_start: 1 on a newline character (the line is about to start).
    """
    T = len(text)
    feats = {
        name: np.zeros(T, np.float32)
        for name in ("in_quotes", "bracket_depth", "column", "indentation", "line_start")
    }
    quote, depth, column, indent, leading = None, 0, 0, 0, True
    for t, ch in enumerate(text):
        if ch == "\n":
            quote, column, indent, leading = None, 0, 0, True
            feats["line_start"][t] = 1.0
        else:
            column += 1
            if leading and ch == " ":
                indent += 1
            else:
                leading = False
            if quote is None and ch in "'\"":
                quote = ch
                feats["in_quotes"][t] = 1.0
            elif quote is not None:
                feats["in_quotes"][t] = 1.0
                if ch == quote:
                    quote = None
            elif ch in OPENERS:
                depth += 1
            elif ch in CLOSERS:
                depth = max(depth - 1, 0)
        feats["bracket_depth"][t] = depth
        feats["column"][t] = column
        feats["indentation"][t] = indent
    return feats


@dataclass(frozen=True)
class CellMatch:
    """A cell whose value follows a feature: Pearson correlation over the characters."""

    feature: str
    layer: int
    unit: int
    state: str  # "c" or "h"
    correlation: float


def find_cells(
    trace: Trace, features: dict[str, np.ndarray], state: str = "c", top: int = 1
) -> list[CellMatch]:
    """For each feature, the `top` cells of any layer whose `state` correlates with it most.

    corr(u) = Pearson correlation over t of state[t, u] and feature[t]; ranked by |corr|. A
    constant feature or cell has correlation 0.

    Args:
        features: name -> (T,) arrays, as `text_features` gives.
        state: "c" (cell state) or "h" (hidden state), or a gate name.
    """
    matches = []
    for name, feature in features.items():
        found = []
        for n, layer in enumerate(trace.layers):
            corr = _correlations(layer[state], np.asarray(feature, np.float64))
            found += [CellMatch(name, n, int(u), state, float(corr[u])) for u in range(len(corr))]
        found.sort(key=lambda m: -abs(m.correlation))
        matches += found[:top]
    return matches


def _correlations(values: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of values (T, H) with feature (T,): (H,)."""
    v = values.astype(np.float64) - values.mean(axis=0)
    f = feature - feature.mean()
    denom = np.sqrt((v**2).sum(axis=0) * (f**2).sum())
    return np.divide(v.T @ f, denom, out=np.zeros(v.shape[1]), where=denom > 0)


def gate_saturation(
    trace: Trace, layer: int, low: float = 0.1, high: float = 0.9
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """How often each unit's gates are nearly shut or open (Karpathy et al., 2015, fig. 3).

    Returns:
        gate name (i, f, o) -> (fraction of steps below `low` (H,), fraction above `high` (H,)).
    """
    lt = trace.layers[layer]
    return {name: ((lt[name] < low).mean(axis=0), (lt[name] > high).mean(axis=0)) for name in "ifo"}


def forget_half_life(trace: Trace, layer: int) -> np.ndarray:
    """Steps for which each cell keeps half its content, from its mean log forget gate: (H,).

    With no input (i = 0), c_{t+k} = (f_{t+1} ... f_{t+k}) c_t, so a cell whose forget gate
    averages log f per step keeps half of c after ln(1/2) / mean(log f) steps.
    """
    log_f = np.log(np.maximum(trace.layers[layer].f.astype(np.float64), 1e-12)).mean(axis=0)
    return np.log(0.5) / np.minimum(log_f, -1e-12)


def state_gradient_norms(model, ids, targets, states=None) -> dict[str, np.ndarray]:
    """How strongly the loss at the last step depends on each earlier state, by autodiff.

    The cells run one step at a time (`rnn.cell`, as `model.step` does) under a
    `tf.GradientTape`, and the loss L = sum over the batch of -ln p(targets | ids) at the last
    step is differentiated with respect to every layer's state at every step:

        norms[name][l, k] = mean over the batch of || dL / d name^l_{T-1-k} ||_2

    k steps back, for name h (and c for an LSTM). A tanh RNN's norms shrink or grow
    geometrically with k; an LSTM's c keeps them while its forget gates stay open.

    Args:
        model: a CharLSTM or CharRNN (embedding, rnns[l].cell, head, zero_states).
        ids: (B, T) int32.
        targets: (B,) int32, the character after ids[:, -1].
        states: None (zeros) or the model's states.

    Returns:
        {"h": (N, T)} for a CharRNN, {"h": (N, T), "c": (N, T)} for a CharLSTM; index k is
        k steps before the last.
    """
    import tensorflow as tf  # only this function needs autodiff; the rest of the module is NumPy

    ids = tf.constant(np.asarray(ids, np.int32))
    targets = tf.constant(np.asarray(targets, np.int32))
    B, T = ids.shape
    states = model.zero_states(B) if states is None else states
    names = "hc"[: len(states[0])]
    recorded = []  # recorded[t][l][j]: state j of layer l after step t
    with tf.GradientTape() as tape:
        x_all = model.embedding(ids)  # (B, T, E)
        for t in range(T):
            x, new_states = x_all[:, t], []
            for rnn, state in zip(model.rnns, states):
                x, state = rnn.cell(x, state)
                new_states.append(list(state))
            states = new_states
            recorded.append(states)
        logits = model.head(x)  # (B, V)
        loss = tf.reduce_sum(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
        )
    flat = [s for step in recorded for layer in step for s in layer]
    grads = tape.gradient(loss, flat, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    N, S = len(model.rnns), len(names)
    norms = np.linalg.norm(np.stack([g.numpy() for g in grads]), axis=-1).mean(axis=-1)
    norms = norms.reshape(T, N, S)[::-1]  # (k, l, j), k steps back
    return {name: np.ascontiguousarray(norms[:, :, j].T) for j, name in enumerate(names)}


def window_loss(model, windows, carry: bool = True, eval_step: Callable | None = None):
    """Loss over `windows` with each window's final state carried into the next, or not.

    carry=True is `evaluate_windows`: every character sees the whole text before it.
    carry=False starts every window from zeros, so character j of a window sees only the j
    characters before it in that window: the difference is what carrying state buys.

    Args:
        windows: a data.Windows, e.g. from `evaluate.eval_windows`.

    Returns:
        an evaluate.Loss (nats/char, bits/char).
    """
    from charlstm.evaluate import Loss, make_eval_step, walk

    eval_step = eval_step or make_eval_step(model)
    zeros = model.zero_states(windows.inputs.shape[0])

    def step(x, y, states):
        return eval_step(x, y, states if carry else zeros)

    total = sum(float(nll) for _, nll, _ in walk(windows, step, zeros))
    return Loss(nats=total / windows.num_chars, chars=windows.num_chars)
