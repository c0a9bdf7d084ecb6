"""The steps that training and evaluation share: the loss, the state-carrying walk, the one
gradient tape, the compiled train and eval steps, and the optimizer.

    nll_sum(model, x, y, states)  = sum_{b,t} -ln softmax(logits[b, t])[y[b, t]]   x, y: (B, T)
    mean_nll(model, x, y, states) = nll_sum / (B * T)                             nats/char
                                    (an Ensemble: the mean of its members' own)
    walk(windows, step, states):  for k: out_k, states = step(x_k, y_k, states)    # TBPTT

`walk` is the one loop that carries every layer's (h, c) from window k into window k+1;
training, validation, `charlstm evaluate` and dynamic evaluation all go through it. The states
go in as plain values, so no gradient crosses a window edge: that is the truncation.
`loss_and_gradients` holds the only `tf.GradientTape` of the package: the train step, the
per-replica step of `charlstm.distribute` and dynamic evaluation's step complete it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import keras
import tensorflow as tf

from charlstm import precision
from charlstm.config import TrainConfig
from charlstm.data import Windows
from charlstm.model import CharModel, Ensemble, States
from charlstm.schedule import learning_rate


def walk(
    windows: Windows, step: Callable, states: States, start: int = 0
) -> Iterator[tuple[int, Any, States]]:
    """Run `step(x, y, states) -> (out, states)` over windows start.., carrying the states.

    Yields (k, out, states after window k). The states go in as plain values, so no gradient
    crosses a window edge.
    """
    for k in range(start, len(windows)):
        x, y = windows[k]
        out, states = step(tf.constant(x), tf.constant(y), states)
        yield k, out, states


def nll_sum(model: CharModel, x, y, states: States, training: bool = False):
    """Sum of -ln p(y | x) over a window and the states after it.

    x, y: (B, T) int32. Returns (scalar float32, states).
    """
    logits, states = model(x, states, training=training)
    return _summed_nll(y, logits), states


def _summed_nll(y, logits):
    """sum_{b,t} -ln softmax(logits[b, t])[y[b, t]]: y (B, T), logits (B, T, V)."""
    return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))


def mean_nll(model: CharModel | Ensemble, x, y, states: States):
    """Mean -ln p(next char) over a window in training mode (dropout on), nats/char, and the
    states after it. An Ensemble's members each learn from their own loss: this is the mean
    over the members of each one's, never the loss of their averaged probabilities."""
    logits, states = model.member_logits(x, states, training=True)
    nll = tf.add_n([_summed_nll(y, one) for one in logits]) / len(logits)
    return nll / tf.cast(tf.size(y), tf.float32), states


def loss_and_gradients(model: CharModel, loss: Callable = mean_nll) -> Callable:
    """(x, y, states) -> (loss, its gradients for model.trainable_variables, states after):
    the forward and backward half of a step, which `make_train_step`,
    `distribute.Replicas.train_step` (per replica) and dynamic evaluation complete with their
    own update. `loss(model, x, y, states) -> (scalar, states)`."""

    def gradients(x, y, states):
        with tf.GradientTape() as tape:
            value, states = loss(model, x, y, states)
        return value, tape.gradient(value, model.trainable_variables), states

    return gradients


def make_train_step(
    model: CharModel, optimizer: keras.optimizers.Optimizer, loss: Callable = mean_nll
) -> Callable:
    """One compiled TBPTT step: (x, y (B, T) int32, states) -> (loss, states after).

    The whole step (forward, backward through time, Adam) is one XLA computation, or in
    bfloat16 a graph around the XLA-compiled loops (`charlstm.precision`). The states
    come out as values, so the next window starts from them without a gradient path back.
    `loss(model, x, y, states) -> (scalar, states)` may be replaced, e.g. by a task that
    scores only the last character.
    """
    gradients = loss_and_gradients(model, loss)

    def train_step(x, y, states):
        value, grads, states = gradients(x, y, states)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return value, states

    return precision.compile_step(train_step, model)


def make_eval_step(model: CharModel) -> Callable:
    """A compiled (x, y, states) -> (nll sum, states) for `walk`, dropout off."""
    return precision.compile_step(lambda x, y, states: nll_sum(model, x, y, states), model)


def make_optimizer(config: TrainConfig, clip: bool = True) -> keras.optimizers.Optimizer:
    """Adam with global-norm clipping, or AdamW when config.weight_decay > 0 (decoupled decay,
    w -= lr * weight_decay * w, on kernels and embeddings, not on biases or normalization
    gains and offsets). Its learning rate is a variable: the trainer sets it before each step
    (`charlstm.schedule`); it starts at the first step's. With config.ema > 0 it also keeps
    a <- ema * a + (1 - ema) * w for every trainable w after each step (a = w at the first).
    clip=False leaves clipping to the caller (`distribute.Replicas` clips the reduced mean)."""
    first = learning_rate(config, 0)
    # config.ema: Keras' own moving average, updated inside apply_gradients
    common = {"global_clipnorm": config.grad_clip if clip else None, "use_ema": config.ema > 0}
    common |= {"ema_momentum": config.ema} if config.ema else {}
    if config.weight_decay == 0:
        return keras.optimizers.Adam(first, **common)
    optimizer = keras.optimizers.AdamW(first, weight_decay=config.weight_decay, **common)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer
