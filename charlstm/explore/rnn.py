"""A plain tanh RNN, written as our LSTMCell is, to show what the LSTM's gates buy.

    TanhRNNCell          h_t = tanh(x_t W + h_{t-1} U + b), for keras.layers.RNN
    CharRNN              the model family (`charlstm.model.CharModel`) over TanhRNNCell

Weight names and layout are those of `keras.layers.SimpleRNNCell` (kernel, recurrent_kernel,
bias), so Keras' cell is the oracle the tests hold ours to.
"""

from __future__ import annotations

import keras
from keras import ops

from charlstm.config import ModelConfig
from charlstm.model import CharModel, built


@keras.saving.register_keras_serializable(package="charlstm")
class TanhRNNCell(keras.layers.Layer):
    """One plain (Elman) RNN step, for use inside `keras.layers.RNN`. x_t: (B, D); h: (B, H).

        h_t = tanh(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)      # (B, H)

    Nothing gates the recurrence: dh_t / dh_{t-1} = diag(1 - h_t^2) recurrent_kernel^T, and a
    gradient k steps back is a product of k such Jacobians, so it shrinks or grows
    geometrically with k (Bengio et al., 1994; Pascanu et al., 2013). The LSTM's cell state
    instead carries dc_t / dc_{t-1} = diag(f_t), which stays near 1 while the forget gate is open.

    Weights: kernel (D, H), recurrent_kernel (H, H), bias (H,), named as in
    `keras.layers.SimpleRNNCell`; kernel starts Glorot-uniform, recurrent_kernel orthogonal,
    bias at 0.

    Args:
        units: H, the size of h.
        kernel_initializer, recurrent_initializer: Keras initializers (names or objects); an
            orthogonal recurrent_kernel with gain > 1 makes gradients explode, < 1 vanish.

    Call:
        inputs: (B, D); states: [h (B, H)].
        Returns h_t (B, H) and the new states [h_t].
    """

    def __init__(
        self,
        units: int,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.state_size = [units]
        self.output_size = units

    def build(self, input_shape):
        input_dim = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(input_dim, self.units), initializer=self.kernel_initializer, name="kernel"
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units),
            initializer=self.recurrent_initializer,
            name="recurrent_kernel",
        )
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, inputs, states, training=False):
        (h_prev,) = states
        h = ops.tanh(
            ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel) + self.bias
        )
        return h, [h]

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
        }


@keras.saving.register_keras_serializable(package="charlstm")
class CharRNN(CharModel):
    """The model family with TanhRNNCell layers (`keras.layers.RNN`), for side-by-side
    experiments: a CharRNN and a CharLSTM of one ModelConfig differ only in their cells.

    Args:
        config: the ModelConfig; vocab_size must be set.
        recurrent_initializer: passed to every TanhRNNCell.

    Call: as CharModel, with each layer's state [h (B, H)].
    """

    cell_type = TanhRNNCell
    layer_prefix = "rnn"

    def __init__(self, config: ModelConfig, recurrent_initializer="orthogonal", **kwargs):
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        super().__init__(config, **kwargs)

    def make_cell(self) -> TanhRNNCell:
        return TanhRNNCell(
            self.config.units, recurrent_initializer=self.recurrent_initializer, name="cell"
        )

    def get_config(self):
        return {
            **super().get_config(),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
        }


def build_rnn_model(config: ModelConfig, recurrent_initializer="orthogonal") -> CharRNN:
    """A built CharRNN."""
    return built(CharRNN(config, recurrent_initializer=recurrent_initializer, name="char_rnn"))
