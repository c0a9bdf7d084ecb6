import math

import pytest

from charlstm.config import TrainConfig
from charlstm.schedule import learning_rate, progress


def test_warm_up_rises_linearly_to_the_peak():
    settings = TrainConfig(learning_rate=1e-2, warmup_steps=10, schedule="constant")
    assert [learning_rate(settings, s) for s in (0, 4, 9, 50)] == pytest.approx(
        [1e-3, 5e-3, 1e-2, 1e-2]
    )


def test_cosine_starts_at_the_peak_and_ends_at_the_floor():
    settings = TrainConfig(learning_rate=1e-2, warmup_steps=1, lr_floor=0.1)
    assert learning_rate(settings, 5, p=0.0) == pytest.approx(1e-2)
    assert learning_rate(settings, 5, p=0.5) == pytest.approx(1e-2 * (0.1 + 0.9 / 2))
    assert learning_rate(settings, 5, p=1.0) == pytest.approx(1e-3)
    values = [learning_rate(settings, 5, p=k / 20) for k in range(21)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_epoch_decay_and_plateau_multiply_per_epoch_and_per_cut():
    decay = TrainConfig(learning_rate=1.0, warmup_steps=1, schedule="epoch-decay", lr_decay=0.5)
    assert [learning_rate(decay, 9, epoch=e, p=0.9) for e in range(3)] == [1.0, 0.5, 0.25]
    plateau = TrainConfig(learning_rate=1.0, warmup_steps=1, schedule="plateau")
    assert [learning_rate(plateau, 9, p=0.9, cuts=c) for c in range(3)] == [1.0, 0.5, 0.25]


def test_progress_is_the_larger_share_of_the_epochs_and_of_the_minutes():
    by_epochs = TrainConfig(epochs=4)
    assert progress(by_epochs, 10, 10, elapsed_s=1e6) == pytest.approx(0.25)
    both = TrainConfig(epochs=4, minutes=2)
    assert progress(both, 10, 10, elapsed_s=60) == pytest.approx(0.5)
    assert progress(both, 40, 10, elapsed_s=1) == 1.0
    assert progress(both, 10, 10, elapsed_s=1e6) == 1.0
    assert math.isclose(progress(both, 0, 10, 0.0), 0.0)
