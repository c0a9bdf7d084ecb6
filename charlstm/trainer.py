"""Truncated BPTT training: carry state across windows, validate, checkpoint, resume.

    text -> CharTokenizer -> ids -> train | val | test -> B streams in windows of T
    for each epoch: states = 0
        for each window k: loss, states = step(x_k, y_k, states)   # gradient stops at the edge
        every eval_every steps and at the epoch's end: validation loss, log, checkpoint

Adam (AdamW with weight_decay) with global gradient-norm clipping; the learning rate of each
step comes from `charlstm.schedule`, planned against the run's epochs or minutes, and is set
before the step. Validation during training scores a fixed head of the validation part
(eval_chars), the pass at the end all of it; early_stop ends a run whose validation stalls.
`train` knows nothing of the terminal: it reports StepEvent and EvalEvent objects to a callback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import math
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import keras
import numpy as np
import tensorflow as tf

from charlstm import precision
from charlstm.config import RunConfig, SamplingConfig, TrainConfig
from charlstm.corpus import corpus_key, large_file, load_corpus
from charlstm.data import Splits, Windows, split_ids, tbptt_windows
from charlstm.distribute import Replicas, make_strategy
from charlstm.download import cache_dir
from charlstm.errors import CharlstmError
from charlstm.evaluate import Loss, eval_windows, evaluate_windows, make_eval_step, nll_sum, walk
from charlstm.idfile import encode_file
from charlstm.model import CharModel, States, build_model, check_fits
from charlstm.rundir import (
    CONFIG,
    Checkpoint,
    RunDir,
    assign_tensors,
    copy_for_resume,
    run_lock,
    variables_by_path,
)
from charlstm.sample import Sampler
from charlstm.schedule import learning_rate, progress
from charlstm.tokenizer import CharTokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartEvent:
    """Once the run directory is ready, before the first step."""

    run_dir: Path
    corpus: str  # Corpus.description
    parameters: int
    resumed_step: int | None  # the checkpoint's step when resuming
    config: RunConfig  # every choice the run trains with


@dataclass(frozen=True)
class EncodeEvent:
    """While a large corpus file is hashed ("hash"), then encoded ("encode"): bytes done of
    total (`charlstm.idfile`)."""

    phase: str
    done: int
    total: int


@dataclass(frozen=True)
class StepEvent:
    """After each training step. loss: nats/char of that window."""

    step: int
    epoch: int
    window: int
    windows_per_epoch: int
    loss: float
    chars_per_sec: float
    elapsed_s: float


@dataclass(frozen=True)
class EvalEvent:
    """After each validation pass; `record` is the line written to log.jsonl."""

    record: dict
    is_best: bool


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path  # `out`, also for a worker that trained in a temporary folder
    step: int
    best_val: float | None  # nats/char
    stopped_by: str  # "epochs", "minutes", "early-stop" or "interrupt"


Event = EncodeEvent | StartEvent | StepEvent | EvalEvent
Callback = Callable[[Event], None]


def prepare_data(
    corpus_text: str, starts, tokenizer: CharTokenizer, config: RunConfig, val_text=None
):
    """Encode, split and lay out a corpus held as text: `lay_out` of its ids (and of
    `val_text`'s, config.val_file's text)."""
    val_ids = tokenizer.encode(val_text) if val_text is not None else None
    return lay_out(tokenizer.encode(corpus_text), starts, config, val_ids)


def lay_out(ids: np.ndarray, starts, config: RunConfig, val_ids: np.ndarray | None = None):
    """Split a corpus' ids and lay them out: (Splits, train Windows, validation Windows). With
    `val_ids` (config.val_file's), that is the validation part, and the corpus is cut into
    train and test parts only. ids may be a memory map: the parts and windows are views.

    Raises:
        CharlstmError: the training part holds less than one B x T window, or the validation
            part is empty.
    """
    settings = config.train
    starts = tuple(starts) if settings.split == "files" else (0,)
    if val_ids is None:
        splits = split_ids(ids, settings.val_fraction, settings.test_fraction, starts)
    elif settings.test_fraction == 0:
        splits = Splits(train=ids, val=val_ids, test=ids[:0])
    else:  # train | test, cut as train | val would be
        parts = split_ids(ids, settings.test_fraction, 0.0, starts)
        splits = Splits(train=parts.train, val=val_ids, test=parts.val)
    train = tbptt_windows(splits.train, settings.batch_size, settings.seq_len, whole=True)
    if len(splits.val) < 2:
        raise CharlstmError(
            f"text too short: the validation part has {len(splits.val)} characters; give more text"
        )
    return splits, train, eval_windows(splits.val, settings.batch_size, settings.seq_len)


@dataclasses.dataclass(frozen=True)
class _Encoded:
    """A run's corpus as ids: a description for the log, ids (N,) (a memory map for a large
    file), document starts, the tokenizer, and config.val_file's ids (None without one)."""

    description: str
    ids: np.ndarray
    starts: tuple[int, ...]
    tokenizer: CharTokenizer
    val_ids: np.ndarray | None


