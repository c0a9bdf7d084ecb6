"""Truncated BPTT training: carry state across windows, validate, checkpoint, resume.

    text -> CharTokenizer -> ids -> train | val | test -> B streams in windows of T
    for each epoch: states = 0
        for each window k: loss, states = step(x_k, y_k, states)   # gradient stops at the edge
        every eval_every steps and at the epoch's end: validation loss, log, checkpoint

Adam with global gradient-norm clipping; the learning rate is multiplied by lr_decay at every
epoch (a function of the optimizer's step count, so it resumes exactly). `train` knows nothing
of the terminal: it reports StepEvent and EvalEvent objects to a callback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from charlstm.config import RunConfig, TrainConfig
from charlstm.corpus import load_corpus
from charlstm.data import Windows, split_ids, tbptt_windows
from charlstm.errors import CharlstmError
from charlstm.evaluate import Loss, eval_windows, evaluate_windows, make_eval_step, nll_sum, walk
from charlstm.model import CharLSTM, States, build_model
from charlstm.rundir import CONFIG, Checkpoint, RunDir, assign_tensors, run_lock
from charlstm.tokenizer import CharTokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartEvent:
    """Once the run directory is ready, before the first step."""

    run_dir: Path
    corpus: str  # Corpus.description
    parameters: int
    resumed_step: int | None  # the checkpoint's step when resuming


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
    run_dir: Path
    step: int
    best_val: float | None  # nats/char
    stopped_by: str  # "epochs" or "minutes"


Callback = Callable[[object], None]


def prepare_data(corpus_text: str, starts, tokenizer: CharTokenizer, config: RunConfig):
    """Encode, split and lay out a corpus: (Splits, train Windows, validation Windows).

    Raises:
        CharlstmError: the training part holds less than one B x T window, or the validation
            part is empty.
    """
    ids = tokenizer.encode(corpus_text)
    t = config.train
    splits = split_ids(ids, t.val_fraction, t.test_fraction, tuple(starts))
    train = tbptt_windows(splits.train, t.batch_size, t.seq_len, whole=True)
    if len(splits.val) < 2:
        raise CharlstmError(
            f"text too short: the validation part has {len(splits.val)} characters; give more text"
        )
    return splits, train, eval_windows(splits.val, t.batch_size, t.seq_len)


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
    callback: Callback | None = None,
) -> TrainResult:
    """Train a model into run directory `out`, or continue the run there.

    While it runs, `out` holds a lock file with this process' id, so a second writer is
    refused. Ctrl-C saves a checkpoint and raises TrainingInterrupted.

    Args:
        out: the run directory.
        config: the run to start. config.corpus is a text file's path, or "" / "default" for
            the default corpus; model.vocab_size is set from the corpus.
        resume: continue the run in `out` from its newest complete checkpoint, under its own
            config.json (`config` is then ignored); if `out` holds no run yet, start one.
        force: start afresh in `out` even if it holds a run or other files.
        epochs, minutes: with resume, a new epoch limit or a time budget for this session.
        callback: receives a StartEvent, then StepEvent and EvalEvent objects.

    Raises:
        CharlstmError: bad corpus, too little text, an occupied or locked `out`, a NaN loss.
        TrainingInterrupted: on SIGINT, after saving a checkpoint.
    """
    out = Path(out)
    callback = callback or (lambda event: None)
    if resume and (out / CONFIG).exists():
        with run_lock(out):
            run = RunDir.open(out)
            config = run.config
            overrides = {k: v for k, v in (("epochs", epochs), ("minutes", minutes)) if v}
            if overrides:
                config = dataclasses.replace(
                    config, train=dataclasses.replace(config.train, **overrides)
                )
                run.save_config(config)
            corpus = load_corpus(config.corpus, config.encoding, config.errors)
            _, train_w, val_w = prepare_data(corpus.text, corpus.starts, run.tokenizer, config)
            trainer = _Trainer(run, config, train_w, val_w, callback)
            return trainer.run(resume=True, corpus=corpus.description)
    config = config or RunConfig()
    corpus = load_corpus(config.corpus, config.encoding, config.errors)
    tokenizer = CharTokenizer.build(corpus.text)
    if tokenizer.vocab_size < 3:
        raise CharlstmError(
            f"{corpus.name}: the text has only one distinct character; there is nothing to learn"
        )
    name = corpus.name if corpus.name == "default" else str(Path(corpus.name).resolve())
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, vocab_size=tokenizer.vocab_size),
        corpus=name,
    )
    # lay the data out before touching `out`, so bad input leaves it as it was
    _, train_w, val_w = prepare_data(corpus.text, corpus.starts, tokenizer, config)
    with run_lock(out):
        run = RunDir.create(out, config, tokenizer, force=force)
        trainer = _Trainer(run, config, train_w, val_w, callback)
        return trainer.run(resume=False, corpus=corpus.description)


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
    model: CharLSTM, optimizer: keras.optimizers.Optimizer, loss: Callable = mean_nll
) -> Callable:
    """One compiled TBPTT step: (x, y (B, T) int32, states) -> (loss, states after).

    The whole step (forward, backward through time, Adam) is one XLA computation. The states
    come out as values, so the next window starts from them without a gradient path back.
    `loss(model, x, y, states) -> (scalar, states)` may be replaced, e.g. by a task that
    scores only the last character.
    """

    def train_step(x, y, states):
        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            value, states = loss(model, x, y, states)
        grads = tape.gradient(value, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return value, states

    return tf.function(train_step, jit_compile=True)


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam, global-norm clipping, learning rate x lr_decay once per epoch."""
    schedule = keras.optimizers.schedules.ExponentialDecay(
        config.learning_rate,
        decay_steps=steps_per_epoch,
        decay_rate=config.lr_decay,
        staircase=True,
    )
    return keras.optimizers.Adam(schedule, global_clipnorm=config.grad_clip)


