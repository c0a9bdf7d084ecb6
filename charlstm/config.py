"""Run configuration: ModelConfig, TrainConfig, RunConfig, SamplingConfig and their JSON form.

Each setting is a dataclass field, and the `setting` that declares it states its help text, its
range or choices once: validation, the command-line options (`charlstm.cli`) and their `--help`
all derive from that. A run saves its RunConfig as ``config.json`` when it starts; `generate`,
`evaluate`, `info` and resume rebuild everything from it. Reading refuses unknown keys, wrong
types and out-of-range values, so a config file can never name code to run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from charlstm.errors import CharlstmError


@dataclass(frozen=True)
class Range:
    """The values a number may take: min and max (None: unbounded), each closed or open."""

    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.min is not None and (value <= self.min if self.min_open else value < self.min):
            return False
        return self.max is None or (value < self.max if self.max_open else value <= self.max)

    def __str__(self) -> str:
        if self.max is None:
            return f"> {self.min}" if self.min_open else f"at least {self.min}"
        if self.min is None:
            return f"< {self.max}" if self.max_open else f"at most {self.max}"
        return (
            f"in {'(' if self.min_open else '['}{self.min}, {self.max}"
            f"{')' if self.max_open else ']'}"
        )


def setting(default, help: str, *, choices: tuple[str, ...] = (), **bounds):
    """A field that is also a command-line option, with its help and its allowed values.

    bounds: Range's min, max, min_open, max_open. A field declared with plain `field` (or a
    bare default) is not an option: vocab_size and corpus are set by the run itself.
    """
    allowed = Range(**bounds) if bounds else None
    return field(default=default, metadata={"help": help, "range": allowed, "choices": choices})


def check_settings(config) -> None:
    """Refuse values outside a dataclass' declared ranges and choices, and non-finite floats.

    Raises:
        CharlstmError: naming the field, what it must be and the value given.
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is None or dataclasses.is_dataclass(value):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise CharlstmError(f"{f.name} must be a finite number, got {value}")
        allowed, choices = f.metadata.get("range"), f.metadata.get("choices")
        if allowed is not None and value not in allowed:
            raise CharlstmError(f"{f.name} must be {allowed}, got {value}")
        if choices and value not in choices:
            raise CharlstmError(f"{f.name} must be one of {', '.join(choices)}, got {value!r}")