def _encoded(config: RunConfig, tokenizer: CharTokenizer | None = None, report=None):
    """The run's corpus (and val_file) as ids, with `tokenizer` or one built from the corpus.
    A single file of STREAM_BYTES or more is encoded by `idfile.encode_file`, streaming, into
    the cache folder's ids/ (and mapped from there the next time); any other corpus is read
    whole. `report`: encode_file's progress callback."""
    path = large_file(config.corpus)
    starts: tuple[int, ...]
    if path is not None:
        found = encode_file(path, cache_dir() / "ids", config.encoding, config.errors,
                            tokenizer, report)  # fmt: skip
        ids, starts, tokenizer = found.ids, (0,), found.tokenizer
        description = f"{config.corpus} ({len(ids):,} characters, ids mapped from {found.path})"
    else:
        corpus = load_corpus(config.corpus, config.encoding, config.errors)
        tokenizer = tokenizer or CharTokenizer.build(corpus.text)
        ids, starts, description = tokenizer.encode(corpus.text), corpus.starts, corpus.description
    val_ids = None
    if config.val_file:
        val_ids = tokenizer.encode(
            load_corpus(config.val_file, config.encoding, config.errors).text
        )
    return _Encoded(description, ids, starts, tokenizer, val_ids)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during training: a checkpoint of step `step` was saved first."""

    def __init__(self, run_dir: Path, step: int):
        super().__init__(f"interrupted at step {step}")
        self.run_dir, self.step = run_dir, step


def train(
    out: str | Path,
    config: RunConfig | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    epochs: int | None = None,
    minutes: float | None = None,
    strategy: str | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Train a model into run directory `out`, or continue the run there.

    While it runs, `out` holds a lock file with this process' id, so a second writer is
    refused. Ctrl-C saves a checkpoint and raises TrainingInterrupted.

    Args:
        out: the run directory.
        config: the run to start. config.corpus is a text file's path or a corpus name
            (`charlstm.corpus.catalogue`; "" for the default, tinyshakespeare);
            model.vocab_size is set from the corpus.
        resume: continue the run in `out` from its newest complete checkpoint, under its own
            config.json (`config` is then ignored); if `out` holds no run yet, start one.
        force: start afresh in `out` even if it holds a run or other files.
        epochs, minutes: with resume, a new epoch limit, or minutes more for this session
            (the run's budget becomes the time spent so far plus `minutes`).
        strategy: with resume, where the run goes on (TrainConfig.strategy).
        callback: receives EncodeEvents while a large corpus file is encoded, a StartEvent,
            then StepEvent and EvalEvent objects.

    Under a multi-worker strategy only the chief writes `out`; every other worker trains in a
    temporary folder (a copy of `out` when resuming), removed at the end.

    Raises:
        CharlstmError: bad corpus, too little text, an occupied or locked `out`, a NaN loss,
            a lost worker.
        TrainingInterrupted: on SIGINT, after saving a checkpoint.
    """
    out = Path(out)
    callback = callback or (lambda event: None)
    if resume and (out / CONFIG).exists():
        saved = RunDir.open(out).config
        name = strategy or saved.train.strategy
        replicas = Replicas(make_strategy(name), saved.train.batch_size)
        with _home(out, replicas.chief, copy=True) as home, run_lock(home):
            run = RunDir.open(home)
            result = _resume(run, replicas, epochs, minutes, strategy, callback)
        return dataclasses.replace(result, run_dir=out)  # the chief's, where the run is
    config = config or RunConfig()
    data = _encoded(config, report=_encode_progress(callback))
    if data.tokenizer.vocab_size < 3:
        raise CharlstmError(
            f"{config.corpus or 'the corpus'}: the text has only one distinct character; "
            "there is nothing to learn"
        )
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, vocab_size=data.tokenizer.vocab_size),
        corpus=corpus_key(config.corpus),
        val_file=corpus_key(config.val_file) if config.val_file else "",
    )
    # check the model and lay the data out before touching `out`: bad input leaves it as it was
    check_fits(config.model, config.train.batch_size, config.train.seq_len, training=True)
    _, train_w, val_w = lay_out(data.ids, data.starts, config, data.val_ids)
    replicas = Replicas(make_strategy(config.train.strategy), config.train.batch_size)
    with _home(out, replicas.chief) as home, run_lock(home):
        run = RunDir.create(home, config, data.tokenizer, force=force)
        trainer = _Trainer(run, config, train_w, val_w, callback, replicas)
        with _write_errors(run), replicas.stop_on_lost_worker():
            result = trainer.fit(resume=False, corpus=data.description)
    return dataclasses.replace(result, run_dir=out)  # the chief's, where the run is


