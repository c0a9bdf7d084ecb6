"""Truncated BPTT training: the loop that carries state across windows, validates and saves.

    for each epoch: states = 0
        for each window k: loss, states = step(x_k, y_k, states)   # gradient stops at the edge
        every eval_every steps and at the epoch's end: validation loss, log, checkpoint

The learning rate of each step comes from `charlstm.schedule`, planned against the run's epochs
or minutes, and is set before the step; the steps and the optimizer are `charlstm.steps`'.
Validation during training scores a fixed head of the validation part (eval_chars), the pass
at the end all of it; early_stop ends a run whose validation stalls. The data comes laid out
from `charlstm.dataset`, the run folder from `charlstm.rundir`. `train` knows nothing of the
terminal: it reports `charlstm.events` to a callback.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import keras
import numpy as np
import tensorflow as tf

from charlstm import allocator, events, kernel, precision
from charlstm.config import RunConfig, SamplingConfig
from charlstm.corpus import resolve
from charlstm.data import Windows
from charlstm.dataset import encode_corpus, lay_out
from charlstm.distribute import Replicas, make_strategy
from charlstm.errors import CharlstmError
from charlstm.evaluate import Loss, evaluate_windows
from charlstm.events import Callback, StopReason, TrainResult
from charlstm.finetune import Base
from charlstm.model import States, build_model, check_fits
from charlstm.records import LogRecord, Progress
from charlstm.rundir import CONFIG, Checkpoint, RunDir, run_lock, variables_by_path, worker_home
from charlstm.sample import Sampler
from charlstm.schedule import ValidationHistory, learning_rate, progress
from charlstm.steps import (
    loss_and_gradients,
    make_eval_step,
    make_optimizer,
    make_train_step,
    walk,
)
from charlstm.tokenizer import CharTokenizer
from charlstm.train_state import TrainState, values


def train(
    out: str | Path,
    config: RunConfig | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    epochs: int | None = None,
    minutes: float | None = None,
    strategy: str | None = None,
    kernel: str | None = None,
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
        epochs, minutes: with resume, a new epoch limit, or minutes more for this run
            (the run's budget becomes the time spent so far plus `minutes`).
        strategy: with resume, where the run goes on (TrainConfig.strategy).
        kernel: with resume, the loops it goes on with (RunConfig.kernel).
        callback: receives EncodeEvents while a large corpus file is encoded, a StartEvent,
            then StepEvent and EvalEvent objects (`charlstm.events`).

    Under a multi-worker strategy only the chief writes `out`; every other worker trains in a
    temporary folder (a copy of `out` when resuming), removed at the end. TensorFlow's pooling
    CPU allocator is asked for first (`charlstm.allocator`).

    Raises:
        CharlstmError: bad corpus, too little text, an occupied or locked `out`, a NaN loss,
            a lost worker.
        TrainingInterrupted: on SIGINT, after saving a checkpoint.
    """
    allocator.pool()  # before the run's first op, where this process has run none yet
    out = Path(out)
    report = callback or (lambda event: None)

    def encoding(phase: str, done: int, total: int) -> None:
        report(events.EncodeEvent(phase, done, total))

    resuming = resume and (out / CONFIG).exists()
    base: Base | None = None  # a fine-tuned run's, until its first checkpoint
    if resuming:
        config = RunDir.open(out).config
        check_fits(config.model, config.train.batch_size, config.train.seq_len, training=True)
    else:  # the corpus is read and laid out before `out` is touched: bad input leaves it be
        config = config or RunConfig()
        base = Base.read(config.init_from) if config.init_from else None
        data = encode_corpus(config, report=encoding, extend=base.tokenizer if base else None)
        config = _started(config, data.tokenizer, base)
        check_fits(config.model, config.train.batch_size, config.train.seq_len, training=True)
        laid = lay_out(data.ids, data.starts, config, data.val_ids)
    replicas = Replicas(make_strategy(strategy or config.train.strategy), config.train.batch_size)
    with worker_home(out, replicas.chief, copy=resuming) as home, run_lock(home):
        if resuming:
            run = RunDir.open(home)
            with run.writing():
                config = run.resume_config(epochs, minutes, strategy, kernel)
                data = encode_corpus(config, run.tokenizer, encoding)
                laid = lay_out(data.ids, data.starts, config, data.val_ids)
            if config.init_from and not run.checkpoints():
                base = _same_base(config)
        else:
            run = RunDir.create(home, config, data.tokenizer, force=force)
        with run.writing(), replicas.stop_on_lost_worker():
            trainer = Trainer(run, laid.train, laid.val, report, replicas, base)
            result = trainer.fit(resume=resuming, corpus=data.description)
    return dataclasses.replace(result, run_dir=out)  # the chief's, where the run is


