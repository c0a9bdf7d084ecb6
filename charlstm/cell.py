"""LSTM cells from their gate equations.

    LSTMCell             the LSTM step
    LayerNormLSTMCell    the layer-normalized LSTM step (Ba, Kiros & Hinton, 2016)

Both lay out kernel, recurrent_kernel and bias as keras.layers.LSTMCell, so weights copy both ways.
"""

from __future__ import annotations

import keras
from keras import ops


def lstm_update(z, c_prev, norm_c=None):
    """LSTMCell's gate equations after the matmuls (see its docstring): z (B, 4H) =
    [z_i | z_f | z_g | z_o], c_prev (B, H).

    All four activations come from one tanh over (B, 4H), sigmoid(x) = tanh(x / 2) / 2 + 1 / 2
    (an identity, not an approximation): one elementwise pass where four would run.
    norm_c: None for h_t = o * tanh(c_t); else a function of c_t (B, H), giving
    h_t = o * tanh(norm_c(c_t)), as LayerNormLSTMCell's LN(c_t).
    Returns (h_t, c_t, a) with h_t, c_t (B, H) and a = [i | f | g | o] (B, 4H). Both cells and
    the fused layers step through this one function, so there is one formula; the fused
    LSTM layer keeps a for its backward pass.
    """
    H = c_prev.shape[-1]
    # per column: 1/2 for the sigmoid gates i, f, o; 1 for the candidate g
    half = ops.full((H,), 0.5, z.dtype)
    scale = ops.concatenate([half, half, ops.ones((H,), z.dtype), half])  # (4H,)
    a = ops.tanh(z * scale) * scale + (1 - scale)  # (B, 4H)
    i, f, g, o = ops.split(a, 4, axis=-1)
    c = f * c_prev + i * g
    h = o * ops.tanh(c if norm_c is None else norm_c(c))
    return h, c, a


LAYER_NORM_EPSILON = 1e-5  # as PyTorch's nn.LayerNorm; keras.layers.LayerNormalization's is 1e-3


def layer_norm(v, gamma, beta):
    """LN(v; gamma, beta) = gamma * (v - mean(v)) / sqrt(var(v) + eps) + beta over the last axis,
    eps = LAYER_NORM_EPSILON = 1e-5 (Ba, Kiros & Hinton, 2016). v: (..., F); gamma, beta: (F,).
    Returns (..., F)."""
    centred = v - ops.mean(v, axis=-1, keepdims=True)
    variance = ops.mean(centred * centred, axis=-1, keepdims=True)
    return gamma * centred * ops.rsqrt(variance + LAYER_NORM_EPSILON) + beta


def layernorm_lstm_update(
    xw, h_prev, c_prev, recurrent_kernel, recurrent_gamma, recurrent_beta, cell_gamma, cell_beta
):
    """LayerNormLSTMCell's step after its input projection (see its docstring).

    Args:
        xw: (B, 4H), LN(x_t @ kernel; input_gamma, input_beta) + bias (`LayerNormLSTMCell.project`).
        h_prev, c_prev: (B, H).
        recurrent_kernel (H, 4H), recurrent_gamma, recurrent_beta (4H,), cell_gamma,
            cell_beta (H,): the cell's weights (`LayerNormLSTMCell.recurrent_weights()`).

    Returns:
        h_t, c_t (B, H). The cell and the fused layer both step through this one function.
    """
    z = xw + layer_norm(ops.matmul(h_prev, recurrent_kernel), recurrent_gamma, recurrent_beta)
    h, c, _ = lstm_update(z, c_prev, norm_c=lambda c: layer_norm(c, cell_gamma, cell_beta))
    return h, c


class _LSTMWeights(keras.layers.Layer):
    """kernel, recurrent_kernel and bias of an LSTM step as LSTMCell documents them, with their
    arguments: what LSTMCell and LayerNormLSTMCell share. The subclasses add call()."""

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

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
            "unit_forget_bias": self.unit_forget_bias,
        }


