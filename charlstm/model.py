"""One model family: Embedding -> N x recurrent layer -> Head, every layer's state in the open.

    CharModel      the family: embedding, stacked layers of one cell type, dropout, head,
                   states, config; its `call` runs each layer as `keras.layers.RNN(cell)`
    CharLSTM       the model charlstm trains: LSTMCell weights run by FusedLSTM layers
    RNNCharLSTM    the same weights under `keras.layers.RNN(LSTMCell)`: the reference the tests
                   hold CharLSTM to
    LayerNormCharLSTM, RNNLayerNormCharLSTM
                   the same pair over LayerNormLSTMCell (ModelConfig.cell "layernorm")
    Ensemble       ModelConfig.members models of one of these, their next-character
                   probabilities averaged

A new cell is one `CharModel` subclass naming its `cell_type` (`explore.rnn.CharRNN` is one).
"""

from __future__ import annotations

import dataclasses
import math
import os

import keras
import tensorflow as tf

from charlstm import precision
from charlstm.cell import LayerNormLSTMCell, LSTMCell
from charlstm.config import ModelConfig
from charlstm.errors import CharlstmError
from charlstm.fused import FusedLayerNormLSTM, FusedLSTM

LayerState = list[tf.Tensor]  # one layer's state, each (B, H): [h, c] for an LSTM, [h] for an RNN
States = list[LayerState]  # one per layer, bottom first


@keras.saving.register_keras_serializable(package="charlstm")
class Head(keras.layers.Layer):
    """The output layer: logits = x @ kernel + bias, x (..., H) -> (..., V), kernel (H, V)
    Glorot-uniform, bias (V,) zeros: a Dense layer's weights under a Dense layer's names.

    With tied embeddings (Press & Wolf, 2017) it has no kernel: logits = x @ embeddings^T +
    bias, the input Embedding's (V, E) table passed in at each call, so it stays one variable.
    The product runs in `matmul_dtype` (`charlstm.precision`).
    """

    def __init__(self, vocab_size: int, tied: bool = False, matmul_dtype="float32", **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.tied, self.matmul_dtype = vocab_size, tied, matmul_dtype

    def build(self, input_shape):
        if not self.tied:
            self.kernel = self.add_weight(
                shape=(input_shape[-1], self.vocab_size),
                initializer="glorot_uniform",
                name="kernel",
            )
        self.bias = self.add_weight(shape=(self.vocab_size,), initializer="zeros", name="bias")

    def call(self, x, embeddings=None):
        kernel = tf.transpose(embeddings) if self.tied else self.kernel
        return precision.matmul(x, kernel, self.matmul_dtype) + self.bias

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "tied": self.tied,
            "matmul_dtype": self.matmul_dtype,
        }


