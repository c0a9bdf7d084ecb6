"""What a run writes about itself, typed: a checkpoint's progress and the log's records.

    checkpoints/step-N/progress.json   Progress: where training continues, the validation
                                       history, the time spent
    log.jsonl                          one LogRecord per validation pass

Each is a frozen dataclass with its JSON form here and nowhere else. Reading is lenient where
files written by earlier versions differ (a missing counter reads as 0, a key this version does
not know is ignored) and strict where a value is needed (a missing step is no record).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from charlstm.schedule import ValidationHistory


@dataclass(frozen=True)
class Progress:
    """Where a checkpoint leaves the run.

    Attributes:
        step: training steps taken (the checkpoint's step).
        epoch, window: where training continues: window `window` of epoch `epoch`.
        elapsed_s: training time of the whole run so far, seconds (validation included).
        history: the validation passes so far (best loss and its step, the plateau counts).
    """

    step: int
    epoch: int = 0
    window: int = 0
    elapsed_s: float = 0.0
    history: ValidationHistory = field(default_factory=ValidationHistory)

    @property
    def best_val(self) -> float | None:
        return self.history.best_val

    @property
    def best_step(self) -> int | None:
        return self.history.best_step

    def to_dict(self) -> dict[str, Any]:
        """The progress.json object (flat, as it has always been written)."""
        h = self.history
        return {
            "epoch": self.epoch,
            "window": self.window,
            "best_val": h.best_val,
            "best_step": h.best_step,
            "since_best": h.since_best,
            "stale": h.stale,
            "lr_cuts": h.cuts,
            "elapsed_s": self.elapsed_s,
            "step": self.step,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Progress:
        """Parse a progress.json object.

        Raises:
            KeyError, TypeError, ValueError: not a progress record (no step, a wrong type).
        """
        best_val = data.get("best_val")
        best_step = data.get("best_step")
        history = ValidationHistory(
            best_val=None if best_val is None else float(best_val),
            best_step=None if best_step is None else int(best_step),
            since_best=int(data.get("since_best", 0)),
            stale=int(data.get("stale", 0)),
            cuts=int(data.get("lr_cuts", 0)),
        )
        return cls(
            step=int(data["step"]),
            epoch=int(data.get("epoch", 0)),
            window=int(data.get("window", 0)),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
            history=history,
        )


@dataclass(frozen=True)
class LogRecord:
    """One validation pass, as log.jsonl keeps it (one JSON object a line).

    Attributes:
        step, epoch: when the pass ran (epoch: the epoch training continues in).
        train_loss: mean training loss since the previous pass, nats/char (None if no step).
        val_loss, val_bits_per_char, val_chars: the validation head's loss and its size.
        learning_rate: the rate of the last step.
        chars_per_sec: median training speed since the previous pass (None if no step).
        elapsed_s: training time of the whole run so far, seconds.
        val_loss_raw: with weight averaging (ema), the raw weights' loss on the head
            (val_loss is then the average's).
        val_loss_all, val_chars_all: at the end of a run, the whole validation part's.
        sample: text sampled at this pass, prime included.
    """

    step: int
    epoch: int
    train_loss: float | None
    val_loss: float
    val_bits_per_char: float
    val_chars: int
    learning_rate: float
    chars_per_sec: float | None
    elapsed_s: float
    val_loss_raw: float | None = None
    val_loss_all: float | None = None
    val_chars_all: int | None = None
    sample: str | None = None

    # the fields written only when they have a value, as the log always had them
    _OPTIONAL = ("val_loss_raw", "val_loss_all", "val_chars_all", "sample")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: v for k, v in data.items() if k not in self._OPTIONAL or v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogRecord:
        """Parse a log line's object; keys this version does not know are ignored.

        Raises:
            KeyError, TypeError: a field without a default is missing, or not an object.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def scalars(self) -> dict[str, float]:
        """The record's numbers under their TensorBoard names (those with a value)."""
        scalars = {
            "loss/train": self.train_loss,
            "loss/validation": self.val_loss,
            "loss/validation_all": self.val_loss_all,
            "loss/validation_raw": self.val_loss_raw,
            "bits_per_char/validation": self.val_bits_per_char,
            "learning_rate": self.learning_rate,
            "chars_per_sec": self.chars_per_sec,
        }
        return {name: value for name, value in scalars.items() if value is not None}