@keras.saving.register_keras_serializable(package="charlstm")
class LSTMCell(_LSTMWeights):
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

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states
        # one matmul pair for all four gates: four small ones are slower
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel) + self.bias
        h, c, _ = lstm_update(z, c_prev)
        return h, [h, c]


@keras.saving.register_keras_serializable(package="charlstm")
class LayerNormLSTMCell(_LSTMWeights):
    """One layer-normalized LSTM step (Ba, Kiros & Hinton, 2016, "Layer Normalization",
    section 3.1), for use inside `keras.layers.RNN`. x_t: (B, D); h, c: (B, H).

        z   = LN(x_t @ kernel; input_gamma, input_beta)                     # (B, 4H)
              + LN(h_{t-1} @ recurrent_kernel; recurrent_gamma, recurrent_beta)
              + bias                                                        # [i | f | g | o]
        i, f, g, o = sigmoid(z_i), sigmoid(z_f), tanh(z_g), sigmoid(z_o)    # (B, H) each
        c_t = f * c_{t-1} + i * g                                           # (B, H)
        h_t = o * tanh(LN(c_t; cell_gamma, cell_beta))                      # (B, H)

    with LN(v; gamma, beta) = gamma * (v - mean(v)) / sqrt(var(v) + eps) + beta over the last
    axis, eps = 1e-5 (`layer_norm`): each of z's two terms is normalized over the 4H features
    of its row, c_t over its H. The input and the recurrent term thus each enter with fixed
    statistics, whatever the scale of x_t, h_{t-1} or the kernels: h_{t-1} @ (s *
    recurrent_kernel) gives the same z for every s > 0, which a plain LSTM's z does not.

    Weights: kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H,) as in LSTMCell (same names,
    initializers and gate order; the forget block of the bias starts at 1); input_gamma,
    input_beta, recurrent_gamma, recurrent_beta (4H,) and cell_gamma, cell_beta (H,), the
    gammas starting at 1 and the betas at 0. (The betas of z's two terms and bias add up: the
    paper's parametrization, kept so its weights map one to one.)

    Args and Call: as LSTMCell's.
    """

    def build(self, input_shape):
        super().build(input_shape)
        for name, size in (("input", 4 * self.units), ("recurrent", 4 * self.units),
                           ("cell", self.units)):  # fmt: skip
            gamma = self.add_weight(shape=(size,), initializer="ones", name=f"{name}_gamma")
            beta = self.add_weight(shape=(size,), initializer="zeros", name=f"{name}_beta")
            setattr(self, f"{name}_gamma", gamma)
            setattr(self, f"{name}_beta", beta)

    def project(self, inputs):
        """The part of z that needs no state: LN(x @ kernel; input_gamma, input_beta) + bias.

        inputs: (..., D), e.g. (B, D) for one step, (T, B, D) for a window or (V, D) for the
        embeddings: LN is per row, so all steps are projected at once. Returns (..., 4H).
        """
        # matmul, not einsum: under XLA the gradient of keras.ops.einsum("...d,dg->...g") on a
        # (T, B, D) input ran 100 times slower than matmul's (11.5 s against 0.11 s, T 100,
        # B 64, D 256, 4H 1024)
        xw = ops.matmul(inputs, self.kernel)
        return layer_norm(xw, self.input_gamma, self.input_beta) + self.bias

    def recurrent_weights(self) -> list:
        """[recurrent_kernel, recurrent_gamma, recurrent_beta, cell_gamma, cell_beta]: the
        weights `layernorm_lstm_update` takes after the state."""
        return [self.recurrent_kernel, self.recurrent_gamma, self.recurrent_beta,
                self.cell_gamma, self.cell_beta]  # fmt: skip

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states
        h, c = layernorm_lstm_update(
            self.project(inputs), h_prev, c_prev, *self.recurrent_weights()
        )
        return h, [h, c]
