"""Loss in nats/char and bits/char over TBPTT windows, static or dynamic.

Evaluation walks the windows with `charlstm.steps.walk`, the loop training uses too, starting
every stream from zero state and scoring every character it lays out (`data.eval_windows`: the
last window may be shorter than T). `dynamic_evaluate` walks the same way and adapts the
weights to the text as it goes, through the steps module's one gradient tape.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from charlstm import precision
from charlstm.config import DynamicConfig
from charlstm.data import Windows
from charlstm.model import CharModel, States
from charlstm.steps import loss_and_gradients, make_eval_step, nll_sum, walk


@dataclass(frozen=True)
class Loss:
    """Mean negative log-likelihood of the next character.

    Attributes:
        nats: mean -ln p(next char), nats/char.
        chars: how many characters were scored.
    """

    nats: float
    chars: int

    @property
    def bits(self) -> float:
        """bits/char = nats / ln 2."""
        return self.nats / math.log(2)

    @property
    def perplexity(self) -> float:
        """exp(nats): the effective number of equally likely next characters."""
        return math.exp(self.nats)

    def as_dict(self) -> dict:
        return {
            "nats_per_char": self.nats,
            "bits_per_char": self.bits,
            "perplexity": self.perplexity,
            "chars": self.chars,
        }


def evaluate_windows(
    model: CharModel,
    windows: Windows,
    eval_step: Callable | None = None,
    carry: bool = True,
    states: States | None = None,
) -> Loss:
    """Mean loss over every target of `windows`, streams starting from zero state.

    carry=True carries each window's final states into the next, so every character sees the
    whole text before it. carry=False starts every window from zeros, so character j of a
    window sees only the j characters before it in that window: the difference is what
    carrying state buys. `states`: the zero states as `eval_step` takes them (default
    `model.zero_states`; `charlstm.distribute` passes them cut across replicas).
    """
    eval_step = eval_step or make_eval_step(model)
    zeros = model.zero_states(windows.inputs.shape[0]) if states is None else states
    step = eval_step if carry else (lambda x, y, _: eval_step(x, y, zeros))
    total = sum(float(nll) for _, nll, _ in walk(windows, step, zeros))
    return Loss(nats=total / windows.num_chars, chars=windows.num_chars)


# RMS of the gradients: a running mean over about 1 / (1 - beta) = 100 windows, as RMSprop's;
# eps only keeps a weight whose gradients have all been zero from dividing by zero
DYNAMIC_BETA, DYNAMIC_EPS = 0.99, 1e-8


def make_dynamic_step(model: CharModel, config: DynamicConfig) -> Callable:
    """A compiled (x, y, states) -> (nll sum, states) that scores a window, then adapts the
    model's weights on that window: `dynamic_evaluate`'s step, for `walk`.

    The model's trainable variables are changed in place; their values when this is called are
    the global weights theta_g that `config.dynamic_decay` pulls towards.
    """
    variables = model.trainable_variables
    # copies of the weights as they are now, and the running mean of squared gradients: state
    # of this evaluation, kept out of the model so that its weights and paths stay the run's
    global_weights = [tf.Variable(v.value, trainable=False) for v in variables]
    mean_squares = [tf.Variable(tf.zeros_like(v.value), trainable=False) for v in variables]
    updates = tf.Variable(0.0, trainable=False)
    lr, decay, beta = config.dynamic_lr, config.dynamic_decay, DYNAMIC_BETA

    def scored(model, x, y, states):  # dropout off: the score is the model's prediction
        nll, states = nll_sum(model, x, y, states)
        return nll / tf.cast(tf.size(y), tf.float32), states

    gradients = loss_and_gradients(model, scored)

    def step(x, y, states):
        # scored first, under the current weights; then the weights learn from the window
        loss, grads, states = gradients(x, y, states)
        nll = loss * tf.cast(tf.size(y), tf.float32)
        updates.assign_add(1.0)
        unbias = 1.0 - tf.pow(beta, updates)  # the first means start from zero, as Adam's
        for v, g, g_mean_sq, theta_g in zip(variables, grads, mean_squares, global_weights):
            g_mean_sq.assign(beta * g_mean_sq + (1.0 - beta) * tf.square(g))
            rms = tf.sqrt(g_mean_sq / unbias) + DYNAMIC_EPS
            v.assign(v - lr * g / rms + decay * (theta_g - v))
        return nll, states

    return precision.compile_step(step, model)


def dynamic_evaluate(
    model: CharModel, windows: Windows, config: DynamicConfig | None = None
) -> Loss:
    """Mean loss over every target of `windows` while the weights adapt to them (dynamic
    evaluation, Krause et al. 2017, "Dynamic Evaluation of Neural Sequence Models").

    For each window k, states carried from window k-1 as plain values (from zeros at k = 0):

        loss_k = mean -ln p(y_k | x_k, states) under the current weights theta   # scored
        g      = d loss_k / d theta                   # every trainable weight, its own shape
        MS     = beta * MS + (1 - beta) * g^2         # beta = 0.99, MS starts at 0
        theta <- theta - lr * g / (sqrt(MS / (1 - beta^(k+1))) + eps)
                       + decay * (theta_g - theta)    # theta_g: the weights before window 0

    lr is `config.dynamic_lr`, decay `config.dynamic_decay`, eps 1e-8. Window k is scored before
    the update on it, so every character is predicted by weights that have not seen it: an
    honest next-character loss, which `evaluate_windows` on the same windows makes static. The
    gradient is the RMS-normalized one of Krause et al., with the mean square taken online
    over the windows read so far instead of over training data, which a text alone lacks.

    With B > 1 streams one update mixes the B streams' windows k, and each stream's next
    window is predicted by weights that have read the others', parts of the text that come
    later in it; one stream (`eval_windows(ids, 1, T)`) reads the text strictly in order.

    Args:
        model: its trainable weights are changed in place, so pass a model of its own
            (`RunDir.load_model()` builds a fresh one at every call; nothing is written to the
            run directory). Afterwards it holds the weights adapted to the whole text.
        windows: B streams in (B, T) windows, int32 ids.
        config: learning rate and decay; DynamicConfig() if None.

    Returns:
        The Loss of the predictions made while reading.
    """
    step = make_dynamic_step(model, config or DynamicConfig())
    zeros = model.zero_states(windows.inputs.shape[0])
    total = sum(float(nll) for _, nll, _ in walk(windows, step, zeros))
    return Loss(nats=total / windows.num_chars, chars=windows.num_chars)
