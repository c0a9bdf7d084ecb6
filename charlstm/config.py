"""The configuration of everything charlstm does, one dataclass per concern.

    ModelConfig      the network                     RunConfig = model + train + corpus + ...
    TrainConfig      TBPTT layout, optimizer, budget  (saved as a run's config.json)
    SamplingConfig   how each next character is drawn
    InferenceConfig  how a trained model runs         DynamicConfig  dynamic evaluation

Each option is a field declared once with `settings.setting` (its help, range or choices):
validation, the command-line options and the served page's defaults all derive from that. A run
saves its RunConfig as ``config.json`` when it starts; `generate`, `evaluate`, `info` and resume
rebuild everything from it. The names from `charlstm.settings` that the faces use (`options`,
`Option`, `from_dict`, `coerce`) are re-exported here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from charlstm.errors import CharlstmError
from charlstm.presets import PRESETS, choose_preset
from charlstm.settings import (
    Option,
    Range,
    Settings,
    coerce,
    field_type,
    from_dict,
    option_sections,
    options,
    setting,
)

__all__ = [
    "GENERATE_LENGTH", "KERNELS", "PRECISIONS", "PRESETS", "STRATEGIES", "DynamicConfig",
    "InferenceConfig", "ModelConfig", "Option", "RunConfig", "SamplingConfig", "TrainConfig",
    "choose_preset", "coerce", "field_type", "from_dict", "option_sections", "options",
    "run_options",
]  # fmt: skip


def probability(default: float, help: str):
    """A setting whose value is a probability in [0, 1): a dropout rate."""
    return setting(default, help, min=0.0, max=1.0, max_open=True)


@dataclass(frozen=True)
class ModelConfig(Settings):
    """Embedding(V, E) -> num_layers x LSTM(units) -> Dense(V); with members > 1, that many
    such models whose next-character probabilities are averaged (`model.Ensemble`).

    vocab_size is V, set from the tokenizer when a run starts.
    """

    # sizes are bounded so that no config.json can name an absurd allocation; whether a
    # model fits this machine is checked against its memory (model.check_fits)
    vocab_size: int = field(default=0, metadata={"range": Range(min=0, max=0x110000 + 1)})
    embedding_dim: int = setting(64, "E, size of each character's embedding", min=1, max=65536)
    units: int = setting(256, "H, size of h and c in every LSTM layer", min=1, max=65536)
    num_layers: int = setting(2, "stacked LSTM layers", min=1, max=16)
    # layernorm's backward is autodiff's, not FusedLSTM's hand-written one: slower to train
    # (docs/results.md)
    cell: str = setting(
        "lstm",
        "lstm: the LSTM cell; layernorm: the layer-normalized LSTM (Ba et al., 2016), which "
        "normalizes the input and recurrent projections and c before its tanh; about 0.7x "
        "as fast to train",
        choices=("lstm", "layernorm"),
    )
    dropout: float = probability(0.2, "dropout after each LSTM layer, in training only")
    dropout_mask: str = setting(
        "window",
        "step: a new dropout mask at every character; window: one mask per stream and window, "
        "the same at every step (variational or locked dropout), nearly free",
        choices=("step", "window"),
    )
    recurrent_dropout: float = probability(
        0.0,
        "variational dropout on h_{t-1} inside each LSTM layer's recurrence: one mask per "
        "stream and window (Gal & Ghahramani, 2016); lstm cell only",
    )
    weight_drop: float = probability(
        0.0,
        "DropConnect on each layer's recurrent kernel, one mask per window (AWD-LSTM's "
        "weight drop); lstm cell only",
    )
    tie_embeddings: bool = setting(
        False,
        "use the embedding table as the output layer's weights (Press & Wolf, 2017); needs "
        "embedding-dim equal to units",
    )
    members: int = setting(
        1,
        "models of this shape trained side by side, each on its own loss, whose next-character "
        "probabilities are averaged (an ensemble); each step costs members x one model's",
        min=1,
        max=16,
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
# how the LSTM layers run their loops (charlstm.kernel)
KERNELS = ("auto", "compiled", "xla")
# TrainConfig.strategy (charlstm.distribute)
STRATEGIES = ("auto", "one", "mirrored", "multiworker")


@dataclass(frozen=True)
class TrainConfig(Settings):
    """How to train: TBPTT layout, optimizer, schedule, budget and evaluation cadence."""

    batch_size: int = setting(64, "B, parallel text streams per step", min=1, max=2**20)
    # 50 for small, medium and large: twice the updates of 100 for the same characters
    # (docs/results.md)
    seq_len: int = setting(
        50, "T, characters per window; gradients stop at window edges", min=1, max=2**20
    )
    # 1.5e-2 with the cosine schedule: the best of a sweep (docs/results.md)
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


def _toml():
    """tomllib (Python 3.11+), else its backport tomli."""
    try:
        import tomllib  # noqa: PLC0415
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # noqa: PLC0415
    return tomllib


# a run's config.json fields that are not options: the run's start records them
SET_BY_THE_RUN = ("init_step", "init_sha256")


@dataclass(frozen=True)
class RunConfig(Settings):
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
        "float32) or float32; auto picks bfloat16 on GPUs with bfloat16 tensor cores (compute "
        "capability 8.0 or more) and, without a GPU, where the CPU has AVX512-BF16 or AMX (the "
        "layernorm cell: float32 only)",
        choices=PRECISIONS,
    )
    kernel: str = setting(
        "auto",
        "how the LSTM layers run their loops: compiled (C++ over MKL, built on first use), "
        "xla, or auto (compiled where it builds, without a GPU, for bfloat16 products on a "
        "CPU with bfloat16 instructions and for float32 products up to 256 units)",
        choices=KERNELS,
    )

    init_from: str = setting(
        "",
        "fine-tune: start from this run's best weights, with its model (options that would "
        "change the weights' shapes are refused) and its vocabulary extended with the "
        "corpus' new characters; the rate and warm-up default to a fine-tuning recipe",
    )
    # set when a fine-tuned run starts: the base checkpoint's step and the SHA-256 of its
    # model.safetensors (init_from is kept as an absolute path)
    init_step: int = field(default=0, metadata={"range": Range(min=0)})
    init_sha256: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> RunConfig:
        """Parse and validate; raises CharlstmError naming `source` on any problem."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise CharlstmError(f"{source} is not valid JSON: {err}") from err
        return from_dict(cls, data, source)

    @classmethod
    def from_options(
        cls, corpus: str = "", corpus_chars: int | None = None, float32_cpu: bool = False,
        **values,
    ) -> RunConfig:  # fmt: skip
        """A RunConfig from flat option values (`units=128, seq_len=50`): the values given
        (None: not given), then the preset's (`preset`, default "auto": `choose_preset` from
        `minutes`, `corpus_chars` and `float32_cpu`), then the defaults. The config names the
        preset used.

        Raises:
            CharlstmError: a value out of its range.
        """
        given = {name: value for name, value in values.items() if value is not None}
        if given.get("minutes") and "epochs" not in given:
            given["epochs"] = None  # the minutes are the budget: no epoch limit cuts them short
        preset = given.get("preset", "auto")
        if preset == "auto":
            preset = choose_preset(given.get("minutes"), corpus_chars, float32_cpu)
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
        """The run's choices in three lines: model, training, schedule and budget; a fourth
        names a fine-tuned run's base."""
        m, t = self.model, self.train
        dropout = f"dropout {m.dropout} per {m.dropout_mask}"
        if m.recurrent_dropout or m.weight_drop:
            dropout += f", recurrent {m.recurrent_dropout}, weight drop {m.weight_drop}"
        schedule = {
            "cosine": f"cosine to {t.lr_floor:g} x it" if t.lr_floor else "cosine to 0",
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
            f"vocabulary {m.vocab_size}, {dropout}"
            + (f", ensemble of {m.members}" if m.members > 1 else "")
            + f" (preset {self.preset})",
            f"train: batch {t.batch_size} x seq_len {t.seq_len}, {optimizer}, "
            f"lr {t.learning_rate:g} after {t.warmup_steps} warm-up steps, {schedule}, "
            f"clip {t.grad_clip:g}, precision {self.precision}",
            f"budget: {budget}, first reached"
            + (f"; early stop after {t.early_stop} stalled passes" if t.early_stop else "")
            + f"; validation every {t.eval_every} steps",
        ] + (
            [f"fine-tuned from: {self.init_from}, step {self.init_step} (model.safetensors "
             f"sha256 {self.init_sha256})"] if self.init_from else []
        )  # fmt: skip

    @classmethod
    def file_options(cls, path: str | Path) -> dict[str, object]:
        """The option values in a settings file (`charlstm train --config FILE`): JSON, or TOML
        for a .toml file; flat option names (`units = 512`), or a run's config.json layout
        (`model`, `train` sections). A run's `corpus` is returned as "corpus"; its vocab_size
        and the fine-tuning record (init_step, init_sha256) are dropped (the run sets them).

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
        for name in SET_BY_THE_RUN:
            flat.pop(name, None)
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
class SamplingConfig(Settings):
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


# characters `charlstm generate`, the served page and `LanguageModel.generate` draw when not
# told how many
GENERATE_LENGTH = 500


@dataclass(frozen=True)
class InferenceConfig(Settings):
    """How a trained model runs when it generates or scores text (`charlstm generate`,
    `evaluate`, `serve`; `charlstm.load`), whatever precision it trained in."""

    # float32: sampling with bfloat16 products measured no faster than float32
    precision: str = setting(
        "float32",
        "dtype of the matrix products while the model runs, whatever it trained in (auto: "
        "bfloat16 on GPUs with bfloat16 tensor cores and on CPUs with AVX512-BF16 or AMX; "
        "the layernorm cell: float32 only)",
        choices=PRECISIONS,
    )
    kernel: str = setting(
        "auto",
        "loops the model runs in: compiled (C++ over MKL, built on first use) or xla (auto: "
        "compiled where it builds, for lstm models: bfloat16 products on a CPU with bfloat16 "
        "instructions; float32 ones to generate at any size and to score up to 256 units; "
        "else xla)",
        choices=KERNELS,
    )


@dataclass(frozen=True)
class DynamicConfig(Settings):
    """How `charlstm.evaluate.dynamic_evaluate` adapts the weights to a text as it reads it.

    Options bear the `dynamic_` prefix so that `charlstm evaluate` keeps them apart from the
    run's own settings. The default rate is the best of a sweep (docs/evaluation.md).
    """

    dynamic_lr: float = setting(
        3e-4, "step size of dynamic evaluation's RMS-normalized update", min=0, min_open=True
    )
    dynamic_decay: float = setting(
        0.0, "pull towards the run's weights at every update (0: none)", min=0, max=1
    )


def run_options(*names: str) -> list[Option]:
    """RunConfig's own options of these names, for the commands that take them as well:
    evaluate reads a text (encoding, errors) and runs a model (precision, which may differ
    from the run's)."""
    return [o for o in options(RunConfig, nested=False) if o.name in names]