class _Settings:
    """Base of the config dataclasses: every instance is checked against its declarations."""

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class ModelConfig(_Settings):
    """Embedding(V, E) -> num_layers x LSTM(units) -> Dense(V).

    vocab_size is V, set from the tokenizer when a run starts.
    """

    # sizes are bounded so that no config.json can name an absurd allocation; whether a
    # model fits this machine is checked against its memory (model.check_fits)
    vocab_size: int = field(default=0, metadata={"range": Range(min=0, max=0x110000 + 1)})
    embedding_dim: int = setting(64, "E, size of each character's embedding", min=1, max=65536)
    units: int = setting(256, "H, size of h and c in every LSTM layer", min=1, max=65536)
    num_layers: int = setting(2, "stacked LSTM layers", min=1, max=16)
    # layernorm trains at 0.62-0.68x lstm's chars/s (2 x 256, B 64, T 100, AMD EPYC, 2 cores):
    # both run fused, but its backward is autodiff's, not FusedLSTM's hand-written one
    cell: str = setting(
        "lstm",
        "lstm: the LSTM cell; layernorm: the layer-normalized LSTM (Ba et al., 2016), which "
        "normalizes the input and recurrent projections and c before its tanh; about 0.6x "
        "as fast to train",
        choices=("lstm", "layernorm"),
    )
    # 0.2 with one mask per window: on Tiny Shakespeare in 9 minutes 1.492 nats/char on the
    # held-out 10% against 1.515 without dropout and 1.506 with a mask per step, which costs
    # a fifth of the steps (README, Results)
    dropout: float = setting(
        0.2, "dropout after each LSTM layer, in training only", min=0.0, max=1.0, max_open=True
    )
    dropout_mask: str = setting(
        "window",
        "step: a new dropout mask at every character; window: one mask per stream and window, "
        "the same at every step (variational or locked dropout), nearly free",
        choices=("step", "window"),
    )
    recurrent_dropout: float = setting(
        0.0,
        "variational dropout on h_{t-1} inside each LSTM layer's recurrence: one mask per "
        "stream and window (Gal & Ghahramani, 2016); lstm cell only",
        min=0.0, max=1.0, max_open=True,
    )  # fmt: skip
    weight_drop: float = setting(
        0.0,
        "DropConnect on each layer's recurrent kernel, one mask per window (AWD-LSTM's "
        "weight drop); lstm cell only",
        min=0.0, max=1.0, max_open=True,
    )  # fmt: skip
    tie_embeddings: bool = setting(
        False,
        "use the embedding table as the output layer's weights (Press & Wolf, 2017); needs "
        "embedding-dim equal to units",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tie_embeddings and self.embedding_dim != self.units:
            raise CharlstmError(
                "tie_embeddings needs embedding_dim equal to units, got "
                f"{self.embedding_dim} and {self.units}"
            )
        if self.cell != "lstm" and (self.recurrent_dropout or self.weight_drop):
            raise CharlstmError(
                f"recurrent_dropout and weight_drop are for cell lstm, not {self.cell}"
            )


# the dtypes of the matrix products (charlstm.precision)
PRECISIONS = ("auto", "float32", "bfloat16")
# TrainConfig.strategy (charlstm.distribute)
STRATEGIES = ("auto", "one", "mirrored", "multiworker")


@dataclass(frozen=True)
class TrainConfig(_Settings):
    """How to train: TBPTT layout, optimizer, schedule, budget and evaluation cadence."""

    batch_size: int = setting(64, "B, parallel text streams per step", min=1, max=2**20)
    seq_len: int = setting(
        100, "T, characters per window; gradients stop at window edges", min=1, max=2**20
    )
    # 1.5e-2, with the cosine schedule: on Tiny Shakespeare after 624 steps of the default
    # model, validation 1.449 nats/char against 1.589 at a constant 2e-3 (char-rnn's rate, the
    # old default), 1.712 at cosine from 2e-3, 1.464 from 1e-2 and 1.452 from 2e-2; in 9
    # minutes 1.465 on the held-out 10% against 1.492 (README, Results)
    learning_rate: float = setting(
        1.5e-2, "Adam's peak learning rate, reached after the warm-up", min=0, min_open=True
    )
    # the shapes and their formulas: charlstm.schedule
    schedule: str = setting(
        "cosine",
        "learning-rate schedule: cosine decays to lr-floor x the peak when the budget (epochs "
        "or minutes) runs out; epoch-decay multiplies by lr-decay every epoch (char-rnn's); "
        "plateau multiplies by plateau-factor when validation stalls; constant",
        choices=("cosine", "epoch-decay", "plateau", "constant"),
    )
    warmup_steps: int = setting(
        50, "steps of linear warm-up from 0 to the peak learning rate (1: none)", min=1
    )
    lr_floor: float = setting(
        0.1, "cosine: the learning rate at the end, as a fraction of the peak", min=0, max=1
    )
    lr_decay: float = setting(
        0.97, "epoch-decay: learning-rate factor applied at every epoch", min=0, max=1,
        min_open=True,
    )  # fmt: skip
    plateau_factor: float = setting(
        0.5, "plateau: learning-rate factor when validation stalls", min=0, max=1, min_open=True
    )
    plateau_patience: int = setting(
        2, "plateau: validation passes without a new best before the rate is cut", min=1
    )
    weight_decay: float = setting(
        0.0, "AdamW's decoupled weight decay on kernels and embeddings (0: plain Adam)", min=0
    )
    grad_clip: float = setting(5.0, "clip the global gradient norm to this", min=0, min_open=True)
    ema: float = setting(
        0.0,
        "keep an exponential moving average of the weights, a <- ema * a + (1 - ema) * w after "
        "every step (Polyak averaging); validation, samples and the checkpoints' model weights "
        "use the average, training goes on from the raw weights (0: off; 0.999 averages over "
        "about the last 1,000 steps)",
        min=0, max=1, max_open=True,
    )  # fmt: skip
    epochs: int | None = setting(
        20,
        "passes over the training part (with --minutes and no --epochs: as many as the "
        "minutes allow)",
        min=1,
    )
    minutes: float | None = setting(
        None,
        "time budget of the whole run, validation included; stops at epochs or minutes, "
        "first reached (with --resume: minutes more)",
        min=0, min_open=True,
    )  # fmt: skip
    early_stop: int = setting(
        0, "stop after this many validation passes without a new best (0: never)", min=0
    )
    eval_every: int = setting(
        200, "steps between validation passes (also at every epoch end)", min=1
    )
    eval_chars: int = setting(
        1 << 18,
        "validation passes during training score the validation part's first this many "
        "characters; the pass at the end scores all of it (0: always all)",
        min=0,
    )
    sample_chars: int = setting(
        200,
        "characters sampled at every validation pass, after a prime from the validation "
        "part (temperature 0.8, the run's seed): shown and kept in log.jsonl (0: none)",
        min=0,
        max=10_000,
    )
    tensorboard: bool = setting(
        True,
        "write TensorBoard event files in the run's tensorboard/ folder (losses, bits/char, "
        "learning rate, chars/s, samples)",
    )
    keep_checkpoints: int = setting(
        2, "newest checkpoints kept (the best one is kept as well)", min=1
    )
    val_fraction: float = setting(
        0.05, "share of the text for validation (after the train part)", min=0, max=0.5,
        min_open=True, max_open=True,
    )  # fmt: skip
    test_fraction: float = setting(
        0.05, "share of the text held out for testing (the end)", min=0, max=0.5, max_open=True
    )
    split: str = setting(
        "files",
        "where train, validation and test parts meet in a corpus of several files: between "
        "files (the nearest file start to each fraction), or chars (at the fractions exactly)",
        choices=("files", "chars"),
    )
    seed: int = setting(0, "seed for initial weights and dropout", min=0)
    strategy: str = setting(
        "auto",
        "tf.distribute strategy: one device; mirrored across this machine's GPUs (or logical "
        "CPU devices); multiworker across the hosts in TF_CONFIG; auto: mirrored when there is "
        "more than one GPU, else one. The batch's streams are split across the replicas",
        choices=STRATEGIES,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.epochs is None and not self.minutes:
            raise CharlstmError("a run without an epoch limit needs minutes")


# Recipes by budget: the options each preset sets (the dataclass defaults are "small"'s, but for
# its weight decay: a RunConfig built in code keeps plain Adam); an
# explicit option always wins. On Tiny Shakespeare's held-out last 10% (2 cores of an AMD EPYC;
# README, Results): in 9 minutes 2 x 256 1.465, 2 x 384 1.452, 2 x 512 (medium) 1.435-1.439
# nats/char in float32, 1.427 with bfloat16 products. In an hour medium over-fits (50 minutes:
# 1.457, training loss 1.16); large, the same model with dropout 0.4, weight drop 0.2 and a
# 6e-3 peak, reached 1.434 in 60 minutes (bfloat16); with AdamW's decoupled decay 0.1 1.394,
# 0.2 1.386 (large now; 1.378 in each of two hours on an Intel Xeon with AMX, whose bfloat16
# step ran 1.35-1.44 x the steps). Medium got decay 0.2 too: on the AMX Xeon in 9 minutes
# 1.4345 without, 0.1 1.4112, 0.2 1.4086 (one sitting; 1.405 in a later one); small in 5
# minutes 1.4856 without, 1.4651 with 0.2 (the next). On that Xeon tiny reached 1.586 in 1
# minute, small 1.498 in 3.
# Where between 9 and 60 minutes large starts to win is not measured: 30 is a guess.
PRESETS: dict[str, dict[str, object]] = {
    "tiny": {"embedding_dim": 32, "units": 128, "num_layers": 2, "dropout": 0.1,
             "batch_size": 32, "seq_len": 64, "warmup_steps": 20},
    "small": {"embedding_dim": 64, "units": 256, "num_layers": 2, "dropout": 0.2,
              "weight_decay": 0.2, "batch_size": 64, "seq_len": 100, "warmup_steps": 50},
    "medium": {"embedding_dim": 64, "units": 512, "num_layers": 2, "dropout": 0.2,
               "weight_decay": 0.2, "batch_size": 64, "seq_len": 100, "warmup_steps": 50},
    "large": {"embedding_dim": 64, "units": 512, "num_layers": 2, "dropout": 0.4,
              "weight_drop": 0.2, "weight_decay": 0.2, "learning_rate": 6e-3, "batch_size": 64,
              "seq_len": 100, "warmup_steps": 200},
}  # fmt: skip


def choose_preset(minutes: float | None, corpus_chars: int | None = None) -> str:
    """The preset for a time budget and a corpus of `corpus_chars` characters.

    With a budget: tiny up to 2 minutes, small up to 5, medium up to 30, large beyond.
    Without one (the run ends after its epochs): tiny for a corpus under 300,000 characters,
    else small.
    """
    if minutes is None:
        return "tiny" if corpus_chars is not None and corpus_chars < 300_000 else "small"
    for name, up_to in (("tiny", 2), ("small", 5), ("medium", 30)):
        if minutes <= up_to:
            return name
    return "large"


def _toml():
    """tomllib (Python 3.11+), else its backport tomli."""
    try:
        import tomllib  # noqa: PLC0415
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # noqa: PLC0415
    return tomllib


@dataclass(frozen=True)
class RunConfig(_Settings):
    """Everything a run needs to be rebuilt: the model, the training and the corpus it read."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    corpus: str = ""  # a text file's absolute path or a catalogue name; "" for the default
    preset: str = setting(
        "auto",
        "a recipe of model size, batch, window, regularization and rate (tiny 2 x 128, small "
        "2 x 256, medium 2 x 512, large 2 x 512 regularized harder); auto picks it from "
        "--minutes and the corpus size; options given win",
        choices=("auto", *PRESETS),
    )
    encoding: str = setting("utf-8", "the text file's encoding")
    errors: str = setting(
        "strict",
        "undecodable bytes: strict refuses, replace makes them U+FFFD",
        choices=("strict", "replace"),
    )
    val_file: str = setting(
        "",
        "validate on this text (a file, folder, pattern or corpus name) rather than on a part "
        "of the corpus, which is then cut into train and test parts only",
    )
    precision: str = setting(
        "auto",
        "dtype of the matrix products: bfloat16 (mixed: weights, state, softmax and loss stay "
        "float32) or float32; auto picks bfloat16 where the CPU has AVX512-BF16 or AMX (the "
        "layernorm cell: float32 only)",
        choices=PRECISIONS,
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

    @classmethod
    def from_options(cls, corpus: str = "", corpus_chars: int | None = None, **values) -> RunConfig:
        """A RunConfig from flat option values (`units=128, seq_len=50`): the values given
        (None: not given), then the preset's (`preset`, default "auto": `choose_preset` from
        `minutes` and `corpus_chars`), then the defaults. The config names the preset used.

        Raises:
            CharlstmError: a value out of its range.
        """
        given = {name: value for name, value in values.items() if value is not None}
        if given.get("minutes") and "epochs" not in given:
            given["epochs"] = None  # the minutes are the budget: no epoch limit cuts them short
        preset = given.get("preset", "auto")
        if preset == "auto":
            preset = choose_preset(given.get("minutes"), corpus_chars)
        given = PRESETS[preset] | given | {"preset": preset}
        sections = {}
        for name, section in option_sections(cls).items():
            own = {f.name for f in dataclasses.fields(section)} & set(given)
            sections[name] = section(**{key: given.pop(key) for key in own})
        unknown = set(given) - {option.name for option in options(cls, nested=False)}
        if unknown:
            raise TypeError(f"not RunConfig options: {sorted(unknown)}")
        return cls(**sections, corpus=corpus, **given)  # type: ignore[arg-type]

    def describe(self) -> list[str]:
        """The run's choices in three lines: model, training, schedule and budget."""
        m, t = self.model, self.train
        dropout = f"dropout {m.dropout} per {m.dropout_mask}"
        if m.recurrent_dropout or m.weight_drop:
            dropout += f", recurrent {m.recurrent_dropout}, weight drop {m.weight_drop}"
        schedule = {
            "cosine": f"cosine to {t.lr_floor:g} x it",
            "epoch-decay": f"x {t.lr_decay:g} per epoch",
            "plateau": f"x {t.plateau_factor:g} after {t.plateau_patience} stalled passes",
            "constant": "constant",
        }[t.schedule]
        optimizer = f"AdamW (decay {t.weight_decay:g})" if t.weight_decay else "Adam"
        optimizer += f", weights averaged (ema {t.ema:g})" if t.ema else ""
        if t.epochs is None:
            budget = f"{t.minutes:g} minutes"
        else:
            budget = f"{t.epochs} epoch{'s' * (t.epochs != 1)}"
            budget += f" or {t.minutes:g} minutes" if t.minutes else ""
        return [
            f"model: {m.cell} {m.num_layers} x {m.units}, embedding {m.embedding_dim}, "
            f"vocabulary {m.vocab_size}, {dropout} (preset {self.preset})",
            f"train: batch {t.batch_size} x seq_len {t.seq_len}, {optimizer}, "
            f"lr {t.learning_rate:g} after {t.warmup_steps} warm-up steps, {schedule}, "
            f"clip {t.grad_clip:g}, precision {self.precision}",
            f"budget: {budget}, first reached"
            + (f"; early stop after {t.early_stop} stalled passes" if t.early_stop else "")
            + f"; validation every {t.eval_every} steps",
        ]

    @classmethod
    def file_options(cls, path: str | Path) -> dict[str, object]:
        """The option values in a settings file (`charlstm train --config FILE`): JSON, or TOML
        for a .toml file; flat option names (`units = 512`), or a run's config.json layout
        (`model`, `train` sections). A run's `corpus` is returned as "corpus"; its vocab_size
        is dropped (the corpus sets it).

        Raises:
            CharlstmError: unreadable, not JSON/TOML, or a name that is not an option.
        """
        path = Path(path)
        try:
            raw = path.read_bytes()
            if path.suffix.lower() == ".toml":
                values = _toml().loads(raw.decode("utf-8"))
            else:
                values = json.loads(raw)
        except OSError as err:
            raise CharlstmError(f"{path}: cannot read ({err.strerror})") from err
        except (ValueError, UnicodeDecodeError) as err:  # JSON's and TOML's decode errors
            raise CharlstmError(f"{path}: not a valid settings file ({err})") from err
        if not isinstance(values, dict):
            raise CharlstmError(f"{path}: a settings file holds names and values")
        flat: dict[str, object] = {}
        for name, value in values.items():
            if name in option_sections(cls) and isinstance(value, dict):
                flat |= {k: v for k, v in value.items() if k != "vocab_size"}
            else:
                flat[name] = value
        known = set(cls().option_values()) | {"corpus"}
        unknown = sorted(set(flat) - known)
        if unknown:
            raise CharlstmError(f"{path}: not options of charlstm train: {', '.join(unknown)}")
        return flat

    def option_values(self) -> dict[str, object]:
        """Every option's value in this config, by its flat name (the inverse of from_options)."""
        values = {o.name: getattr(self, o.name) for o in options(type(self), nested=False)}
        for name, section in option_sections(type(self)).items():
            values |= {o.name: getattr(getattr(self, name), o.name) for o in options(section)}
        return values


@dataclass(frozen=True)
class SamplingConfig(_Settings):
    """How `charlstm.sample` draws each next character."""

    temperature: float = setting(1.0, "0 is greedy; above 1 flattens, below 1 sharpens", min=0)
    top_k: int = setting(0, "keep the k likeliest characters (0: all)", min=0)
    top_p: float = setting(
        1.0, "keep the fewest likeliest characters whose probability reaches p (1: all)",
        min=0, max=1, min_open=True,
    )  # fmt: skip
    seed: int = setting(
        0, "the same seed, model and prime give the same text", min=0, max=2**31 - 1
    )


@dataclass(frozen=True)
class DynamicConfig(_Settings):
    """How `charlstm.evaluate.dynamic_evaluate` adapts the weights to a text as it reads it.

    Options bear the `dynamic_` prefix so that `charlstm evaluate` keeps them apart from the
    run's own settings. On Tiny Shakespeare's last 100k characters (a 2-minute run, one stream,
    2026-11-27) the learning rate 3e-4 gave 1.601 nats/char against 1.602 at 1e-3 and 1.666
    at 3e-3 (static: 1.778); a decay of 1e-2 cost 0.03 nats/char (README, Dynamic evaluation).
    """

    dynamic_lr: float = setting(
        3e-4, "step size of dynamic evaluation's RMS-normalized update", min=0, min_open=True
    )
    dynamic_decay: float = setting(
        0.0, "pull towards the run's weights at every update (0: none)", min=0, max=1
    )


class Option(typing.NamedTuple):
    """A config field that is a command-line option, as `setting` declared it."""

    name: str
    type: type  # int, float or str
    default: object
    help: str
    range: Range | None
    choices: tuple[str, ...]


def options(cls: type, nested: bool = True) -> list[Option]:
    """The command-line options of config dataclass `cls` (and, if nested, of its sections)."""
    hints = typing.get_type_hints(cls)
    found = [
        Option(f.name, field_type(hints[f.name]), f.default, f.metadata["help"],
               f.metadata["range"], f.metadata["choices"])
        for f in dataclasses.fields(cls)
        if "help" in f.metadata
    ]  # fmt: skip
    if nested:
        for section in option_sections(cls).values():
            found += options(section)
    return found


def run_options(*names: str) -> list[Option]:
    """RunConfig's own options of these names, for the commands that take them as well:
    evaluate reads a text (encoding, errors) and runs a model (precision, which may differ
    from the run's)."""
    return [o for o in options(RunConfig, nested=False) if o.name in names]


def option_sections(cls: type) -> dict[str, type]:
    """The fields of `cls` that are config dataclasses themselves: name -> dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if _is_section(hints[f.name])}


def _is_section(hint) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


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
    except CharlstmError as err:  # a range check, which cannot name the file
        raise CharlstmError(f"{where}: {err}") from err


def field_type(hint) -> type:
    """The plain type of a field's hint: `float | None` -> float."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    return hint


def _coerce(hint, value, where: str):
    """Check one JSON value against a field's type hint; ints are accepted for floats."""
    if _is_section(hint):
        return _from_dict(hint, value, where)
    if value is None and type(None) in typing.get_args(hint):
        return None
    hint = field_type(hint)
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