class _Trainer:
    """The model, optimizer and data of one run, and the loop over them."""

    def __init__(self, run: RunDir, config: RunConfig, train_w: Windows, val_w: Windows, callback):
        self.run_dir, self.config, self.callback = run, config, callback
        self.train_w, self.val_w = train_w, val_w
        t = config.train
        keras.utils.set_random_seed(t.seed)
        self.model: CharLSTM = build_model(config.model)
        self.optimizer = make_optimizer(t, len(train_w))
        self.optimizer.build(self.model.trainable_variables)
        self.train_step = make_train_step(self.model, self.optimizer)
        self.eval_step = make_eval_step(self.model)
        self.best_val: float | None = None
        self.best_step: int | None = None
        self.elapsed_before = 0.0

    # the state a checkpoint holds beyond the weights

    def _optimizer_vars(self):
        """(name, variable) pairs, named by path without the optimizer's own uniquified name."""
        return [(v.path.split("/", 1)[-1], v) for v in self.optimizer.variables]

    def _rng_variables(self):
        return [v for v in self.model.variables if "seed_generator" in v.path]

    def _train_state(self, states: States) -> dict[str, np.ndarray]:
        tensors = {f"optimizer/{name}": np.asarray(v.numpy()) for name, v in self._optimizer_vars()}
        for i, (h, c) in enumerate(states):
            tensors[f"carry/{i}/h"], tensors[f"carry/{i}/c"] = np.asarray(h), np.asarray(c)
        for i, v in enumerate(self._rng_variables()):
            tensors[f"rng/{i}"] = np.asarray(v.numpy())
        return tensors

    def _restore(self, ckpt: Checkpoint) -> States:
        assign_tensors(self.model.weights, ckpt.model_tensors(), str(ckpt.path))
        tensors = ckpt.train_state_tensors()
        groups = {"optimizer": {}, "carry": {}, "rng": {}}
        for name, value in tensors.items():
            head, _, rest = name.partition("/")
            if head not in groups:
                raise CharlstmError(f"{ckpt.path}: unexpected tensor {name} in the training state")
            groups[head][rest] = value
        optimizer = dict(self._optimizer_vars())
        if set(optimizer) != set(groups["optimizer"]):
            raise CharlstmError(f"{ckpt.path}: the optimizer state does not match the model")
        assign_tensors(
            optimizer.values(),
            {optimizer[name].path: value for name, value in groups["optimizer"].items()},
            str(ckpt.path),
        )
        rng = self._rng_variables()
        assign_tensors(rng, {v.path: groups["rng"][str(i)] for i, v in enumerate(rng)}, "rng")
        states = self.model.zero_states(self.config.train.batch_size)
        for i, pair in enumerate(states):
            for j, key in enumerate("hc"):
                value = groups["carry"].get(f"{i}/{key}")
                if value is None or value.shape != tuple(pair[j].shape):
                    raise CharlstmError(f"{ckpt.path}: carried state {i}/{key} is missing or bad")
                pair[j] = tf.constant(value)
        p = ckpt.progress
        self.best_val, self.best_step = p.get("best_val"), p.get("best_step")
        self.elapsed_before = float(p.get("elapsed_s", 0.0))
        return states

    # the loop

    def run(self, resume: bool, corpus: str) -> TrainResult:
        t = self.config.train
        epoch, window, states, resumed_step = 0, 0, None, None
        if resume and self.run_dir.checkpoints():
            ckpt = self.run_dir.latest_checkpoint()
            states = self._restore(ckpt)
            epoch, window = int(ckpt.progress["epoch"]), int(ckpt.progress["window"])
            self.run_dir.truncate_log(ckpt.step)
            resumed_step = ckpt.step
        parameters = sum(int(np.prod(v.shape)) for v in self.model.trainable_variables)
        self.callback(StartEvent(self.run_dir.path, corpus, parameters, resumed_step))
        start = time.monotonic()
        deadline = start + t.minutes * 60 if t.minutes else math.inf
        step = int(self.optimizer.iterations.numpy())
        B, T = self.train_w.inputs.shape[0], self.train_w.seq_len
        stopped_by, saved_at = "epochs", resumed_step
        train_losses: list[float] = []
        with _sigint_requests_stop() as interrupt:
            while epoch < t.epochs and stopped_by == "epochs":
                if window == 0 or states is None:
                    states = self.model.zero_states(B)
                tick = time.monotonic()
                carried = states  # walk feeds each window the states the previous one returned
                for k, loss, states in walk(self.train_w, self.train_step, carried, start=window):
                    loss = float(loss)
                    step += 1
                    if not math.isfinite(loss):
                        raise CharlstmError(
                            f"training loss became {loss} at step {step}; the last good checkpoint "
                            "is kept; resume or restart with a lower --learning-rate"
                        )
                    train_losses.append(loss)
                    now = time.monotonic()
                    self.callback(
                        StepEvent(
                            step, epoch, k, len(self.train_w), loss,
                            B * T / max(now - tick, 1e-9), self._elapsed(start),
                        )
                    )  # fmt: skip
                    tick = now
                    epoch_done = k == len(self.train_w) - 1
                    out_of_time = now >= deadline
                    if step % t.eval_every == 0 or epoch_done or out_of_time:
                        next_epoch, next_window = (epoch + 1, 0) if epoch_done else (epoch, k + 1)
                        self._evaluate_and_save(
                            step, next_epoch, next_window, states, train_losses, start
                        )
                        train_losses, saved_at = [], step
                        tick = time.monotonic()  # validation time is not training time
                    if interrupt["stop"]:
                        if saved_at != step:
                            self._save(step, epoch, k + 1, states, start)
                        raise TrainingInterrupted(self.run_dir.path, step)
                    if out_of_time:
                        stopped_by = "minutes"
                        break
                else:
                    epoch, window = epoch + 1, 0
        if saved_at != step:  # e.g. resumed a finished run
            self._evaluate_and_save(step, epoch, window, states, train_losses, start)
        return TrainResult(self.run_dir.path, step, self.best_val, stopped_by)

    def _elapsed(self, start: float) -> float:
        return self.elapsed_before + time.monotonic() - start

    def _evaluate_and_save(self, step, epoch, window, states, train_losses, start) -> None:
        val: Loss = evaluate_windows(self.model, self.val_w, self.eval_step)
        is_best = self.best_val is None or val.nats < self.best_val
        if is_best:
            self.best_val, self.best_step = val.nats, step
        lr = float(self.optimizer.learning_rate.numpy())  # the schedule at the current step
        record = {
            "step": step,
            "epoch": epoch,
            "train_loss": float(np.mean(train_losses)) if train_losses else None,
            "val_loss": val.nats,
            "val_bits_per_char": val.bits,
            "learning_rate": lr,
            "elapsed_s": round(self._elapsed(start), 3),
        }
        # log first: a crash between the two leaves a record that resume drops and redoes,
        # while the other order could leave a checkpoint whose record is never written
        self.run_dir.append_log(record)
        self._save(step, epoch, window, states, start)
        self.callback(EvalEvent(record, is_best))

    def _save(self, step, epoch, window, states, start) -> None:
        """Checkpoint `step`; training continues at window `window` of epoch `epoch`."""
        progress = {
            "epoch": epoch,
            "window": window,
            "best_val": self.best_val,
            "best_step": self.best_step,
            "elapsed_s": self._elapsed(start),
        }
        self.run_dir.write_checkpoint(
            step,
            {v.path: np.asarray(v.numpy()) for v in self.model.weights},
            self._train_state(states),
            progress,
            keep=self.config.train.keep_checkpoints,
        )
