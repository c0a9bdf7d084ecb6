"""The character model: Embedding -> N x RNN(LSTMCell) -> Dense, with its state in the open."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from charlstm.cell import LSTMCell
from charlstm.config import ModelConfig
from charlstm.fused import FusedLSTM

# states: one [h, c] pair per layer, each (B, H)
States = list


class CellStack(keras.Model):
    """Embedding -> layers each holding a `cell` -> Dense head, stepped one character at a time.

    Subclasses (CharLSTM here, rnn.CharRNN) build `embedding`, `rnns` and `head`.
    """

    def step(self, ids, states: States):
        """One character for every stream, straight through the cells (no RNN loop of one step).

        ids: (B,) int32; states: N [h, c]. Returns (logits (B, V), states). The same cells and
        weights as `call`, so `call` on T steps equals T calls of `step`.
        """
        x = self.embedding(ids)
        new_states = []
        for rnn, state in zip(self.rnns, states):
            x, state = rnn.cell(x, state)
            new_states.append(state)
        return self.head(x), new_states


@keras.saving.register_keras_serializable(package="charlstm")
class CharLSTM(CellStack):
    """Next-character logits from ids, with every layer's (h, c) passed in and returned.

        e      = Embedding(ids)                      # (B, T, E)
        x_1    = RNN(LSTMCell(H))(e, state_1)        # (B, T, H), repeated for N layers,
        x_l+1  = RNN(LSTMCell(H))(drop(x_l), state_l+1)   # dropout between layers
        logits = Dense(V)(drop(x_N))                 # (B, T, V)

    The states leave as plain values, so a caller carries them from one TBPTT window into the
    next (no gradient crosses the edge: that is the truncation) or from one sampled character
    to the next.

    Args:
        config: the ModelConfig; vocab_size must be set.
        fused: run each layer as FusedLSTM (inputs projected once, one compiled loop, the
            first layer's projection looked up from Embedding @ kernel, time-major throughout);
            False uses the reference `keras.layers.RNN(LSTMCell)`. Same weights, same paths.

    Call:
        ids: (B, T) int32.
        states: None (zeros) or a list of N [h (B, H), c (B, H)].
        training: enables dropout.
        Returns (logits (B, T, V) float32, states as above).
    """

    def __init__(self, config: ModelConfig, fused: bool = True, **kwargs):
        super().__init__(**kwargs)
        if config.vocab_size < 1:
            raise ValueError("ModelConfig.vocab_size must be set before building the model")
        self.config = config
        self.fused = fused
        self.embedding = keras.layers.Embedding(
            config.vocab_size, config.embedding_dim, name="embedding"
        )
        self.rnns = [
            FusedLSTM(config.units, name=f"lstm_{i}")
            if fused
            else keras.layers.RNN(
                LSTMCell(config.units, name="cell"),
                return_sequences=True,
                return_state=True,
                name=f"lstm_{i}",
            )
            for i in range(config.num_layers)
        ]
        self.dropouts = [
            keras.layers.Dropout(config.dropout, name=f"dropout_{i}")
            for i in range(config.num_layers)
        ]
        self.head = keras.layers.Dense(config.vocab_size, name="head")

    def build(self, input_shape):
        self.embedding.build(input_shape)
        dim = self.config.embedding_dim
        for rnn in self.rnns:
            rnn.build((None, None, dim))
            dim = self.config.units
        self.head.build((None, None, dim))

    def call(self, ids, states: States | None = None, training: bool = False):
        # fused: time-major (T, B, .) from the first projection to the logits, the first
        # layer's projection taken from a (V, 4H) table (FusedLSTM.project_ids)
        x = None if self.fused else self.embedding(ids)
        new_states = []
        for i, (rnn, dropout) in enumerate(zip(self.rnns, self.dropouts)):
            state = None if states is None else states[i]
            if not self.fused:
                x, h, c = rnn(x, initial_state=state, training=training)
            else:
                xw = rnn.project_ids(ids, self.embedding.embeddings) if i == 0 else rnn.project(x)
                x, h, c = rnn.recur(xw, state)
            new_states.append([h, c])
            if self.config.dropout > 0:
                x = dropout(x, training=training)
        logits = self.head(x)
        return (tf.transpose(logits, [1, 0, 2]) if self.fused else logits), new_states

    def zero_states(self, batch_size: int) -> States:
        """N pairs of zeros (B, H): the state at the start of a text."""
        H = self.config.units
        return [
            [keras.ops.zeros((batch_size, H)), keras.ops.zeros((batch_size, H))] for _ in self.rnns
        ]

    def get_config(self):
        return {
            **super().get_config(),
            "config": dataclasses.asdict(self.config),
            "fused": self.fused,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(ModelConfig(**config.pop("config")), **config)


def build_model(config: ModelConfig, fused: bool = True) -> CharLSTM:
    """A CharLSTM with its weights created (called once on a (1, 1) input)."""
    model = CharLSTM(config, fused=fused, name="char_lstm")
    model(keras.ops.zeros((1, 1), dtype="int32"))
    return model
