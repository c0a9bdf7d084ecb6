"""Data-parallel training on tf.distribute: the strategy, and the global batch cut by streams.

    R replicas: local devices (MirroredStrategy) or every worker's (MultiWorkerMirroredStrategy,
    hosts from TF_CONFIG). The B streams of every window are cut into R slices of B / R;
    replica r holds streams [r B/R, (r+1) B/R) and carries their (h, c) from window to window.

    per replica r:  l_r, g_r, s_r = grads(x_r, y_r, s_r)    # the compiled forward and backward
    all-reduce:     g = sum_r g_r / R                        # the global batch's mean gradient
                    g = clip(g, grad_clip)                   # by global norm, on the mean
    update:         Adam(g) on the mirrored variables, the same update on every replica
                    (Keras' optimizer sums its replicas' gradients itself, after its own
                    clipping: it gets g / R from each, and no clipping of its own)
    loss:           sum_r l_r / R

Every replica scores as many characters, so the mean of the replicas' means is the global
batch's mean, and R replicas take the same steps as one device with the same global batch
(to float rounding). Dropout masks are drawn by each replica from a seed of its own
(`Replicas.decorrelate`), so with dropout the steps differ from one device's, as masks do.
Evaluation cuts its streams the same way and sums the replicas' nll sums. The carried states
stay on their replicas; a checkpoint gathers them into the global batch order (`gather`), so
a run resumes on any number of replicas that divides B.

Without a strategy ("one") `Replicas` is the single-device path itself: no split, no gather.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable

import keras
import tensorflow as tf

from charlstm import precision
from charlstm.config import STRATEGIES
from charlstm.errors import CharlstmError

# replica r draws its dropout masks from seed + r * SEED_STRIDE (`Replicas.decorrelate`)
SEED_STRIDE = 7_919
# a collective that waits this long for a peer fails the step: a lost worker stops the job
# (CHARLSTM_COLLECTIVE_TIMEOUT, seconds, sets another)
COLLECTIVE_TIMEOUT_S = 60.0


def make_strategy(name: str) -> tf.distribute.Strategy | None:
    """The tf.distribute strategy for TrainConfig.strategy; None for "one" (no strategy).

    auto: mirrored when TensorFlow sees more than one GPU, else one. mirrored: every local GPU,
    or every logical CPU device where there is no GPU. multiworker: the cluster in TF_CONFIG,
    each worker's GPUs (or its CPU). Must be called before the process runs any TensorFlow op.
    """
    if name == "auto":  # physical devices: listing logical ones would start the runtime
        name = "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "one"
    if name == "one":
        return None
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name != "multiworker":
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    _check_tf_config()  # TensorFlow reads it itself
    try:
        timeout = float(os.environ.get("CHARLSTM_COLLECTIVE_TIMEOUT", COLLECTIVE_TIMEOUT_S))
    except ValueError:
        raise CharlstmError("CHARLSTM_COLLECTIVE_TIMEOUT must be a number of seconds") from None
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def _check_tf_config() -> None:
    """Refuse a TF_CONFIG that is missing or not a cluster with this process' task in it."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise CharlstmError(
            "--strategy multiworker needs TF_CONFIG: the cluster's workers and this process' "
            "task (docs/distributed.md)"
        )
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        task = config["task"]
        if task["type"] not in config["cluster"] or not isinstance(workers, list):
            raise KeyError(task["type"])
    except (ValueError, KeyError, TypeError) as err:
        raise CharlstmError(f"TF_CONFIG is not a cluster and a task of it ({err})") from err


def is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether this process writes the run: always without a strategy or under mirrored; under
    multiworker the "chief" task, or worker 0 when the cluster names no chief."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    kind, index = resolver.task_type, resolver.task_id
    return kind == "chief" or (kind == "worker" and index == 0 and "chief" not in
                               resolver.cluster_spec().as_dict())  # fmt: skip