class CharModel(keras.Model):
    """Next-character logits from ids, with every layer's state passed in and returned.

        e      = Embedding(ids)                          # (B, T, E)
        x_1    = layer_1(e, state_1)                     # (B, T, H)
        x_l+1  = layer_l+1(drop(x_l), state_l+1)         # dropout between layers, training only,
                                                         # one mask per step or per window
        logits = Head(V)(drop(x_N))                      # (B, T, V); with tied embeddings
                                                         # drop(x_N) @ Embedding^T + bias

    Each layer runs one cell of `cell_type` (its equations are in its docstring). The states
    leave as plain values, so a caller carries them from one TBPTT window into the next (no
    gradient crosses the edge: that is the truncation) or from one sampled character to the
    next. Variable paths are `<model>/<layer_prefix>_<l>/cell/<weight>`.

    Args:
        config: the ModelConfig; vocab_size must be set.
        matmul_dtype: "float32" or "bfloat16", the dtype of the large matrix products (input
            projections, head, recurrent-kernel gradient) of the fused layers and the head
            (`charlstm.precision`).
        kernel: "xla" or "compiled": how the fused LSTM layers run their loops
            (`charlstm.kernel`; the other models have XLA loops only).

    Call:
        ids: (B, T) int32.
        states: None (zeros) or a list of N layer states, each a list of (B, H) tensors.
        training: enables dropout.
        Returns (logits (B, T, V) float32, states as above).
    """

    cell_type: type[keras.layers.Layer]
    layer_prefix: str
    time_axis = 1  # of the (B, T, H) activations between layers

    def __init__(
        self, config: ModelConfig, matmul_dtype: str = "float32", kernel: str = "xla", **kwargs
    ):
        super().__init__(**kwargs)
        if config.vocab_size < 1:
            raise ValueError("ModelConfig.vocab_size must be set before building the model")
        self.config = config
        self.matmul_dtype, self.kernel = matmul_dtype, kernel
        # N(0, 1), as PyTorch's nn.Embedding: Keras' uniform +-0.05 starts every character's
        # input projection near zero, and the model then learns far less per step (validation
        # loss on Tiny Shakespeare after 400 steps of the default model: 1.68 against 1.90)
        self.embedding = keras.layers.Embedding(
            config.vocab_size,
            config.embedding_dim,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="embedding",
        )
        self.rnns = [self.make_layer(f"{self.layer_prefix}_{i}") for i in range(config.num_layers)]
        # "window": one mask for all T steps (Gal & Ghahramani, 2016), drawn along the other axes
        noise_shape = None
        if config.dropout_mask == "window":
            noise_shape = tuple(1 if axis == self.time_axis else None for axis in range(3))
        self.dropouts = [
            keras.layers.Dropout(config.dropout, noise_shape=noise_shape, name=f"dropout_{i}")
            for i in range(config.num_layers)
        ]
        self.head = Head(config.vocab_size, config.tie_embeddings, matmul_dtype, name="head")

    def logits(self, x):
        """The head: (..., H) -> (..., V), x @ kernel + bias, or with tied embeddings
        x @ embeddings^T + bias."""
        return self.head(x, self.embedding.embeddings if self.config.tie_embeddings else None)

    def make_cell(self) -> keras.layers.Layer:
        """One layer's cell, named "cell"."""
        return self.cell_type(self.config.units, name="cell")

    def make_layer(self, name: str) -> keras.layers.Layer:
        """One whole-sequence layer over a cell: (B, T, D), state -> (B, T, H), *state."""
        return keras.layers.RNN(
            self.make_cell(), return_sequences=True, return_state=True, name=name
        )

    def build(self, input_shape):
        self.embedding.build(input_shape)
        dim = self.config.embedding_dim
        for rnn in self.rnns:
            rnn.build((None, None, dim))
            dim = self.config.units
        self.head.build((None, None, dim))

    def call(self, ids, states: States | None = None, training: bool = False):
        x = self.embedding(ids)
        new_states = []
        layer_states: list = list(states) if states else [None] * len(self.rnns)
        for rnn, dropout, state in zip(self.rnns, self.dropouts, layer_states):
            x, *state = rnn(x, initial_state=state, training=training)
            new_states.append(state)
            x = dropout(x, training=training)
        return self.logits(x), new_states

    def member_logits(self, ids, states: States | None = None, training: bool = False):
        """([logits (B, T, V)], states): `call`'s, a single model being its own one member
        (`Ensemble.member_logits` has one logits per member)."""
        logits, states = self(ids, states, training=training)
        return [logits], states

    def step(self, ids, states: States):
        """One character for every stream, straight through the cells (no loop of one step).

        ids: (B,) int32; states: N layer states. Returns (logits (B, V), states). The same
        cells and weights as `call`, so `call` on T steps equals T calls of `step`.
        """
        x = self.embedding(ids)
        new_states = []
        for rnn, state in zip(self.rnns, states):
            x, state = rnn.cell(x, state)
            new_states.append(state)
        return self.logits(x), new_states

    def compute_output_spec(self, ids, states=None, training=False):
        """What `call` returns for a symbolic `ids` (B, T): logits (B, T, V) and each layer's
        states, (B, H) each. Lets the model sit in a functional Keras model (`fit` in
        docs/training.md)."""
        batch, steps = ids.shape[0], ids.shape[1]
        logits = keras.KerasTensor((batch, steps, self.config.vocab_size), dtype="float32")
        layers = [
            [keras.KerasTensor((batch, size), dtype="float32") for size in rnn.cell.state_size]
            for rnn in self.rnns
        ]
        return logits, layers

    def zero_states(self, batch_size: int) -> States:
        """Every layer's state at the start of a text: zeros (B, H) for each of the cell's."""
        return [
            [keras.ops.zeros((batch_size, size)) for size in rnn.cell.state_size]
            for rnn in self.rnns
        ]

    def get_config(self):
        return {
            **super().get_config(),
            "config": dataclasses.asdict(self.config),
            "matmul_dtype": self.matmul_dtype,
            "kernel": self.kernel,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(ModelConfig(**config.pop("config")), **config)


@keras.saving.register_keras_serializable(package="charlstm")
class CharLSTM(CharModel):
    """The LSTM model, each layer a FusedLSTM over an LSTMCell's weights.

    Time-major (T, B, .) from the first projection to the logits: the first layer's input
    projection is looked up from the (V, 4H) table Embedding @ kernel (`FusedLSTM.project_ids`),
    every layer's recurrence is one compiled loop (`FusedLSTM.recur`). Same weights and variable
    paths as RNNCharLSTM, and the same results.
    """

    cell_type = LSTMCell
    layer_prefix = "lstm"
    time_axis = 0  # time-major: (T, B, H)

    def make_layer(self, name: str) -> FusedLSTM:
        config = self.config
        return FusedLSTM(config.units, config.recurrent_dropout, config.weight_drop,
                         self.matmul_dtype, self.kernel, name=name)  # fmt: skip

    def call(self, ids, states: States | None = None, training: bool = False):
        x, new_states = None, []
        layer_states: list = list(states) if states else [None] * len(self.rnns)
        for rnn, dropout, state in zip(self.rnns, self.dropouts, layer_states):
            xw = rnn.project_ids(ids, self.embedding.embeddings) if x is None else rnn.project(x)
            x, h, c = rnn.recur(xw, state, training=training)  # (T, B, H)
            new_states.append([h, c])
            x = dropout(x, training=training)
        return tf.transpose(self.logits(x), [1, 0, 2]), new_states


@keras.saving.register_keras_serializable(package="charlstm")
class RNNCharLSTM(CharModel):
    """CharLSTM's reference: each layer `keras.layers.RNN(LSTMCell)`, one cell call per step."""

    cell_type = LSTMCell
    layer_prefix = "lstm"


@keras.saving.register_keras_serializable(package="charlstm")
class LayerNormCharLSTM(CharLSTM):
    """CharLSTM over layer-normalized cells: each layer a FusedLayerNormLSTM over a
    LayerNormLSTMCell's weights, run by CharLSTM's time-major call. Same variable paths as
    RNNLayerNormCharLSTM, and the same results."""

    cell_type = LayerNormLSTMCell

    def make_layer(self, name: str) -> FusedLayerNormLSTM:
        return FusedLayerNormLSTM(self.config.units, name=name)


@keras.saving.register_keras_serializable(package="charlstm")
class RNNLayerNormCharLSTM(CharModel):
    """LayerNormCharLSTM's reference: each layer `keras.layers.RNN(LayerNormLSTMCell)`."""

    cell_type = LayerNormLSTMCell
    layer_prefix = "lstm"


# ModelConfig.cell -> (the model trained, its reference)
MODELS: dict[str, tuple[type[CharModel], type[CharModel]]] = {
    "lstm": (CharLSTM, RNNCharLSTM),
    "layernorm": (LayerNormCharLSTM, RNNLayerNormCharLSTM),
}


def mixture(logits: list) -> tf.Tensor:
    """ln of the mean of the members' next-character distributions, (..., V) float32: over
    the M members' logits, ln p = logsumexp_m(log_softmax(logits_m)) - ln M."""
    log_probs = tf.stack([tf.nn.log_softmax(one) for one in logits])  # (M, ..., V)
    return tf.reduce_logsumexp(log_probs, axis=0) - math.log(len(logits))


@keras.saving.register_keras_serializable(package="charlstm")
class Ensemble(keras.Model):
    """M = config.members models of one config side by side, their next-character probabilities
    averaged (an ensemble):

        p(y | x) = 1/M sum_m softmax(logits_m)          # logits_m (B, T, V): member m's
        returned = ln p(y | x) = mixture(logits_1..M)   # (B, T, V)

    The returned log-probabilities serve as logits (softmax(ln p) = p), so the loss, greedy and
    sampled text (temperature tau draws from p^(1/tau)) and evaluation take them as a single
    model's. Training gives each member its own loss (`member_logits`, `steps.mean_nll`), not
    the mixture's: members that learn apart err apart, and their average beats each of them.

    Members are built as `build_model` builds a single model (CharLSTM, or with fused=False its
    reference), named member_0 .. member_{M-1}: variable paths `<model>/member_<m>/...`, each
    member's paths under it as a single model's. States: member 0's N layer states, then
    member 1's, ...: M x N layer states in all.
    """

    def __init__(self, config: ModelConfig, matmul_dtype: str = "float32", kernel: str = "xla",
                 fused: bool = True, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.config = config
        self.matmul_dtype, self.kernel, self.fused = matmul_dtype, kernel, fused
        one = dataclasses.replace(config, members=1)
        member_type = MODELS[config.cell][0 if fused else 1]
        self.members = [
            member_type(one, matmul_dtype=matmul_dtype, kernel=kernel, name=f"member_{m}")
            for m in range(config.members)
        ]

    def build(self, input_shape):
        for member in self.members:
            member.build(input_shape)

    def split(self, states: States | None) -> list:
        """The members' states: M lists of N layer states (None: M x None, zeros)."""
        if not states:
            return [None] * len(self.members)
        n = self.config.num_layers
        return [list(states[m * n : (m + 1) * n]) for m in range(len(self.members))]

    def _each(self, run, states: States | None):
        """`run(member, its states) -> (logits, states)` for every member: ([logits_m], the
        members' states after, one list)."""
        logits, after = [], []
        for member, state in zip(self.members, self.split(states)):
            one, state = run(member, state)
            logits.append(one)
            after += state
        return logits, after

    def member_logits(self, ids, states: States | None = None, training: bool = False):
        """([logits_m (B, T, V) for each member], the members' states after, one list)."""
        return self._each(lambda member, state: member(ids, state, training=training), states)

    def call(self, ids, states: States | None = None, training: bool = False):
        logits, states = self.member_logits(ids, states, training)
        return mixture(logits), states

    def step(self, ids, states: States):
        """One character for every stream: (ids (B,), states) -> (ln p (B, V), states)."""
        logits, states = self._each(lambda member, state: member.step(ids, state), states)
        return mixture(logits), states

    def compute_output_spec(self, ids, states=None, training=False):
        specs = [member.compute_output_spec(ids) for member in self.members]
        return specs[0][0], [layer for _, layers in specs for layer in layers]

    def zero_states(self, batch_size: int) -> States:
        """Every member's zero states, member 0's first."""
        return [layer for member in self.members for layer in member.zero_states(batch_size)]

    def get_config(self):
        return {
            **super().get_config(),
            "config": dataclasses.asdict(self.config),
            "matmul_dtype": self.matmul_dtype,
            "kernel": self.kernel,
            "fused": self.fused,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(ModelConfig(**config.pop("config")), **config)


def built(model: CharModel) -> CharModel:
    """`model` with its weights created (called once on a (1, 1) input)."""
    model(keras.ops.zeros((1, 1), dtype="int32"))
    return model


def build_model(
    config: ModelConfig, fused: bool = True, matmul_dtype: str = "float32", kernel: str = "xla"
) -> CharModel | Ensemble:
    """A built model of config.cell's (`MODELS`): CharLSTM or LayerNormCharLSTM, or with
    fused=False its reference RNNCharLSTM or RNNLayerNormCharLSTM (same variable paths), its
    matrix products in `matmul_dtype` ("float32" or "bfloat16": `charlstm.precision`; the
    references' cells stay float32; the layer-norm cell's model is float32 only), CharLSTM's
    loops as `kernel` says ("xla" or "compiled": `charlstm.kernel`). With config.members > 1,
    an Ensemble of such models."""
    if config.cell != "lstm" and matmul_dtype != "float32":
        raise ValueError(f"the {config.cell} cell runs in float32 only")
    if kernel == "compiled" and (config.cell != "lstm" or not fused):
        raise ValueError("the compiled kernel runs the fused lstm cell's loops only")
    if config.members > 1:
        return built(Ensemble(config, matmul_dtype, kernel, fused, name="char_lstm"))
    fast, reference = MODELS[config.cell]
    model = (fast if fused else reference)(
        config, matmul_dtype=matmul_dtype, kernel=kernel, name="char_lstm"
    )
    return built(model)


def weight_shapes(config: ModelConfig, name: str = "char_lstm") -> dict[str, tuple[int, ...]]:
    """The model's weights, variable path -> shape, from its config alone.

    What `build_model(config)` creates (a test holds the two together), known before anything
    is allocated: a run's files are checked against it, and its size against the memory.
    """
    if config.members > 1:  # each member's under its own name (Ensemble)
        one = dataclasses.replace(config, members=1)
        return {path: shape for m in range(config.members)
                for path, shape in weight_shapes(one, f"{name}/member_{m}").items()}  # fmt: skip
    V, E, H = config.vocab_size, config.embedding_dim, config.units
    shapes: dict[str, tuple[int, ...]] = {f"{name}/embedding/embeddings": (V, E)}
    inputs = E
    for i in range(config.num_layers):
        cell = f"{name}/{CharLSTM.layer_prefix}_{i}/cell"
        shapes |= {
            f"{cell}/kernel": (inputs, 4 * H),
            f"{cell}/recurrent_kernel": (H, 4 * H),
            f"{cell}/bias": (4 * H,),
        }
        if config.cell == "layernorm":  # LayerNormLSTMCell's gains and shifts
            for part, size in (("input", 4 * H), ("recurrent", 4 * H), ("cell", H)):
                shapes |= {f"{cell}/{part}_gamma": (size,), f"{cell}/{part}_beta": (size,)}
        inputs = H
    if not config.tie_embeddings:  # tied: the head's weights are the embedding's
        shapes[f"{name}/head/kernel"] = (H, V)
    return shapes | {f"{name}/head/bias": (V,)}


def memory_estimate(config: ModelConfig, batch_size: int = 1, seq_len: int = 1,
                    training: bool = False) -> int:  # fmt: skip
    """Bytes of float32 memory a model needs, roughly: its P weights (training: x4, with their
    gradients and Adam's two moments) and one (B, T) window's activations (training: what the
    backward pass keeps per layer, h and c (T, B, H) and the gates, projected inputs and their
    gradients (T, B, 4H), and the logits with their gradient (T, B, V); else one step's), for
    each of an ensemble's members.
    """
    weights = sum(math.prod(shape) for shape in weight_shapes(config).values())
    H, V, N = config.units, config.vocab_size, config.num_layers * config.members
    if training:
        return 4 * (4 * weights + batch_size * seq_len * (N * 14 * H + 2 * V))
    return 4 * (weights + batch_size * (N * 6 * H + 2 * V))


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(config: ModelConfig, batch_size: int = 1, seq_len: int = 1,
               training: bool = False) -> None:  # fmt: skip
    """Refuse a model that cannot fit in memory, before anything is allocated.

    Raises:
        CharlstmError: the estimate (`memory_estimate`) exceeds the memory available.
    """
    needed, free = memory_estimate(config, batch_size, seq_len, training), available_memory()
    if free is not None and needed > free:
        what = f"training with batch {batch_size} x seq_len {seq_len}" if training else "it"
        raise CharlstmError(
            f"a model of {config.num_layers} x {config.units} units (embedding "
            f"{config.embedding_dim}, vocabulary {config.vocab_size}) and {what} need about "
            f"{needed / 2**30:,.1f} GiB of memory, more than the {free / 2**30:,.1f} GiB "
            "available; choose smaller --units, --num-layers, --batch-size or --seq-len"
        )
