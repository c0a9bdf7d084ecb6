"""An LSTM layer that runs a whole window through our LSTMCell's weights in one compiled loop.

`keras.layers.RNN(LSTMCell)` computes x_t @ kernel inside the recurrence, one small matmul per
step. The recurrence does not need it there: the inputs of all T steps are projected at once,

    XW = x @ kernel + bias                      # (B, T, 4H): one large matmul
    for t in 0..T-1:                             # tf.while_loop, compiled with the train step
        z_t = XW[:, t] + h_{t-1} @ recurrent_kernel
        h_t, c_t = lstm_update(z_t, c_{t-1})     # the cell's own gate equations

which is the same arithmetic in a faster order. The weights are the LSTMCell's (the layer holds
one, named "cell"), so variable paths, checkpoints and `CharLSTM.step` are shared with the
reference `RNN(LSTMCell)`, which the tests hold this layer to.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from charlstm.cell import LSTMCell, lstm_update


@keras.saving.register_keras_serializable(package="charlstm")
class FusedLSTM(keras.layers.Layer):
    """A whole-sequence LSTM over an LSTMCell's weights.

    Args:
        units: H.

    Call:
        inputs: (B, T, D); initial_state: [h (B, H), c (B, H)] or None for zeros.
        Returns (outputs (B, T, H), h_T (B, H), c_T (B, H)), like
        `keras.layers.RNN(cell, return_sequences=True, return_state=True)`.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.cell = LSTMCell(units, name="cell")

    def build(self, input_shape):
        self.cell.build((input_shape[0], input_shape[-1]))

    def call(self, inputs, initial_state=None, training=False):
        cell = self.cell
        batch = tf.shape(inputs)[0]
        if initial_state is None:
            zeros = tf.zeros((batch, self.units), inputs.dtype)
            initial_state = [zeros, zeros]
        h0, c0 = initial_state
        steps = inputs.shape[1]  # static: XLA needs a fixed trip count
        xw = tf.einsum("btd,dg->tbg", inputs, cell.kernel) + cell.bias  # (T, B, 4H)

        def body(t, h, c, hs):
            h, c = lstm_update(xw[t] + tf.matmul(h, cell.recurrent_kernel), c)
            return t + 1, h, c, hs.write(t, h)

        hs = tf.TensorArray(inputs.dtype, size=steps)
        _, h, c, hs = tf.while_loop(
            lambda t, *_: t < steps, body, (0, h0, c0, hs), maximum_iterations=steps
        )
        return tf.transpose(hs.stack(), [1, 0, 2]), h, c

    def get_config(self):
        return {**super().get_config(), "units": self.units}