def _started(config: RunConfig, tokenizer: CharTokenizer, base: Base | None) -> RunConfig:
    """A new run's config as config.json keeps it: the vocabulary's size, the corpus and
    val_file by their keys (`corpus.Source.key`: a file by its absolute path); a fine-tuned
    run's base by its absolute path, checkpoint step and weights' SHA-256."""
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, vocab_size=tokenizer.vocab_size),
        corpus=resolve(config.corpus).key,
        val_file=resolve(config.val_file).key if config.val_file else "",
    )
    if base is None:
        return config
    return dataclasses.replace(
        config, init_from=str(base.path), init_step=base.step, init_sha256=base.sha256
    )


def _same_base(config: RunConfig) -> Base:
    """The base of a fine-tuned run resumed before its first checkpoint, as it started from.

    Raises:
        CharlstmError: the base's best checkpoint is no longer the one config.json records.
    """
    base = Base.read(config.init_from)
    if base.sha256 != config.init_sha256:
        raise CharlstmError(
            f"{config.init_from}: its best checkpoint is no longer the one this run started "
            f"from (step {config.init_step}); start the run again with --force"
        )
    return base


SAMPLE_TEMPERATURE = 0.8
SAMPLE_PRIME_CHARS = 40


def sample_prime(tokenizer: CharTokenizer, val_w: Windows) -> str:
    """The prime of the samples shown during training: the validation part's first
    SAMPLE_PRIME_CHARS characters, cut after their last newline if they have one."""
    text = tokenizer.decode(val_w.inputs[0, :SAMPLE_PRIME_CHARS])
    return text[: text.rfind("\n") + 1] or text


