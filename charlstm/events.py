"""What training reports while it runs, and how it ended: typed events for a callback.

`charlstm.trainer` knows nothing of the terminal: it calls `callback(event)` with

    EncodeEvent   while a large corpus file is hashed, then encoded (bytes done of total)
    StartEvent    once the run directory is ready, before the first step
    StepEvent     after each training step
    EvalEvent     after each validation pass (its LogRecord, as log.jsonl keeps it)

and returns a TrainResult, whose `stopped_by` says why the run ended (StopReason).
"""

from __future__ import annotations

import contextlib
import enum
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from charlstm.config import RunConfig
from charlstm.records import LogRecord


class StopReason(enum.Enum):
    """Why a training run ended; the value is how messages and logs spell it."""

    EPOCHS = "epochs"  # the last epoch was done
    MINUTES = "minutes"  # the time budget ran out
    EARLY_STOP = "early-stop"  # validation stalled for early_stop passes
    INTERRUPT = "interrupt"  # Ctrl-C (SIGINT), or a worker of the cluster was interrupted

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class StartEvent:
    """Once the run directory is ready, before the first step."""

    run_dir: Path
    corpus: str  # the corpus as described for the log: name, files, characters
    parameters: int
    resumed_step: int | None  # the checkpoint's step when resuming
    config: RunConfig  # every choice the run trains with
    kernel: str = "kernel: xla"  # which loops run (`charlstm.kernel.describe`)
    device: str = ""  # what trains (`charlstm.precision.describe_device`)


@dataclass(frozen=True)
class EncodeEvent:
    """While a large corpus file is hashed ("hash"), then encoded ("encode"): bytes done of
    total (`charlstm.idfile`)."""

    phase: str
    done: int
    total: int


@dataclass(frozen=True)
class StepEvent:
    """After each training step.

    Attributes:
        loss: nats/char of that window.
        budget: the share of the run's budget used, in [0, 1] (`schedule.progress`: the larger
            of the epochs' steps and the minutes).
    """

    step: int
    epoch: int
    window: int
    windows_per_epoch: int
    loss: float
    chars_per_sec: float
    elapsed_s: float
    budget: float


@dataclass(frozen=True)
class EvalEvent:
    """After each validation pass; `record` is the line written to log.jsonl."""

    record: LogRecord
    is_best: bool


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path  # `out`, also for a worker that trained in a temporary folder
    step: int
    best_val: float | None  # nats/char
    stopped_by: StopReason


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during training: a checkpoint of step `step` was saved first."""

    def __init__(self, run_dir: Path, step: int):
        super().__init__(f"interrupted at step {step}")
        self.run_dir, self.step = run_dir, step


Event = EncodeEvent | StartEvent | StepEvent | EvalEvent
Callback = Callable[[Event], None]


class StopRequest:
    """Whether a stop was asked for (Ctrl-C): `requested`, read by the loop after each step."""

    requested = False


@contextlib.contextmanager
def sigint_requests_stop() -> Iterator[StopRequest]:
    """While inside, the first SIGINT sets `requested` (the trainer saves, then raises
    TrainingInterrupted); a second one interrupts at once (KeyboardInterrupt)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be set from the main thread
        return

    def handler(signum, frame):
        stop.requested = True
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