@contextlib.contextmanager
def _home(out: Path, chief: bool, copy: bool = False) -> Iterator[Path]:
    """Where this process writes the run: `out` for the chief (every process but the
    non-chief workers of a multi-worker strategy); else a temporary folder, removed after,
    holding with `copy` what resuming `out` needs (`copy_for_resume`: the chief may be
    rewriting `out` meanwhile)."""
    if chief:
        yield out
        return
    with tempfile.TemporaryDirectory(prefix="charlstm-worker-") as folder:
        home = Path(folder) / "run"
        if copy:
            copy_for_resume(out, home)
        yield home


def _resume(
    run: RunDir,
    replicas: Replicas,
    epochs: int | None,
    minutes: float | None,
    strategy: str | None,
    callback: Callback,
):
    """`train` with resume=True on a run that has started: its own config and corpus, with a
    new epoch limit, time budget or strategy if given."""
    config = run.config
    check_fits(config.model, config.train.batch_size, config.train.seq_len, training=True)
    given = (("epochs", epochs), ("minutes", minutes), ("strategy", strategy))
    overrides: dict = {k: v for k, v in given if v}
    if minutes and run.checkpoints():
        spent = float(run.latest_checkpoint().progress.get("elapsed_s", 0.0))
        overrides["minutes"] = spent / 60 + minutes
    with _write_errors(run):
        if overrides:
            config = dataclasses.replace(
                config, train=dataclasses.replace(config.train, **overrides)
            )
            run.save_config(config)
        data = _encoded(config, run.tokenizer, _encode_progress(callback))
        _, train_w, val_w = lay_out(data.ids, data.starts, config, data.val_ids)
        trainer = _Trainer(run, config, train_w, val_w, callback, replicas)
        with replicas.stop_on_lost_worker():
            return trainer.fit(resume=True, corpus=data.description)


def _encode_progress(callback: Callback):
    """encode_file's progress as EncodeEvents for the callback."""
    return lambda phase, done, total: callback(EncodeEvent(phase, done, total))


@contextlib.contextmanager
def _write_errors(run: RunDir):
    """A failed write in the run (a full disk, say) becomes one line naming the checkpoint
    that is left in use."""
    try:
        yield
    except OSError as err:
        raise CharlstmError(f"cannot write in {run.path} ({err.strerror}); {run.intact()}") from err


