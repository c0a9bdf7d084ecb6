"""LSTMCell from the gate equations, laid out as keras.layers.LSTMCell so weights copy both ways."""

from __future__ import annotations

import keras
from keras import ops


def lstm_update(z, c_prev):
    """LSTMCell's gate equations after the matmuls (see its docstring): z (B, 4H) =
    [z_i | z_f | z_g | z_o], c_prev (B, H).

    All four activations come from one tanh over (B, 4H), sigmoid(x) = tanh(x / 2) / 2 + 1 / 2
    (an identity, not an approximation): one elementwise pass where four would run.
    Returns (h_t, c_t, a) with h_t, c_t (B, H) and a = [i | f | g | o] (B, 4H). LSTMCell and
    the fused layer both step through this one function, so there is one formula; the fused
    layer keeps a for its backward pass.
    """
    H = c_prev.shape[-1]
    # per column: 1/2 for the sigmoid gates i, f, o; 1 for the candidate g
    half = ops.full((H,), 0.5, z.dtype)
    scale = ops.concatenate([half, half, ops.ones((H,), z.dtype), half])  # (4H,)
    a = ops.tanh(z * scale) * scale + (1 - scale)  # (B, 4H)
    i, f, g, o = ops.split(a, 4, axis=-1)
    c = f * c_prev + i * g
    h = o * ops.tanh(c)
    return h, c, a


@keras.saving.register_keras_serializable(package="charlstm")
class LSTMCell(keras.layers.Layer):
    """One LSTM step, for use inside `keras.layers.RNN`. x_t: (B, D); h, c: (B, H).

        z   = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias     # (B, 4H): [i | f | g | o]
        i = sigmoid(z_i)    input gate                              # (B, H) each
        f = sigmoid(z_f)    forget gate
        g = tanh(z_g)       candidate cell value
        o = sigmoid(z_o)    output gate
        c_t = f * c_{t-1} + i * g                                   # (B, H)
        h_t = o * tanh(c_t)                                         # (B, H)

    Weights: kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H,), gate blocks in the order
    i, f, g (Keras calls it c), o, the same names and layout as `keras.layers.LSTMCell`. The
    forget block of the bias starts at 1 (Jozefowicz et al., 2015), the rest at 0; kernel starts
    Glorot-uniform and recurrent_kernel orthogonal, as in Keras.

    Args:
        units: H, the size of h and c.
        kernel_initializer, recurrent_initializer: Keras initializers (names or objects).
        unit_forget_bias: start the forget-gate bias at 1 rather than 0.

    Call:
        inputs: (B, D); states: [h (B, H), c (B, H)].
        Returns h_t (B, H) and the new states [h_t, c_t].
    """

    def __init__(
        self,
        units: int,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        unit_forget_bias: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.unit_forget_bias = unit_forget_bias
        self.state_size = [units, units]  # [h, c], the order call() returns
        self.output_size = units

    def build(self, input_shape):
        input_dim = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(input_dim, 4 * self.units), initializer=self.kernel_initializer, name="kernel"
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, 4 * self.units),
            initializer=self.recurrent_initializer,
            name="recurrent_kernel",
        )
        self.bias = self.add_weight(
            shape=(4 * self.units,), initializer=self._bias_init, name="bias"
        )

    def _bias_init(self, shape, dtype=None):
        forget = 1.0 if self.unit_forget_bias else 0.0
        H = self.units
        return ops.concatenate(
            [ops.zeros((H,), dtype), ops.full((H,), forget, dtype), ops.zeros((2 * H,), dtype)]
        )

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states
        # one matmul pair for all four gates: four small ones are slower
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel) + self.bias
        h, c, _ = lstm_update(z, c_prev)
        return h, [h, c]

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
            "unit_forget_bias": self.unit_forget_bias,
        }
