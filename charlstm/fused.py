"""An LSTM layer that runs a whole window through our LSTMCell's weights in one compiled loop.

`keras.layers.RNN(LSTMCell)` computes x_t @ kernel inside the recurrence, one small matmul per
step. The recurrence does not need it there: the inputs of all T steps are projected at once,

    XW = x @ kernel + bias                      # (T, B, 4H), time-major: one large matmul
    for t in 0..T-1:                             # tf.while_loop, compiled with the train step
        z_t = XW[t] + h_{t-1} @ recurrent_kernel
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

Two regularizers live in the recurrence, in training only, each drawn once per window:

    recurrent dropout (Gal & Ghahramani, 2016):  z_t = XW[t] + (h_{t-1} * m) @ recurrent_kernel
        m (B, H): one Bernoulli(1 - p) / (1 - p) mask per stream, the same at every step
    weight drop (DropConnect on U, Merity et al., 2017, AWD-LSTM):  recurrent_kernel * M
        M (H, 4H): one Bernoulli(1 - p) / (1 - p) mask shared by every stream and step

Both cost one elementwise product (per step, or per window) and keep the fast path.

`FusedLayerNormLSTM` does the same for a LayerNormLSTMCell: LN(x_t @ kernel) is per row, so it
too is projected for all T steps at once, and the loop does LN(h @ recurrent_kernel), the gates
and LN(c_t) through the cell's own `layernorm_lstm_update`; its backward is autodiff's.
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf

from charlstm import kernel as compiled_kernel
from charlstm import precision
from charlstm.cell import LayerNormLSTMCell, LSTMCell, layernorm_lstm_update, lstm_update


@keras.saving.register_keras_serializable(package="charlstm")
class FusedLSTM(keras.layers.Layer):
    """A whole-sequence LSTM over an LSTMCell's weights.

    Args:
        units: H.
        recurrent_dropout: p of the mask m on h_{t-1} in the recurrence (module docstring).
        weight_drop: p of the mask M on recurrent_kernel.
        matmul_dtype: "float32" or "bfloat16", the dtype of the input projection and of the
            recurrent kernel's gradient (`charlstm.precision`); the loop runs in float32.
        kernel: "xla" (the loops below, XLA-compiled) or "compiled" (the same loops as C++
            ops over MKL, `charlstm.kernel`).

    Call:
        inputs: (B, T, D); initial_state: [h (B, H), c (B, H)] or None for zeros;
        training: draws the masks (else none are applied).
        Returns (outputs (B, T, H), h_T (B, H), c_T (B, H)), like
        `keras.layers.RNN(cell, return_sequences=True, return_state=True)`.

    A stack of layers runs faster time-major, without a transpose per layer: `project`
    (or `project_ids` for the first layer) then `recur`, as CharLSTM does.
    """

    def __init__(
        self,
        units: int,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
        matmul_dtype: str = "float32",
        kernel: str = "xla",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = units
        self.recurrent_dropout, self.weight_drop = recurrent_dropout, weight_drop
        self.matmul_dtype, self.kernel = matmul_dtype, kernel
        self.cell = LSTMCell(units, name="cell")
        if recurrent_dropout or weight_drop:
            self.seed_generator = keras.random.SeedGenerator(name="seed_generator")

    def build(self, input_shape):
        self.cell.build((input_shape[0], input_shape[-1]))

    def call(self, inputs, initial_state=None, training=False):
        xw = self.project(tf.transpose(inputs, [1, 0, 2]))
        hs, h, c = self.recur(xw, initial_state, training)
        return tf.transpose(hs, [1, 0, 2]), h, c

    def project(self, inputs):
        """Time-major inputs (T, B, D) -> x_t @ kernel + bias for every step, (T, B, 4H)."""
        return project(inputs, self.cell, self.matmul_dtype)

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

    def recur(self, xw, initial_state=None, training=False):
        """The recurrence over projected inputs xw (T, B, 4H); initial_state [h, c] (B, H) or
        None for zeros; in training, under this window's masks (`masks`). Returns time-major
        hs (T, B, H), h_T, c_T."""
        batch = tf.shape(xw)[1]
        if initial_state is None:
            zeros = tf.zeros((batch, self.units), xw.dtype)
            initial_state = [zeros, zeros]
        h0, c0 = initial_state
        h_mask, kernel_mask = self.masks(batch, training)
        U = tf.convert_to_tensor(self.cell.recurrent_kernel)
        return lstm_recurrence(xw, h0, c0, U * kernel_mask, h_mask, self.matmul_dtype, self.kernel)

    def masks(self, batch, training=False):
        """One window's masks: m (B, H) on h_{t-1} and M (H, 4H) on recurrent_kernel, each
        Bernoulli(1 - p) / (1 - p), drawn from the layer's seed generator; ones when not
        training or p is 0 (XLA folds a product by ones away)."""
        H = self.units
        h_mask, kernel_mask = tf.ones((batch, H)), tf.ones((H, 4 * H))
        if training and self.recurrent_dropout:
            h_mask = keras.random.dropout(h_mask, self.recurrent_dropout, seed=self.seed_generator)
        if training and self.weight_drop:
            kernel_mask = keras.random.dropout(
                kernel_mask, self.weight_drop, seed=self.seed_generator
            )
        return h_mask, kernel_mask

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "recurrent_dropout": self.recurrent_dropout,
            "weight_drop": self.weight_drop,
            "matmul_dtype": self.matmul_dtype,
            "kernel": self.kernel,
        }


def project(inputs, cell: LSTMCell, dtype: str = "float32"):
    """Time-major inputs (T, B, D) -> x_t @ cell.kernel + cell.bias for every step, (T, B, 4H);
    the product in `dtype` (`charlstm.precision`)."""
    return precision.matmul(inputs, cell.kernel, dtype) + cell.bias


def lstm_forward(xw, h0, c0, recurrent_kernel, h_mask=None, dtype: str = "float32"):
    """The forward loop over T projected inputs, keeping what the backward pass needs.

        z_t = xw[t] + (h_{t-1} * h_mask) @ recurrent_kernel;  h_t, c_t = lstm_update(z_t, c_{t-1})

    A plain `tf.while_loop`, so autodiff can go through it (the tests' oracle for the
    hand-written backward); `lstm_recurrence` runs it compiled on its own (`_forward_loop`).

    Args:
        xw: (T, B, 4H), x_t @ kernel + bias for every step.
        h0, c0: (B, H), the initial state.
        recurrent_kernel: (H, 4H).
        h_mask: (B, H) recurrent dropout mask, the same at every step; None for none.
        dtype: of the per-step products (`charlstm.precision.matmul`).

    Returns:
        hs, cs (T, B, H): h_t and c_t after every step; gates (T, B, 4H): [i | f | g | o].
    """
    steps = xw.shape[0]  # static: XLA needs a fixed trip count
    h_mask = tf.ones_like(h0) if h_mask is None else h_mask

    def forward(t, h, c, hs, cs, gates):
        h, c, a = lstm_update(xw[t] + precision.matmul(h * h_mask, recurrent_kernel, dtype), c)
        return t + 1, h, c, hs.write(t, h), cs.write(t, c), gates.write(t, a)

    arrays = [tf.TensorArray(xw.dtype, size=steps) for _ in range(3)]
    _, _, _, hs, cs, gates = tf.while_loop(
        lambda t, *_: t < steps, forward, (0, h0, c0, *arrays), maximum_iterations=steps
    )
    return hs.stack(), cs.stack(), gates.stack()


# The loops as XLA computations of their own, so that a step which is not one (a bfloat16
# step, `charlstm.precision`) still runs them compiled; inside an XLA step they are inlined.
# Autodiff cannot go through them from outside XLA; `lstm_recurrence` needs it not to.
_forward_loop = tf.function(lstm_forward, jit_compile=True, autograph=False)


@tf.function(jit_compile=True, autograph=False)
def _backward_loop(gates, cs, c0, d_hs, d_h, d_c, recurrent_kernel, h_mask, dtype="float32"):
    """The reverse loop: every dz_t (T, B, 4H), and dh_0, dc_0 (B, H); its per-step products
    dz_t @ U^T in `dtype`."""
    steps = gates.shape[0]
    c_prev = tf.concat([c0[None], cs[:-1]], axis=0)  # (T, B, H)
    U_t = tf.transpose(recurrent_kernel)

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
        return k + 1, precision.matmul(dz, U_t, dtype) * h_mask, dc * f, dzs.write(t, dz)

    dzs = tf.TensorArray(gates.dtype, size=steps)
    _, dh0, dc0, dzs = tf.while_loop(
        lambda k, *_: k < steps, step_back, (0, d_h, d_c, dzs), maximum_iterations=steps
    )
    return dzs.stack(), dh0, dc0


def lstm_recurrence(
    xw, h0, c0, recurrent_kernel, h_mask=None, dtype: str = "float32", kernel: str = "xla",
    loop_dtype: str | None = None,
):  # fmt: skip
    """`lstm_forward` (same arguments) with the hand-written backward through time, whose
    d recurrent_kernel product runs in `dtype` (`charlstm.precision`); the forward and
    backward loops XLA's (`_forward_loop`, `_backward_loop`) or, with kernel "compiled", the
    C++ ops of `charlstm.kernel` (the same equations, their per-step products in `dtype` too:
    bfloat16 factors, float32 sums). The XLA loops' per-step products run in `loop_dtype`
    (None: `precision.xla_loop_dtype(dtype)`, bfloat16 only where XLA runs it natively).

    Returns:
        hs (T, B, H), h_T (B, H), c_T (B, H).
    """
    h_mask = tf.ones_like(h0) if h_mask is None else h_mask
    if kernel == "compiled":
        ops, bf16 = compiled_kernel.ops(), dtype == "bfloat16"
        forward_loop = functools.partial(ops.charlstm_lstm_forward, bf16=bf16)
        backward_loop = functools.partial(ops.charlstm_lstm_backward, bf16=bf16)
    else:
        loop_dtype = loop_dtype or precision.xla_loop_dtype(dtype)
        forward_loop = functools.partial(_forward_loop, dtype=loop_dtype)
        backward_loop = functools.partial(_backward_loop, dtype=loop_dtype)

    @tf.custom_gradient
    def recurrence(xw, h0, c0, U, h_mask):
        # the loop's inputs are cut from any tape: its gradient is `backward`, and a tape
        # would ask the compiled loop for a forward pass that keeps its intermediates
        inputs = [tf.stop_gradient(a) for a in (xw, h0, c0, U, h_mask)]
        hs, cs, gates = forward_loop(*inputs)  # (T, B, H) x 2, (T, B, 4H)
        h, c = hs[-1], cs[-1]

        def backward(d_hs, d_h, d_c):
            # autodiff hands None for outputs the loss does not use, e.g. the final state
            d_hs = tf.zeros_like(hs) if d_hs is None else d_hs
            d_h = tf.zeros_like(h) if d_h is None else d_h
            d_c = tf.zeros_like(c) if d_c is None else d_c
            dz, dh0, dc0 = backward_loop(gates, cs, c0, d_hs, d_h, d_c, U, h_mask)
            h_prev = tf.concat([h0[None], hs[:-1]], axis=0) * h_mask  # (T, B, H), as U saw it
            units = U.shape[0]
            d_U = precision.matmul(  # (H, T*B) @ (T*B, 4H)
                tf.reshape(h_prev, (-1, units)), tf.reshape(dz, (-1, 4 * units)), dtype,
                transpose_a=True,
            )  # fmt: skip
            return dz, dh0, dc0, d_U, tf.zeros_like(h_mask)

        return (hs, h, c), backward

    return recurrence(xw, h0, c0, recurrent_kernel, tf.stop_gradient(h_mask))


@keras.saving.register_keras_serializable(package="charlstm")
class FusedLayerNormLSTM(keras.layers.Layer):
    """A whole-sequence layer-normalized LSTM over a LayerNormLSTMCell's weights.

    The interface of FusedLSTM (`project`, `project_ids`, `recur`), so CharLSTM's time-major
    call runs either. The loop is a `tf.while_loop` of static trip count, compiled with the
    train step; its gradient is autodiff's, which does the per-step weight-gradient matmuls
    that FusedLSTM's hand-written backward gathers into one.

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
        self.cell = LayerNormLSTMCell(units, name="cell")

    def build(self, input_shape):
        self.cell.build((input_shape[0], input_shape[-1]))

    def call(self, inputs, initial_state=None, training=False):
        hs, h, c = self.recur(self.project(tf.transpose(inputs, [1, 0, 2])), initial_state)
        return tf.transpose(hs, [1, 0, 2]), h, c

    def project(self, inputs):
        """Time-major inputs (T, B, D) -> LN(x_t @ kernel) + bias for every step, (T, B, 4H)."""
        return self.cell.project(inputs)

    def project_ids(self, ids, embeddings):
        """`project` of embedded ids, as FusedLSTM's: the rows of a (V, 4H) table of the
        projected embeddings, LN included, gathered. ids: (B, T) int32; embeddings: (V, E).
        Returns (T, B, 4H)."""
        return tf.gather(self.cell.project(embeddings), tf.einsum("bt->tb", ids))

    def recur(self, xw, initial_state=None, training=False):
        """The recurrence over projected inputs xw (T, B, 4H); initial_state [h, c] (B, H) or
        None for zeros (`training` draws no masks here: no recurrent dropout or weight drop
        for this cell). Returns time-major hs (T, B, H), h_T, c_T."""
        if initial_state is None:
            zeros = tf.zeros((tf.shape(xw)[1], self.units), xw.dtype)
            initial_state = [zeros, zeros]
        h0, c0 = initial_state
        weights = [tf.convert_to_tensor(w) for w in self.cell.recurrent_weights()]
        return layernorm_lstm_recurrence(xw, h0, c0, weights)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def layernorm_lstm_recurrence(xw, h0, c0, weights):
    """T steps of `layernorm_lstm_update` over projected inputs.

    Args:
        xw: (T, B, 4H), `LayerNormLSTMCell.project` of every step's input.
        h0, c0: (B, H), the initial state.
        weights: `LayerNormLSTMCell.recurrent_weights()`, as tensors.

    Returns:
        hs (T, B, H): h_t after every step; h_T, c_T (B, H).
    """
    steps = xw.shape[0]  # static: XLA needs a fixed trip count, and autodiff of the loop too

    def forward(t, h, c, hs):
        h, c = layernorm_lstm_update(xw[t], h, c, *weights)
        return t + 1, h, c, hs.write(t, h)

    _, h, c, hs = tf.while_loop(
        lambda t, *_: t < steps,
        forward,
        (0, h0, c0, tf.TensorArray(xw.dtype, size=steps)),
        maximum_iterations=steps,
    )
    return hs.stack(), h, c