@contextlib.contextmanager
def _sigint_requests_stop():
    """While inside, the first SIGINT sets `flag["stop"]`; a second one interrupts at once."""
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be set from the main thread
        return

    def handler(signum, frame):
        flag["stop"] = True
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def mean_nll(model, x, y, states):
    """Mean -ln p(next char) over a window, nats/char, and the states after it."""
    nll, states = nll_sum(model, x, y, states, training=True)
    return nll / tf.cast(tf.size(y), tf.float32), states


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

    return precision.compile_step(train_step, model.matmul_dtype)


def loss_and_gradients(model: CharModel, loss: Callable = mean_nll) -> Callable:
    """(x, y, states) -> (loss, its gradients for model.trainable_variables, states after):
    the forward and backward half of a train step, which `make_train_step` and
    `distribute.Replicas.train_step` (per replica) complete with the optimizer's update."""

    def gradients(x, y, states):
        with tf.GradientTape() as tape:
            value, states = loss(model, x, y, states)
        return value, tape.gradient(value, model.trainable_variables), states

    return gradients


def make_optimizer(config: TrainConfig, clip: bool = True) -> keras.optimizers.Optimizer:
    """Adam with global-norm clipping, or AdamW when config.weight_decay > 0 (decoupled decay,
    w -= lr * weight_decay * w, on kernels and embeddings, not on biases or normalization
    gains and offsets). Its learning rate is a variable: the trainer sets it before each step
    (`charlstm.schedule`); it starts at the first step's. With config.ema > 0 it also keeps
    a <- ema * a + (1 - ema) * w for every trainable w after each step (a = w at the first).
    clip=False leaves clipping to the caller (`distribute.Replicas` clips the reduced mean)."""
    first = learning_rate(config, 0)
    # config.ema: Keras' own moving average, updated inside apply_gradients (`averaged`)
    common = {"global_clipnorm": config.grad_clip if clip else None, "use_ema": config.ema > 0}
    common |= {"ema_momentum": config.ema} if config.ema else {}
    if config.weight_decay == 0:
        return keras.optimizers.Adam(first, **common)
    optimizer = keras.optimizers.AdamW(first, weight_decay=config.weight_decay, **common)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


SAMPLE_TEMPERATURE = 0.8
SAMPLE_PRIME_CHARS = 40


def sample_prime(tokenizer: CharTokenizer, val_w: Windows) -> str:
    """The prime of the samples shown during training: the validation part's first
    SAMPLE_PRIME_CHARS characters, cut after their last newline if they have one."""
    text = tokenizer.decode(val_w.inputs[0, :SAMPLE_PRIME_CHARS])
    return text[: text.rfind("\n") + 1] or text