class Replicas:
    """A strategy (or none) and the global batch of `batch_size` streams cut across its
    replicas: the scope to build the model in, the compiled steps, and the states' split and
    gather.

    Raises:
        CharlstmError: batch_size is not a multiple of the number of replicas.
    """

    def __init__(self, strategy: tf.distribute.Strategy | None, batch_size: int):
        self.strategy = strategy
        self.count = strategy.num_replicas_in_sync if strategy else 1
        if batch_size % self.count:
            raise CharlstmError(
                f"batch size {batch_size} does not split across {self.count} replicas: give "
                f"--batch-size a multiple of {self.count}"
            )
        self.chief = is_chief(strategy)

    def decorrelate(self, model) -> None:
        """Give every replica dropout masks of its own: replica r's copy of each seed-generator
        state (seed, counter) becomes replica 0's + (r * SEED_STRIDE, 0). Keras mirrors the
        state, so the copies start equal, and every replica would draw the same masks for its
        own streams. A checkpoint keeps replica 0's state: call this after a restore too."""
        states = [v for v in model.variables if "seed_generator" in v.path]
        if self.strategy is None or not states:
            return
        first = [tf.convert_to_tensor(v.value) for v in states]  # replica 0's, cross-replica

        def own(context):
            shift = tf.constant([SEED_STRIDE, 0], tf.int64) * context.replica_id_in_sync_group
            return [value + tf.cast(shift, value.dtype) for value in first]

        values = self.strategy.experimental_distribute_values_from_function(own)
        self.strategy.run(
            lambda parts: [v.assign(part) for v, part in zip(states, parts)], args=(values,)
        )

    def scope(self):
        """Where the model and optimizer are built: their variables are mirrored inside."""
        return self.strategy.scope() if self.strategy else contextlib.nullcontext()

    def split(self, value, streams: int):
        """A nest of (streams, ...) tensors -> the same nest, each replica its slice of
        streams / R rows (identity without a strategy)."""
        if self.strategy is None:
            return value
        size = streams // self.count

        def part(context):
            r = context.replica_id_in_sync_group
            return tf.nest.map_structure(lambda v: v[r * size : (r + 1) * size], value)

        return self.strategy.experimental_distribute_values_from_function(part)

    def gather(self, value):
        """`split`'s inverse: a nest of per-replica tensors -> (streams, ...) tensors, in the
        global batch's stream order (a collective: every worker calls it together)."""
        if self.strategy is None:
            return value
        return self._gather(value)

    @tf.function
    def _gather(self, value):
        assert self.strategy is not None
        return tf.nest.map_structure(lambda v: self.strategy.gather(v, axis=0), value)

    def divides(self, streams: int) -> bool:
        """Whether a layout of `streams` streams splits evenly across the replicas."""
        return streams % self.count == 0

    def agree(self, *values: float) -> list[float]:
        """`values` as every worker of a cluster sees them: their means over the replicas
        (one small collective); as they are without a multi-worker strategy. Each worker
        reads its own clock and signals: they take the same learning rate and stop at the
        same step only on values they agree on."""
        if not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return list(values)
        local = tf.constant(values, tf.float32)
        spread = self.strategy.experimental_distribute_values_from_function(lambda _: local)
        mean = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, spread, axis=None)
        return [float(v) for v in mean.numpy()]

    @contextlib.contextmanager
    def stop_on_lost_worker(self):
        """Inside, under a multi-worker strategy, a failed collective (a worker killed or not
        answering for COLLECTIVE_TIMEOUT_S) becomes one CharlstmError line."""
        if not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            yield
            return
        try:
            yield
        except tf.errors.OpError as err:
            raise CharlstmError(
                f"a worker of the cluster was lost or stopped answering ({type(err).__name__}); "
                "the job stops; `--resume` on the same cluster continues from the last "
                "complete checkpoint"
            ) from err

    def train_step(
        self,
        model,
        optimizer: keras.optimizers.Optimizer,
        gradients: Callable,
        grad_clip: float,
    ) -> Callable:
        """(x, y (B, T) int32, per-replica states) -> (loss, per-replica states): one step of
        the module docstring. `gradients(x, y, states) -> (loss, gradients, states)` is the
        forward and backward half (`steps.loss_and_gradients`); `optimizer` must not clip
        (the mean gradient is clipped here)."""
        strategy, count = self.strategy, self.count
        assert strategy is not None
        variables = model.trainable_variables
        # the fused forward and backward, per replica, compiled as on one device
        compiled = precision.compile_step(gradients, model)

        def replica(x, y, states):
            value, g, states = compiled(x, y, states)
            context = tf.distribute.get_replica_context()
            g = context.all_reduce(tf.distribute.ReduceOp.SUM, [t / count for t in g])
            g, _ = tf.clip_by_global_norm(g, grad_clip)
            # Keras' optimizer sums the replicas' gradients once more (it clips before its
            # own sum, so the clipping is done here, on the mean): each hands in g / R
            optimizer.apply_gradients(zip([t / count for t in g], variables))
            return value, states

        @tf.function
        def run(x, y, states):
            value, states = strategy.run(replica, args=(x, y, states))
            return strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None), states

        return lambda x, y, states: run(*self._inputs(x, y), states)

    def eval_step(self, compiled: Callable) -> Callable:
        """(x, y (S, T), per-replica states) -> (nll summed over every replica, states), for a
        layout whose S streams `divides`; `compiled` is one device's (`evaluate.make_eval_step`),
        run on each replica's share."""
        strategy = self.strategy
        assert strategy is not None

        def replica(x, y, states):  # a Python function: it runs under each replica's device
            return compiled(x, y, states)

        @tf.function
        def run(x, y, states):
            nll, states = strategy.run(replica, args=(x, y, states))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, nll, axis=None), states

        return lambda x, y, states: run(*self._inputs(x, y), states)

    def _inputs(self, x, y):
        """One window's (x, y) cut across the replicas."""
        return self.split((x, y), int(x.shape[0]))
