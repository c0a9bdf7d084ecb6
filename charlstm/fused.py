"""An LSTM layer that runs a whole window through our LSTMCell's weights in one compiled loop.

`keras.layers.RNN(LSTMCell)` computes x_t @ kernel inside the recurrence, one small matmul per
step. The recurrence does not need it there: the inputs of all T steps are projected at once,

    XW = x @ kernel + bias                      # (B, T, 4H): one large matmul
    for t in 0..T-1:                             # tf.while_loop, compiled with the train step
        z_t = XW[:, t] + h_{t-1} @ recurrent_kernel
        h_t, c_t, _ = lstm_update(z_t, c_{t-1})  # the cell's own gate equations

which is the same arithmetic in a faster order. The backward pass is written out
(`tf.custom_gradient`) rather than left to autodiff of the loop, which would do two small
matmuls per step for the weight and input gradients. Here the reverse loop does only the
recurrent one, dh_{t-1} = dz_t @ recurrent_kernel^T, keeping every dz_t; afterwards

    d recurrent_kernel = H_prev^T @ dZ          # (H, T*B) @ (T*B, 4H): one large matmul
    d XW = dZ                                  # kernel, bias and input gradients follow by
                                               # autodiff of the projection: large matmuls

The weights are the LSTMCell's (the layer holds
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

    A stack of layers runs faster time-major, without a transpose per layer: `project`
    (or `project_ids` for the first layer) then `recur`, as CharLSTM does.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.cell = LSTMCell(units, name="cell")

    def build(self, input_shape):
        self.cell.build((input_shape[0], input_shape[-1]))

    def call(self, inputs, initial_state=None, training=False):
        xw = self.project(tf.transpose(inputs, [1, 0, 2]))
        hs, h, c = self.recur(xw, initial_state)
        return tf.transpose(hs, [1, 0, 2]), h, c

    def project(self, inputs):
        """Time-major inputs (T, B, D) -> x_t @ kernel + bias for every step, (T, B, 4H)."""
        return project(inputs, self.cell)

    def project_ids(self, ids, embeddings):
        """`project` of embedded ids without embedding them: Embedding(ids) @ kernel is a row
        of embeddings @ kernel, so one (V, E) @ (E, 4H) matmul and a gather replace a
        (T*B, E) @ (E, 4H) one, and backpropagation the same way.

        ids: (B, T) int32; embeddings: (V, E). Returns (T, B, 4H).
        """
        table = tf.matmul(embeddings, self.cell.kernel) + self.cell.bias  # (V, 4H)
        # transposed by einsum: TensorFlow's oneDNN transpose logs an error line for int32 on
        # some AVX-512 CPUs (then falls back); einsum stays clear of it
        return tf.gather(table, tf.einsum("bt->tb", ids))

    def recur(self, xw, initial_state=None):
        """The recurrence over projected inputs xw (T, B, 4H); initial_state [h, c] (B, H) or
        None for zeros. Returns time-major hs (T, B, H), h_T, c_T."""
        if initial_state is None:
            zeros = tf.zeros((tf.shape(xw)[1], self.units), xw.dtype)
            initial_state = [zeros, zeros]
        h0, c0 = initial_state
        return lstm_recurrence(xw, h0, c0, tf.convert_to_tensor(self.cell.recurrent_kernel))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def project(inputs, cell: LSTMCell):
    """Time-major inputs (T, B, D) -> x_t @ cell.kernel + cell.bias for every step, (T, B, 4H)."""
    return tf.einsum("tbd,dg->tbg", inputs, cell.kernel) + cell.bias


def lstm_forward(xw, h0, c0, recurrent_kernel):
    """The forward loop over T projected inputs, keeping what the backward pass needs.

    Args:
        xw: (T, B, 4H), x_t @ kernel + bias for every step.
        h0, c0: (B, H), the initial state.
        recurrent_kernel: (H, 4H).

    Returns:
        hs, cs (T, B, H): h_t and c_t after every step; gates (T, B, 4H): [i | f | g | o].
    """
    steps = xw.shape[0]  # static: XLA needs a fixed trip count

    def forward(t, h, c, hs, cs, gates):
        h, c, a = lstm_update(xw[t] + tf.matmul(h, recurrent_kernel), c)
        return t + 1, h, c, hs.write(t, h), cs.write(t, c), gates.write(t, a)

    arrays = [tf.TensorArray(xw.dtype, size=steps) for _ in range(3)]
    _, _, _, hs, cs, gates = tf.while_loop(
        lambda t, *_: t < steps, forward, (0, h0, c0, *arrays), maximum_iterations=steps
    )
    return hs.stack(), cs.stack(), gates.stack()


@tf.custom_gradient
def lstm_recurrence(xw, h0, c0, recurrent_kernel):
    """`lstm_forward` (same arguments) with the hand-written backward through time.

    Returns:
        hs (T, B, H), h_T (B, H), c_T (B, H), and the gradient function.
    """
    steps = xw.shape[0]
    U = recurrent_kernel
    hs, cs, gates = lstm_forward(xw, h0, c0, U)  # (T, B, H) x 2, (T, B, 4H)
    h, c = hs[-1], cs[-1]

    def backward(d_hs, d_h, d_c):
        # autodiff hands None for outputs the loss does not use, e.g. the final state
        d_hs = tf.zeros_like(hs) if d_hs is None else d_hs
        d_h = tf.zeros_like(h) if d_h is None else d_h
        d_c = tf.zeros_like(c) if d_c is None else d_c
        c_prev = tf.concat([c0[None], cs[:-1]], axis=0)  # (T, B, H)
        U_t = tf.transpose(U)

        def step_back(k, dh_next, dc_next, dzs):
            t = steps - 1 - k
            i, f, g, o = tf.split(gates[t], 4, axis=-1)
            tanh_c = tf.tanh(cs[t])
            dh = d_hs[t] + dh_next
            dc = dc_next + dh * o * (1 - tanh_c * tanh_c)
            dz = tf.concat(
                [
                    dc * g * i * (1 - i),  # dz_i
                    dc * c_prev[t] * f * (1 - f),  # dz_f
                    dc * i * (1 - g * g),  # dz_g
                    dh * tanh_c * o * (1 - o),  # dz_o
                ],
                axis=-1,
            )
            return k + 1, tf.matmul(dz, U_t), dc * f, dzs.write(t, dz)

        dzs = tf.TensorArray(xw.dtype, size=steps)
        _, dh0, dc0, dzs = tf.while_loop(
            lambda k, *_: k < steps, step_back, (0, d_h, d_c, dzs), maximum_iterations=steps
        )
        dz = dzs.stack()  # (T, B, 4H)
        h_prev = tf.concat([h0[None], hs[:-1]], axis=0)  # (T, B, H)
        d_U = tf.einsum("tbh,tbg->hg", h_prev, dz)
        return dz, dh0, dc0, d_U

    return (hs, h, c), backward