class _Trainer:
    """The model, optimizer and data of one run, and the loop over them."""

    def __init__(
        self,
        run: RunDir,
        config: RunConfig,
        train_w: Windows,
        val_w: Windows,
        callback,
        replicas: Replicas | None = None,
    ):
        self.run, self.config, self.callback = run, config, callback
        self.train_w, self.val_w = train_w, val_w
        self.val_head = val_w.head(config.train.eval_chars)  # scored during training
        settings = config.train
        self.replicas = replicas = replicas or Replicas(None, settings.batch_size)
        keras.utils.set_random_seed(settings.seed)
        dtype = precision.resolve(config.precision, config.model.cell)
        with replicas.scope():
            self.model = build_model(config.model, matmul_dtype=dtype)
            self.optimizer = make_optimizer(settings, clip=replicas.strategy is None)
            self.optimizer.build(self.model.trainable_variables)
        replicas.decorrelate(self.model)
        self.eval_step = make_eval_step(self.model)  # on one device (this process' first)
        self.replica_eval_step: Callable | None = None  # across the replicas
        if replicas.strategy is None:
            self.train_step = make_train_step(self.model, self.optimizer)
        else:
            self.train_step = replicas.train_step(
                self.model, self.optimizer, loss_and_gradients(self.model), settings.grad_clip
            )
            self.replica_eval_step = replicas.eval_step(self.eval_step)
        # samples are the chief's: the other workers' logs are thrown away
        sampled = settings.sample_chars and replicas.chief
        self.sampler = Sampler(self.model, run.tokenizer) if sampled else None
        self.prime = sample_prime(run.tokenizer, val_w)
        self.summaries = (
            tf.summary.create_file_writer(str(run.tensorboard_dir()))
            if settings.tensorboard
            else None
        )
        # the TBPTT states travel as values; these hold them only for checkpoints
        self.carry = [
            [keras.Variable(s, trainable=False, name=f"carry_{i}_{j}") for j, s in enumerate(layer)]
            for i, layer in enumerate(self.model.zero_states(train_w.inputs.shape[0]))
        ]
        self.best_val: float | None = None
        self.best_step: int | None = None
        # validation passes since the best one, and since the best or the last cut (plateau)
        self.since_best, self.stale, self.cuts = 0, 0, 0
        self.step = 0  # steps taken, in all sessions
        self.elapsed_before, self.start = 0.0, time.monotonic()

    def train_state(self) -> dict[str, keras.Variable]:
        """What a checkpoint holds beyond the weights, by name: Adam's moments and step, the
        carried (h, c) of every layer and the dropout RNG state. (The learning rate is not
        state: each step's follows from the schedule.)"""
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
        if self.config.train.ema:  # the model's weights are saved averaged: keep the raw ones
            names |= {f"raw/{k}": v for k, v in variables_by_path(self.model.weights).items()}
        return names

    @contextlib.contextmanager
    def averaged(self):
        """Inside, the model holds the moving averages of its trainable weights (with
        TrainConfig.ema; otherwise nothing changes); after, its raw weights again."""
        if not self.config.train.ema:
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

    def _save(self, step: int, position: tuple[int, int], states: States) -> None:
        """Checkpoint `step`; training continues at `position`, (epoch, window). `states`:
        the replicas' carried states, gathered here into the global batch's order."""
        states = self.replicas.gather(states)
        for variables, values in zip(self.carry, states):
            for v, value in zip(variables, values):
                v.assign(value)
        epoch, window = position
        with self.averaged():  # what generate and evaluate load
            weights = _values(variables_by_path(self.model.weights))
        progress = {
            "epoch": epoch,
            "window": window,
            "best_val": self.best_val,
            "best_step": self.best_step,
            "since_best": self.since_best,
            "stale": self.stale,
            "lr_cuts": self.cuts,
            "elapsed_s": self._elapsed(),
        }
        self.run.write_checkpoint(
            step,
            weights,
            _values(self.train_state()),
            progress,
            keep=self.config.train.keep_checkpoints,
        )

    def _restore(self, ckpt: Checkpoint) -> tuple[tuple[int, int], States]:
        """Load checkpoint `ckpt`: its (epoch, window) position and carried states."""
        assign_tensors(variables_by_path(self.model.weights), ckpt.model_tensors(), str(ckpt.path))
        assign_tensors(self.train_state(), ckpt.train_state_tensors(), str(ckpt.path))
        self.replicas.decorrelate(self.model)  # the checkpoint has replica 0's RNG state
        p = ckpt.progress
        self.best_val, self.best_step = p.get("best_val"), p.get("best_step")
        self.since_best, self.stale = int(p.get("since_best", 0)), int(p.get("stale", 0))
        self.cuts = int(p.get("lr_cuts", 0))
        self.elapsed_before = float(p.get("elapsed_s", 0.0))
        states = [[tf.convert_to_tensor(v) for v in layer] for layer in self.carry]
        return (int(p["epoch"]), int(p["window"])), states

    # the loop

    def _steps(self, position: tuple[int, int], carried: States | None):
        """Train from `position` (epoch, window) to the last epoch's end, one window a step.

        Each epoch starts from zero state (a resumed one from `carried`); within it `walk`
        carries the states from window to window. Yields (epoch, window, loss, states after).
        """
        first_epoch, window = position
        epochs = self.config.train.epochs
        streams = self.train_w.inputs.shape[0]
        for epoch in range(first_epoch, epochs) if epochs else itertools.count(first_epoch):
            if window == 0 or carried is None:
                carried = self.model.zero_states(streams)
            carried = self.replicas.split(carried, streams)  # each replica its own streams
            for k, loss, after in walk(self.train_w, self._scheduled(epoch), carried, window):
                yield epoch, k, loss, after
            window = 0

    def _scheduled(self, epoch: int) -> Callable:
        """The train step of `epoch`, after setting the learning rate of the step it takes."""
        settings = self.config.train

        def step(x, y, states):
            # every worker of a cluster sets the same rate: the time is agreed on
            (elapsed,) = self.replicas.agree(self._elapsed())
            p = progress(settings, self.step, len(self.train_w), elapsed)
            self.optimizer.learning_rate.assign(
                learning_rate(settings, self.step, epoch, p, self.cuts)
            )
            return self.train_step(x, y, states)

        return step

    def fit(self, resume: bool, corpus: str) -> TrainResult:
        """Train until the epochs or the minutes run out, or SIGINT (TrainingInterrupted).

        Per step, one decision: evaluate (every eval_every steps, at each epoch's end, when
        time is up), stop (time is up, or SIGINT), save (after each evaluation). Whatever
        stopped the loop, the last step is saved after it.
        """
        settings = self.config.train
        position, carried, resumed_step = (0, 0), None, None
        if resume and self.run.checkpoints():
            ckpt = self.run.latest_checkpoint()
            position, carried = self._restore(ckpt)
            self.run.truncate_log(ckpt.step)
            resumed_step = ckpt.step
        self.callback(
            StartEvent(self.run.path, corpus, self.model.count_params(), resumed_step, self.config)
        )
        self.start = time.monotonic()
        # the budget is the whole run's: sessions before this one used some of it
        left = settings.minutes * 60 - self.elapsed_before if settings.minutes else math.inf
        deadline = self.start + left
        step = saved_at = self.step = int(self.optimizer.iterations.numpy())
        stopped_by = "epochs" if left > 0 else "minutes"
        chars = self.train_w.inputs.shape[0] * self.train_w.seq_len
        losses: list[float] = []  # training losses since the last evaluation
        speeds: list[float] = []  # and chars/s
        tick = time.monotonic()
        steps = self._steps(position, carried) if left > 0 else iter(())
        with _sigint_requests_stop() as interrupt:
            for epoch, k, loss, states in steps:
                step, loss = step + 1, float(loss)
                self.step = step
                if not math.isfinite(loss):
                    raise CharlstmError(
                        f"training loss became {loss} at step {step}; the last good checkpoint "
                        "is kept; resume or restart with a lower --learning-rate"
                    )
                losses.append(loss)
                now = time.monotonic()
                speeds.append(chars / max(now - tick, 1e-9))
                self.callback(
                    StepEvent(
                        step, epoch, k, len(self.train_w), loss, speeds[-1], self._elapsed()
                    )
                )  # fmt: skip
                epoch_done = k == len(self.train_w) - 1
                position = (epoch + 1, 0) if epoch_done else (epoch, k + 1)
                # a cluster's workers stop together, at the step any of them stops at
                interrupted, late = self.replicas.agree(interrupt["stop"], now >= deadline)
                if interrupted:
                    stopped_by = "interrupt"
                elif late:
                    stopped_by = "minutes"
                last = stopped_by == "minutes" or (epoch_done and epoch + 1 == settings.epochs)
                if step % settings.eval_every == 0 or epoch_done or last:
                    if self._evaluate(step, position[0], losses, speeds, last) and not last:
                        stopped_by = "early-stop"
                    losses, speeds = [], []
                    if stopped_by == "epochs":  # a stopping run saves once, after the loop
                        self._save(step, position, states)
                        saved_at = step
                if stopped_by != "epochs":
                    break
                tick = time.monotonic()  # validation and saving are not training time
        if saved_at != step:
            self._save(step, position, states)
        if stopped_by == "interrupt":
            raise TrainingInterrupted(self.run.path, step)
        return TrainResult(self.run.path, step, self.best_val, stopped_by)

    def _summarize(self, record: dict) -> None:
        """One validation record as TensorBoard scalars (and the sample as text) at its step."""
        scalars = {
            "loss/train": record["train_loss"],
            "loss/validation": record["val_loss"],
            "loss/validation_all": record.get("val_loss_all"),
            "loss/validation_raw": record.get("val_loss_raw"),
            "bits_per_char/validation": record["val_bits_per_char"],
            "learning_rate": record["learning_rate"],
            "chars_per_sec": record["chars_per_sec"],
        }
        writer = self.summaries
        if writer is None:
            return
        with writer.as_default(step=record["step"]):
            for name, value in scalars.items():
                if value is not None:
                    tf.summary.scalar(name, value)
            if "sample" in record:
                tf.summary.text("sample", record["sample"])
        writer.flush()

    def _elapsed(self) -> float:
        """Training time of the whole run, sessions before this one included."""
        return self.elapsed_before + time.monotonic() - self.start

    def _score(self, windows: Windows) -> Loss:
        """The model's loss on `windows`: split across the replicas when their streams
        divide evenly (the replicas' sums added), else on this process' first replica."""
        streams = windows.inputs.shape[0]
        if self.replica_eval_step is None or not self.replicas.divides(streams):
            return evaluate_windows(self.model, windows, self.eval_step)
        zeros = self.replicas.split(self.model.zero_states(streams), streams)
        return evaluate_windows(self.model, windows, self.replica_eval_step, states=zeros)

    def _evaluate(
        self, step: int, epoch: int, train_losses: list[float], speeds: list[float], last: bool
    ) -> bool:
        """Validation loss at `step` on the validation head (and, if `last`, on the whole
        validation part too) and a sample, logged (before the checkpoint that follows: a crash
        between the two leaves a record that resume drops and redoes, while the other order
        could leave a checkpoint whose record is never written) and written to TensorBoard.
        Counts stalls for the plateau schedule and early stopping; returns True when early
        stopping says stop. With TrainConfig.ema the scores and the sample are the averaged
        weights', and the raw weights' score of the head is logged as val_loss_raw."""
        # weights can turn NaN in a step whose loss (computed before the update) was finite
        self.run.check_finite(_values(variables_by_path(self.model.weights)), step)
        settings = self.config.train
        raw: Loss | None = None
        if settings.ema:  # what the average buys, in the log
            raw = self._score(self.val_head)
        with self.averaged():
            val: Loss = self._score(self.val_head)
            whole = sample = None
            if last and self.val_head is not self.val_w:
                whole = self._score(self.val_w)
            if self.sampler is not None:
                sampling = SamplingConfig(temperature=SAMPLE_TEMPERATURE, seed=settings.seed)
                pieces = self.sampler.generate(self.prime, settings.sample_chars, sampling)
                sample = self.prime + "".join(cast(Iterator[str], pieces))
        is_best = self.best_val is None or val.nats < self.best_val
        if is_best:
            self.best_val, self.best_step = val.nats, step
            self.since_best = self.stale = 0
        else:
            self.since_best, self.stale = self.since_best + 1, self.stale + 1
        if settings.schedule == "plateau" and self.stale >= settings.plateau_patience:
            self.cuts, self.stale = self.cuts + 1, 0
        record: dict[str, Any] = {
            "step": step,
            "epoch": epoch,
            "train_loss": float(np.mean(train_losses)) if train_losses else None,
            "val_loss": val.nats,
            "val_bits_per_char": val.bits,
            "val_chars": val.chars,
            "learning_rate": float(self.optimizer.learning_rate.numpy()),  # of the last step
            "chars_per_sec": float(np.median(speeds)) if speeds else None,
            "elapsed_s": round(self._elapsed(), 3),
        }
        if raw is not None:
            record["val_loss_raw"] = raw.nats  # the raw weights' (val_loss: the average's)
        if whole is not None:
            record |= {"val_loss_all": whole.nats, "val_chars_all": whole.chars}
        if sample is not None:
            record["sample"] = sample
        self.run.append_log(record)
        if self.summaries is not None:
            self._summarize(record)
        self.callback(EvalEvent(record, is_best))
        return bool(settings.early_stop) and self.since_best >= settings.early_stop


def _values(variables: dict) -> dict[str, np.ndarray]:
    """name -> variable to name -> its value, as safetensors writes it."""
    return {name: np.asarray(v.numpy()) for name, v in variables.items()}
