"""Run configuration: ModelConfig, TrainConfig, RunConfig and their JSON form.

A run saves its RunConfig as ``config.json`` when it starts; ``generate``, ``evaluate``, ``info``
and resume rebuild everything from it. Reading refuses unknown keys, wrong types and out-of-range
values, so a config file can never name code to run.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field

from charlstm.errors import CharlstmError


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise CharlstmError(message)


def _opt(default, help: str):
    """A field with the help text its CLI option shows."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ModelConfig:
    """Embedding(V, E) -> num_layers x LSTM(units) -> Dense(V).

    vocab_size is V, set from the tokenizer when a run starts.
    """

    vocab_size: int = 0
    embedding_dim: int = _opt(64, "E, size of each character's embedding")
    units: int = _opt(256, "H, size of h and c in every LSTM layer")
    num_layers: int = _opt(2, "stacked LSTM layers")
    dropout: float = _opt(0.0, "dropout after each LSTM layer, in training only")

    def __post_init__(self) -> None:
        _check(self.vocab_size >= 0, f"vocab_size must be at least 0, got {self.vocab_size}")
        _check(self.embedding_dim >= 1, f"embedding_dim must be >= 1, got {self.embedding_dim}")
        _check(self.units >= 1, f"units must be at least 1, got {self.units}")
        _check(1 <= self.num_layers <= 16, f"num_layers must be in 1..16, got {self.num_layers}")
        _check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: TBPTT layout, optimizer, schedule, budget and evaluation cadence."""

    batch_size: int = _opt(64, "B, parallel text streams per step")
    seq_len: int = _opt(100, "T, characters per window; gradients stop at window edges")
    learning_rate: float = _opt(2e-3, "Adam's learning rate at the start")
    lr_decay: float = _opt(0.97, "learning-rate factor applied at every epoch (char-rnn's)")
    grad_clip: float = _opt(5.0, "clip the global gradient norm to this")
    epochs: int = _opt(20, "passes over the training part")
    minutes: float | None = _opt(None, "time budget; stops at epochs or minutes, first reached")
    eval_every: int = _opt(200, "steps between validation passes (also at every epoch end)")
    keep_checkpoints: int = _opt(2, "newest checkpoints kept (the best one is kept as well)")
    val_fraction: float = _opt(0.05, "share of the text for validation (after the train part)")
    test_fraction: float = _opt(0.05, "share of the text held out for testing (the end)")
    seed: int = _opt(0, "seed for initial weights and dropout")

    def __post_init__(self) -> None:
        _check(self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}")
        _check(self.seq_len >= 1, f"seq_len must be at least 1, got {self.seq_len}")
        _check(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        _check(0 < self.lr_decay <= 1, f"lr_decay must be in (0, 1], got {self.lr_decay}")
        _check(self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}")
        _check(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        _check(self.minutes is None or self.minutes > 0, f"minutes must be > 0, got {self.minutes}")
        _check(self.eval_every >= 1, f"eval_every must be at least 1, got {self.eval_every}")
        _check(
            self.keep_checkpoints >= 1,
            f"keep_checkpoints must be at least 1, got {self.keep_checkpoints}",
        )
        _check(
            0 < self.val_fraction < 0.5,
            f"val_fraction must be in (0, 0.5), got {self.val_fraction}",
        )
        _check(
            0 <= self.test_fraction < 0.5,
            f"test_fraction must be in [0, 0.5), got {self.test_fraction}",
        )
        _check(self.seed >= 0, f"seed must be at least 0, got {self.seed}")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs to be rebuilt: the model, the training and the corpus it read."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    corpus: str = ""  # path of the text file, or "default" for the embedded corpus
    encoding: str = _opt("utf-8", "the text file's encoding")
    errors: str = _opt("strict", "undecodable bytes: strict refuses, replace makes them U+FFFD")

    def __post_init__(self) -> None:
        _check(
            self.errors in ("strict", "replace"),
            f"errors must be strict or replace, got {self.errors!r}",
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> RunConfig:
        """Parse and validate; raises CharlstmError naming `source` on any problem."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise CharlstmError(f"{source} is not valid JSON: {err}") from err
        return _from_dict(cls, data, source)


def _from_dict(cls: type, data: object, where: str):
    """Build dataclass `cls` from plain JSON data, refusing anything the dataclass does not say."""
    if not isinstance(data, dict):
        raise CharlstmError(f"{where}: expected a JSON object for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise CharlstmError(f"{where}: unknown key(s) {', '.join(unknown)} in {cls.__name__}")
    values = {}
    for name, value in data.items():
        values[name] = _coerce(hints[name], value, f"{where}: {cls.__name__}.{name}")
    try:
        return cls(**values)
    except CharlstmError as err:  # a range check in __post_init__, which cannot name the file
        raise CharlstmError(f"{where}: {err}") from err


def _coerce(hint, value, where: str):
    """Check one JSON value against a field's type hint; ints are accepted for floats."""
    if dataclasses.is_dataclass(hint):
        return _from_dict(hint, value, where)
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    else:  # a field type this reader does not know is a bug, not bad input
        raise TypeError(f"unsupported config field type {hint!r}")
    if not ok:
        raise CharlstmError(f"{where} must be {hint.__name__}, got {json.dumps(value)}")
    return value