class Trainer:
    """The model, optimizer and data of one run (`run.config`'s), and the loop over them.

    Args:
        run: the run directory it writes (checkpoints, log, TensorBoard events).
        train_w: the training windows, B streams in (B, T) windows.
        val_w: the validation windows (`data.eval_windows`).
        callback: receives StartEvent, StepEvent and EvalEvent objects.
        replicas: the strategy and its replicas (default: one device).
        base: a fine-tuned run's base (`charlstm.finetune`), when it starts: its weights are
            placed in the model, scored and saved as step 0 before the first step.
    """

    def __init__(
        self,
        run: RunDir,
        train_w: Windows,
        val_w: Windows,
        callback: Callback | None = None,
        replicas: Replicas | None = None,
        base: Base | None = None,
    ):
        self.run, self.config = run, run.config
        self.base = base
        config = run.config
        self.callback: Callback = callback or (lambda event: None)
        self.train_w, self.val_w = train_w, val_w
        self.val_head = val_w.head(config.train.eval_chars)  # scored during training
        settings = config.train
        self.replicas = replicas = replicas or Replicas(None, settings.batch_size)
        keras.utils.set_random_seed(settings.seed)
        dtype = precision.resolve(config.precision, config.model.cell)
        self.kernel = kernel.choose(config.kernel, dtype, config.model.cell, config.model.units)
        with replicas.scope():
            self.model = build_model(config.model, matmul_dtype=dtype, kernel=self.kernel)
            if base is not None:  # over a fresh model's weights: new characters keep theirs
                base.place(self.model)
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
        self.state = TrainState(
            self.model, self.optimizer, train_w.inputs.shape[0], settings.ema > 0
        )
        self.history = ValidationHistory()
        self.step = 0  # steps taken, since the run began
        self.elapsed_before, self.start = 0.0, time.monotonic()

    def _save(self, step: int, position: tuple[int, int], states: States) -> None:
        """Checkpoint `step`; training continues at `position`, (epoch, window). `states`:
        the replicas' carried states, gathered here into the global batch's order."""
        weights, state = self.state.tensors(self.replicas.gather(states))
        saved = Progress(step, *position, self._elapsed(), self.history)
        self.run.write_checkpoint(weights, state, saved, keep=self.config.train.keep_checkpoints)

    def _restore(self, ckpt: Checkpoint) -> tuple[tuple[int, int], States]:
        """Load checkpoint `ckpt`: its (epoch, window) position and carried states."""
        states = self.state.restore(ckpt)
        self.replicas.decorrelate(self.model)  # the checkpoint has replica 0's RNG state
        p = ckpt.progress
        self.history, self.elapsed_before = p.history, p.elapsed_s
        return (p.epoch, p.window), states

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
                learning_rate(settings, self.step, epoch, p, self.history.cuts)
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
        parameters = self.model.count_params()
        self.callback(
            events.StartEvent(
                self.run.path,
                corpus,
                parameters,
                resumed_step,
                self.config,
                kernel.describe(self.kernel),
                precision.describe_device(),
            )  # fmt: skip
        )
        self.start = time.monotonic()
        # the budget is the whole run's: the time before a resume used some of it
        left = settings.minutes * 60 - self.elapsed_before if settings.minutes else math.inf
        deadline = self.start + left
        step = saved_at = self.step = int(self.optimizer.iterations.numpy())
        stop: StopReason | None = None if left > 0 else StopReason.MINUTES  # None: going on
        chars = self.train_w.inputs.shape[0] * self.train_w.seq_len
        losses: list[float] = []  # training losses since the last evaluation
        speeds: list[float] = []  # and chars/s
        tick = time.monotonic()
        steps = self._steps(position, carried) if left > 0 else iter(())
        if self.base is not None and resumed_step is None:  # where fine-tuning starts from
            self._evaluate(0, 0, [], [], last=False)
            streams = self.train_w.inputs.shape[0]
            self._save(0, (0, 0), self.replicas.split(self.model.zero_states(streams), streams))
        with events.sigint_requests_stop() as interrupt:
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
                elapsed = self._elapsed()
                budget = progress(settings, step, len(self.train_w), elapsed)
                self.callback(events.StepEvent(step, epoch, k, len(self.train_w), loss, speeds[-1],
                                        elapsed, budget))  # fmt: skip
                epoch_done = k == len(self.train_w) - 1
                position = (epoch + 1, 0) if epoch_done else (epoch, k + 1)
                # a cluster's workers stop together, at the step any of them stops at
                interrupted, late = self.replicas.agree(interrupt.requested, now >= deadline)
                if interrupted:
                    stop = StopReason.INTERRUPT
                elif late:
                    stop = StopReason.MINUTES
                last = stop is StopReason.MINUTES or (epoch_done and epoch + 1 == settings.epochs)
                if step % settings.eval_every == 0 or epoch_done or last:
                    if self._evaluate(step, position[0], losses, speeds, last) and not last:
                        stop = stop or StopReason.EARLY_STOP
                    losses, speeds = [], []
                    if stop is None:  # a stopping run saves once, after the loop
                        self._save(step, position, states)
                        saved_at = step
                if stop is not None:
                    break
                tick = time.monotonic()  # validation and saving are not training time
        if saved_at != step:
            self._save(step, position, states)
        if stop is StopReason.INTERRUPT:
            raise events.TrainingInterrupted(self.run.path, step)
        return TrainResult(self.run.path, step, self.history.best_val, stop or StopReason.EPOCHS)

    def _summarize(self, record: LogRecord) -> None:
        """One validation record as TensorBoard scalars (and the sample as text) at its step."""
        if self.summaries is None:
            return
        with self.summaries.as_default(step=record.step):
            for name, value in record.scalars().items():
                tf.summary.scalar(name, value)
            if record.sample is not None:
                tf.summary.text("sample", record.sample)
        self.summaries.flush()

    def _elapsed(self) -> float:
        """Training time of the whole run, the time before a resume included."""
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
        self.run.check_finite(values(variables_by_path(self.model.weights)), step)
        settings = self.config.train
        raw: Loss | None = None
        if settings.ema:  # what the average buys, in the log
            raw = self._score(self.val_head)
        with self.state.averaged():
            val: Loss = self._score(self.val_head)
            whole = sample = None
            if last and self.val_head is not self.val_w:
                whole = self._score(self.val_w)
            if self.sampler is not None:
                sampling = SamplingConfig(temperature=SAMPLE_TEMPERATURE, seed=settings.seed)
                pieces = self.sampler.generate(self.prime, settings.sample_chars, sampling)
                sample = self.prime + "".join(cast(Iterator[str], pieces))
        self.history = self.history.after(val.nats, step, settings)
        record = LogRecord(
            step=step,
            epoch=epoch,
            train_loss=float(np.mean(train_losses)) if train_losses else None,
            val_loss=val.nats,
            val_bits_per_char=val.bits,
            val_chars=val.chars,
            learning_rate=float(self.optimizer.learning_rate.numpy()),  # of the last step
            chars_per_sec=float(np.median(speeds)) if speeds else None,
            elapsed_s=round(self._elapsed(), 3),
            val_loss_raw=raw.nats if raw is not None else None,  # val_loss: the average's
            val_loss_all=whole.nats if whole is not None else None,
            val_chars_all=whole.chars if whole is not None else None,
            sample=sample,
        )
        self.run.append_log(record)
        self._summarize(record)
        self.callback(events.EvalEvent(record, is_best=self.history.best_step == step))
        return self.history.early_stop(settings)
