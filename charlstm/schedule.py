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
lr_floor, and cuts the number of times validation stalled for plateau_patience passes (the
trainer counts them; they are saved with each checkpoint). Every input is saved in a checkpoint
(step, epoch, elapsed_s, cuts), so a resumed run continues the same schedule; when the budget
depends only on epochs, the whole schedule is a function of the step and resumes exactly.
"""

from __future__ import annotations

import math

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
