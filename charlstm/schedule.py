"""The learning rate of every step, planned against the run's budget.

A run knows in advance where it ends: after `epochs` passes over the training part, or when
`minutes` have passed, whichever comes first. Its progress p runs from 0 to 1 over that span,

    p = max(step / (epochs * windows_per_epoch), elapsed_s / (minutes * 60))

(without an epoch limit, the second term alone)
where elapsed_s is the run's wall time so far (compilation, validation and saving included, as
they use up the budget too), and the learning rate follows one of four shapes:

    cosine       lr = lr0 * w * (floor + (1 - floor) * (1 + cos(pi * p)) / 2)
    epoch-decay  lr = lr0 * w * lr_decay ** epoch                 (char-rnn's)
    plateau      lr = lr0 * w * plateau_factor ** cuts            (reduce on plateau)
    constant     lr = lr0 * w

with lr0 = learning_rate, w = min(1, (step + 1) / warmup_steps) the linear warm-up, floor =
lr_floor, and cuts the number of times validation stalled for plateau_patience passes
(`ValidationHistory`, saved with each checkpoint). Every input is saved in a checkpoint
(step, epoch, elapsed_s, cuts), so a resumed run continues the same schedule; when the budget
depends only on epochs, the whole schedule is a function of the step and resumes exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from charlstm.config import TrainConfig


def progress(settings: TrainConfig, step: int, windows_per_epoch: int, elapsed_s: float) -> float:
    """How far through its budget a run is after `step` steps and `elapsed_s` seconds, in [0, 1]."""
    done = step / max(1, settings.epochs * windows_per_epoch) if settings.epochs else 0.0
    if settings.minutes:
        done = max(done, elapsed_s / (settings.minutes * 60))
    return min(1.0, done)


def learning_rate(
    settings: TrainConfig, step: int, epoch: int = 0, p: float = 0.0, cuts: int = 0
) -> float:
    """The learning rate for training step `step` (0-based) in epoch `epoch`, at progress `p`
    (`progress`), after `cuts` reductions on plateau: the formulas in the module docstring."""
    lr = settings.learning_rate * min(1.0, (step + 1) / max(1, settings.warmup_steps))
    if settings.schedule == "cosine":
        floor = settings.lr_floor
        return lr * (floor + (1 - floor) * (1 + math.cos(math.pi * min(1.0, p))) / 2)
    if settings.schedule == "epoch-decay":
        return lr * settings.lr_decay**epoch
    if settings.schedule == "plateau":
        return lr * settings.plateau_factor**cuts
    return lr


@dataclass(frozen=True)
class ValidationHistory:
    """What the plateau schedule and early stopping read from the validation passes so far.

    Attributes:
        best_val: the lowest validation loss yet, nats/char (None before the first pass).
        best_step: the step it was scored at.
        since_best: passes since the best one (early stopping counts these).
        stale: passes since the best one or the last cut, whichever is later (plateau).
        cuts: how often plateau has cut the learning rate (`learning_rate`'s cuts).
    """

    best_val: float | None = None
    best_step: int | None = None
    since_best: int = 0
    stale: int = 0
    cuts: int = 0

    def after(self, val: float, step: int, settings: TrainConfig) -> ValidationHistory:
        """The history once a pass at `step` scored `val`: a new best resets the counts; with
        the plateau schedule, plateau_patience stale passes cut the rate once more."""
        if self.best_val is None or val < self.best_val:
            history = ValidationHistory(val, step, 0, 0, self.cuts)
        else:
            history = replace(self, since_best=self.since_best + 1, stale=self.stale + 1)
        if settings.schedule == "plateau" and history.stale >= settings.plateau_patience:
            history = replace(history, cuts=history.cuts + 1, stale=0)
        return history

    def early_stop(self, settings: TrainConfig) -> bool:
        """Whether early stopping ends the run: early_stop passes without a new best."""
        return bool(settings.early_stop) and self.since_best >= settings.early_stop
