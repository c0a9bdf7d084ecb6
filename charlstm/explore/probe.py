"""Look inside a trained model: gates, cell and hidden states per character, and gradients.

    trace(model, tokenizer, text)    every layer's i, f, g, o, c, h at every character, from the
                                     model's own weights through the forward loop it trains
                                     with (`fused.lstm_forward`), and p(next char) from the head
    text_features(text)              per-character quantities a cell might track (quotes,
                                     bracket depth, column, indentation)
    find_cells(trace, features)      the cells whose value follows each feature best
    gate_saturation(trace, layer)    how often each gate is nearly shut (< 0.1) or open (> 0.9)
    forget_half_life(trace, layer)   how many steps a cell keeps half of what it holds
    state_gradient_norms(...)        ||d loss / d state|| k steps back, by autodiff of `model.step`

The gate equations are in `charlstm.cell`. The tests hold `trace` to the model itself
(`model(ids)`, its layers and `model.step`) and to a NumPy loop of the equations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from charlstm.cell import LSTMCell
from charlstm.fused import lstm_forward, project
from charlstm.tokenizer import CharTokenizer

GATES = ("i", "f", "g", "o")  # the order of the blocks of kernel, recurrent_kernel and bias
OPENERS, CLOSERS = "([{", ")]}"


@dataclass(frozen=True)
class LayerTrace:
    """One LSTM layer run over T characters; every array is (T, H) float32.

    Row t holds the gates i, f, g, o and the states c, h after reading character t (the
    equations are LSTMCell's).
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


# traced once per text length: the loop runs as a graph, not op by op
_forward = tf.function(lstm_forward)


def trace(model, tokenizer: CharTokenizer, text: str, states=None) -> Trace:
    """Run `text` through an LSTM model, keeping every gate and state of every layer.

    Each layer's inputs are projected and run through `fused.lstm_forward`, the forward loop
    of training, with the layer's own LSTMCell weights; then
    probs = softmax(head(h_top)). Dropout is off, as in `model(ids)`. An Ensemble's members
    are traced one after another: its layers are member 0's N, then member 1's, ... (M x N),
    and probs the mean of the members' (what the ensemble predicts).

    Args:
        model: a CharLSTM or RNNCharLSTM (any CharModel whose cells are LSTMCells), or an
            Ensemble of them.
        tokenizer: the run's tokenizer.
        text: T >= 1 characters (after NFC).
        states: None (zeros) or N [h (1, H) or (H,), c (same)] (an Ensemble: M x N), e.g. from
            `model.step`.

    Returns:
        a Trace of T characters.
    """
    ids = tokenizer.encode(text)
    if len(ids) == 0:
        raise ValueError("trace needs at least one character")
    members = getattr(model, "members", [model])  # an Ensemble's, or the model alone
    parts = model.split(states) if len(members) > 1 else [states]
    layers, probs = [], []
    for member, member_states in zip(members, parts):
        member_layers, member_probs = _trace_one(member, ids, member_states)
        layers += member_layers
        probs.append(member_probs)
    return Trace(
        chars=[tokenizer.chars[j] for j in ids],
        ids=ids,
        layers=layers,
        probs=np.asarray(np.mean(probs, axis=0), np.float32),
        vocab=tokenizer.chars,
    )


def _trace_one(model, ids: np.ndarray, states) -> tuple[list[LayerTrace], np.ndarray]:
    """One CharModel's layers read over ids (T,), and its probs (T, V)."""
    x = tf.gather(model.embedding.embeddings, ids)[:, None]  # (T, 1, E): time-major, one stream
    layers = []
    for n, rnn in enumerate(model.rnns):
        cell = rnn.cell
        if not isinstance(cell, LSTMCell):
            raise TypeError(f"layer {n} is not an LSTM layer (its cell is {type(cell).__name__})")
        H = cell.units
        h, c = (
            (tf.zeros((1, H)), tf.zeros((1, H)))
            if states is None
            else (tf.reshape(s, (1, H)) for s in states[n])
        )
        hs, cs, gates = _forward(
            project(x, cell), h, c, tf.convert_to_tensor(cell.recurrent_kernel)
        )
        i, f, g, o = np.split(gates.numpy()[:, 0], 4, axis=-1)
        layers.append(LayerTrace(i=i, f=f, g=g, o=o, c=cs.numpy()[:, 0], h=hs.numpy()[:, 0]))
        x = hs
    probs = tf.nn.softmax(model.logits(x[:, 0]), axis=-1)  # (T, V)
    return layers, np.asarray(probs, np.float32)


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

    The model runs one character at a time (`model.step`) under a `tf.GradientTape`, and the
    loss L = sum over the batch of -ln p(targets | ids) at the last step is differentiated
    with respect to every layer's state at every step:

        norms[name][l, k] = mean over the batch of || dL / d name^l_{T-1-k} ||_2

    k steps back, for name h (and c for an LSTM). A tanh RNN's norms shrink or grow
    geometrically with k; an LSTM's c keeps them while its forget gates stay open.

    Args:
        model: a CharModel (CharLSTM, CharRNN, ...) or an Ensemble (N: its M x N layers).
        ids: (B, T) int32.
        targets: (B,) int32, the character after ids[:, -1].
        states: None (zeros) or the model's states.

    Returns:
        {"h": (N, T)} for a CharRNN, {"h": (N, T), "c": (N, T)} for a CharLSTM; index k is
        k steps before the last.
    """
    ids = tf.constant(np.asarray(ids, np.int32))
    targets = tf.constant(np.asarray(targets, np.int32))
    B, T = ids.shape
    states = model.zero_states(B) if states is None else states
    names = "hc"[: len(states[0])]
    recorded = []  # recorded[t][l][j]: state j of layer l after step t
    with tf.GradientTape() as tape:
        for t in range(T):
            logits, states = model.step(ids[:, t], states)
            recorded.append(states)
        loss = tf.reduce_sum(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
        )
    flat = [s for step in recorded for layer in step for s in layer]
    grads = tape.gradient(loss, flat, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    N, S = len(states), len(names)  # layers: an Ensemble's M x N
    norms = np.linalg.norm(np.stack([g.numpy() for g in grads]), axis=-1).mean(axis=-1)
    norms = norms.reshape(T, N, S)[::-1]  # (k, l, j), k steps back
    return {name: np.ascontiguousarray(norms[:, :, j].T) for j, name in enumerate(names)}
