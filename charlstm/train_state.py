"""What a training checkpoint holds of the model and optimizer, and how it is put back.

    model.safetensors         the model's weights by variable path (with ema: the averages)
    train_state.safetensors   optimizer/<path>   Adam's moments and step (not the rate: each
                                                 step's follows from the schedule)
                              carry/<layer>/h|c  the TBPTT states carried into the next window,
                                                 (B, H) each, in the global batch's stream order
                              rng/<i>            the dropout seed generators' state
                              raw/<path>         with ema: the raw weights training goes on from

`TrainState` maps these names to the variables of one model and optimizer; `charlstm.rundir`
writes and verifies the files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf

from charlstm.model import CharModel, States
from charlstm.rundir import Checkpoint, assign_tensors, variables_by_path


def values(variables: dict) -> dict[str, np.ndarray]:
    """name -> variable to name -> its value, as safetensors writes it."""
    return {name: np.asarray(v.numpy()) for name, v in variables.items()}


class TrainState:
    """The variables a checkpoint saves for `model` trained by `optimizer` on `streams`
    parallel streams; `ema`: whether the optimizer keeps moving averages of the weights."""

    def __init__(
        self, model: CharModel, optimizer: keras.optimizers.Optimizer, streams: int, ema: bool
    ):
        self.model, self.optimizer, self.ema = model, optimizer, ema
        # the TBPTT states travel as values; these hold them only for checkpoints
        self.carry = [
            [keras.Variable(s, trainable=False, name=f"carry_{i}_{j}") for j, s in enumerate(layer)]
            for i, layer in enumerate(model.zero_states(streams))
        ]

    def variables(self) -> dict[str, keras.Variable]:
        """train_state.safetensors' names (module docstring) -> the variables they hold."""
        lr = self.optimizer.learning_rate
        names = {
            f"optimizer/{v.path.split('/', 1)[-1]}": v
            for v in self.optimizer.variables
            if v is not lr
        }
        for i, layer in enumerate(self.carry):
            names |= {f"carry/{i}/{key}": v for key, v in zip("hc", layer)}
        rng = [v for v in self.model.variables if "seed_generator" in v.path]
        names |= {f"rng/{i}": v for i, v in enumerate(rng)}
        if self.ema:  # the model's weights are saved averaged: keep the raw ones
            names |= {f"raw/{k}": v for k, v in variables_by_path(self.model.weights).items()}
        return names

    @contextlib.contextmanager
    def averaged(self) -> Iterator[None]:
        """Inside, the model holds the moving averages of its trainable weights (with ema,
        once a step has made them; otherwise nothing changes); after, its raw weights again."""
        if not self.ema or int(self.optimizer.iterations.numpy()) == 0:
            yield
            return
        trainable = self.model.trainable_variables
        raw = [tf.identity(v.value) for v in trainable]
        self.optimizer.finalize_variable_values(trainable)
        try:
            yield
        finally:
            for v, value in zip(trainable, raw):
                v.assign(value)

    def tensors(self, states: States) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(model.safetensors' tensors, train_state.safetensors' tensors) with `states`, the
        carried states in the global batch's order, as the carry."""
        for variables, layer in zip(self.carry, states):
            for v, value in zip(variables, layer):
                v.assign(value)
        with self.averaged():  # what generate and evaluate load
            weights = values(variables_by_path(self.model.weights))
        return weights, values(self.variables())

    def restore(self, ckpt: Checkpoint) -> States:
        """Assign checkpoint `ckpt`'s tensors; returns its carried states.

        Raises:
            CharlstmError: a tensor missing, extra, or of another shape or dtype.
        """
        assign_tensors(variables_by_path(self.model.weights), ckpt.model_tensors(), str(ckpt.path))
        assign_tensors(self.variables(), ckpt.train_state_tensors(), str(ckpt.path))
        return [[tf.convert_to_tensor(v) for v in layer] for layer in self.carry]
