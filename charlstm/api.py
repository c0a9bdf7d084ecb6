"""The front door: everything a user does with charlstm, one function each, for the command
line (`charlstm.cli`), the served page (`charlstm.serve`), notebooks and scripts alike.

    import charlstm

    lm = charlstm.train("tinyshakespeare", "runs/demo", minutes=1)     # or a path, or a text
    print(lm.generate("ROMEO:", 200, seed=1))
    for piece in lm.stream("JULIET:", 500):
        print(piece, end="")
    lm.evaluate("To be, or not to be, that is the question")   # a Loss: nats, bits, perplexity
    lm.model.summary()                                          # the Keras model
    lm.info                                                     # what `charlstm info` prints

    train, plan_training(...).run       start or resume a run         charlstm train
    load -> LanguageModel               generate, stream, converse    charlstm generate, serve
    evaluate -> Evaluation              static and dynamic loss       charlstm evaluate
    info, plot, export                                                charlstm info, plot, export
    corpus_list, corpus_info, corpus_fetch, make_text                 charlstm corpus ...

Every default is the one `charlstm.config` declares, and every refusal is a CharlstmError in the
words the command line prints. Importing this module loads no TensorFlow: a function imports it
once its input is checked, so bad input is refused at once. The trainer's events (StartEvent,
EncodeEvent, StepEvent, EvalEvent), TrainResult, StopReason and TrainingInterrupted are here
too, for a face to present them. `quiet_tensorflow()` keeps TensorFlow's start-up notes off the
screen, for a process that wants that (the command line does).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from charlstm import finetune
from charlstm.config import (
    GENERATE_LENGTH,
    DynamicConfig,
    InferenceConfig,
    RunConfig,
    SamplingConfig,
    coerce,
    from_dict,
    options,
)
from charlstm.corpus import DEFAULT_CORPUS, TextStats, load_corpus, resolve
from charlstm.errors import CharlstmError
from charlstm.events import (
    EncodeEvent,
    EvalEvent,
    StartEvent,
    StepEvent,
    StopReason,
    TrainingInterrupted,
    TrainResult,
)
from charlstm.quiet import install as quiet_tensorflow
from charlstm.records import LogRecord
from charlstm.rundir import CONFIG, RunDir, atomic_write_bytes
from charlstm.sources import SOURCES

if TYPE_CHECKING:
    from charlstm.evaluate import Loss
    from charlstm.sample import Conversation, Sampler

__all__ = [
    "DEFAULT_CORPUS",
    "GENERATE_LENGTH",
    "SOURCES",
    "CorpusEntry",
    "EncodeEvent",
    "EvalEvent",
    "Evaluation",
    "Fetched",
    "Inside",
    "LanguageModel",
    "MadeText",
    "StartEvent",
    "StepEvent",
    "StopReason",
    "TextStats",
    "TrainPlan",
    "TrainResult",
    "TrainingInterrupted",
    "check_run",
    "corpus_fetch",
    "corpus_info",
    "corpus_list",
    "evaluate",
    "explain_precision",
    "export",
    "info",
    "is_url",
    "load",
    "make_text",
    "plan_training",
    "plot",
    "quiet_tensorflow",
    "sampling_config",
    "train",
]

# training


# what a resume may change: the budget, and where the run trains (a run trained on N replicas
# resumes on any number that divides its batch)
RESUME_OPTIONS = ("epochs", "minutes", "strategy", "kernel")


@dataclass(frozen=True)
class TrainPlan:
    """A training run with its options checked and merged, before any text is read or any file
    written (`plan_training`); `run` trains it.

    Attributes:
        corpus: what to train on: a text file, folder or glob pattern, or a corpus name.
        corpus_named: whether the call or the settings file named the corpus (else it is
            DEFAULT_CORPUS).
        out: the run directory.
        config: the RunConfig a new run starts with (a resumed run goes on under its own).
        resume, force: as `plan_training` was given them.
        epochs, minutes, strategy, kernel: with resume, a new epoch limit, minutes more,
            another strategy or kernel (None: as the run has it).
    """

    corpus: str
    corpus_named: bool
    out: Path
    config: RunConfig
    resume: bool = False
    force: bool = False
    epochs: int | None = None
    minutes: float | None = None
    strategy: str | None = None
    kernel: str | None = None

    def run(self, callback: Callable[[Any], None] | None = None) -> TrainResult:
        """Train (`charlstm.trainer.train`), reporting its events to `callback`.

        Raises:
            CharlstmError: bad corpus, too little text, an occupied or locked `out`, a NaN loss.
            TrainingInterrupted: on Ctrl-C, after a checkpoint was saved.
        """
        from charlstm.trainer import train as train_loop  # noqa: PLC0415 (imports TensorFlow)

        return train_loop(
            self.out, self.config, resume=self.resume, force=self.force, epochs=self.epochs,
            minutes=self.minutes, strategy=self.strategy, kernel=self.kernel, callback=callback,
        )  # fmt: skip


def plan_training(
    corpus: str | Path | None = None,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    config_file: str | Path | None = None,
    **options,
) -> TrainPlan:
    """Check and merge a training run's options, as `charlstm train` takes them.

    Args:
        corpus: a UTF-8 text file, a folder or glob pattern of them, or a corpus name
            (`corpus_list`); None: the settings file's corpus, else DEFAULT_CORPUS.
        out: the run directory; None: runs/<the corpus' label>.
        resume: continue the run in `out` from its last checkpoint (start it if there is none);
            only RESUME_OPTIONS may differ from its config.json.
        force: replace a run or files already in `out`.
        config_file: options from a JSON or TOML file (`RunConfig.file_options`: flat names, or
            a run's config.json, which repeats that run); those given here win.
        options: RunConfig's options by their flat names (units=512, minutes=3,
            preset="small"); None is "not given". init_from="runs/base" fine-tunes that run
            (`charlstm.finetune`: its model and vocabulary, a fine-tuning recipe).

    Raises:
        CharlstmError: an unknown option, a value of the wrong type or out of range, a bad
            settings file, a resume that would change the run.
    """
    given = _train_options(options)
    if config_file:
        from_file = RunConfig.file_options(config_file)
        from_run = from_file.pop("corpus", None)  # a run's config.json names its corpus
        corpus = corpus or cast("str | None", from_run)
        given = _train_options(from_file, where=str(config_file)) | given
    name = str(corpus) if corpus else DEFAULT_CORPUS
    source = resolve(name)
    out = Path(out) if out is not None else Path("runs") / source.label
    if given.get("init_from"):  # config.json keeps the base by its absolute path
        given["init_from"] = str(Path(given["init_from"]).resolve())
    if resume and (out / CONFIG).exists():
        _check_resume_options(out, str(corpus) if corpus else None, given)
    elif given.get("init_from"):
        given = finetune.options(given["init_from"], given)
    # the corpus' size in bytes stands for its characters when a preset is chosen
    config = RunConfig.from_options(
        name, corpus_chars=source.size, float32_cpu=_float32_cpu(given), **given
    )
    epochs, minutes, strategy, kernel = (
        (given.get(n) for n in RESUME_OPTIONS) if resume else [None] * len(RESUME_OPTIONS)
    )
    return TrainPlan(
        name, bool(corpus), out, config, resume, force, epochs, minutes, strategy, kernel
    )


def _float32_cpu(given: dict[str, Any]) -> bool:
    """Whether a run with these options would run its products in float32 on a CPU (no GPU
    seen; the precision asked for, or auto's choice for this CPU, is float32): there the
    budget keeps the small preset longer (`presets.choose_preset`)."""
    if given.get("preset", "auto") != "auto" or not given.get("minutes"):
        return False  # no choice by budget: nothing to ask TensorFlow
    from charlstm import precision  # noqa: PLC0415 (imports TensorFlow)

    asked = given.get("precision", "auto")
    return (
        not precision.gpu_capabilities()
        and precision.resolve(asked, given.get("cell", "lstm"), gpus=()) == "float32"
    )


def train(
    text_or_path: str | Path | None = None, out: str | Path | None = None, **options
) -> LanguageModel:
    """Train as `charlstm train` does and load the result. `text_or_path`: a file, folder or
    glob pattern, a corpus name (`corpus_list`), or the training text itself (a str with
    newlines, saved under the cache folder's texts/ by its SHA-256); `options`: what
    `plan_training` takes (resume, force, config_file, and the options by their names).

        lm = charlstm.train("tinyshakespeare", "runs/demo", minutes=1)
        lm = charlstm.train(out="runs/demo", resume=True, minutes=5)    # 5 minutes more
        lm = charlstm.train("python-stdlib", "runs/ft", init_from="runs/demo", minutes=3)

    (`plan_training(...).run(callback)` trains with a callback for the events, and returns
    the TrainResult.)

    Raises:
        CharlstmError: as `charlstm train` (bad corpus, occupied `out`, bad option values, a
            resume that would change the run).
    """
    corpus = _corpus(text_or_path) if text_or_path is not None else None
    return load(plan_training(corpus, out, **options).run().run_dir)


def _train_options(values: dict[str, Any], where: str = "") -> dict[str, Any]:
    """The training options given (None: not given), each checked against its field's type;
    a path (init_from, val_file) may be a Path."""
    declared = {o.name: o for o in options(RunConfig)}
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise CharlstmError(f"unknown option(s): {', '.join(unknown)}")
    prefix = f"{where}: " if where else ""
    return {
        name: coerce(
            declared[name].type, str(value) if isinstance(value, Path) else value, prefix + name
        )  # fmt: skip
        for name, value in values.items()
        if value is not None
    }


def _check_resume_options(out: Path, corpus: str | None, given: dict[str, Any]) -> None:
    """With resume, options other than RESUME_OPTIONS must agree with the run's config."""
    saved = RunDir.open(out).config
    values = saved.option_values()
    if "val_file" in given:  # compared as saved: a file by its absolute path
        val_file = given["val_file"]
        given = {**given, "val_file": resolve(val_file).key if val_file else ""}
    differ = [
        f"--{name.replace('_', '-')}"
        for name, value in given.items()
        if name not in RESUME_OPTIONS
        and values[name] != value
        and not (name == "preset" and value == "auto")
    ]
    if corpus and resolve(corpus).key != resolve(saved.corpus).key:
        differ.append("CORPUS")
    if differ:
        raise CharlstmError(
            f"--resume continues {out} as its config.json says; {', '.join(differ)} differ "
            "from it (only --epochs, --minutes and --strategy may change); use another --out "
            "for a new run"
        )


def _corpus(text_or_path: str | Path) -> str:
    """A corpus name or path as is; a text (a str with newlines) saved to a file named by its
    hash."""
    name = str(text_or_path)
    if isinstance(text_or_path, Path):
        return name
    if "\n" not in name:  # a path or a name, or a mistyped one: never a one-line corpus
        if resolve(name).kind == "missing":
            raise CharlstmError(
                f"{name}: no such file, nor a corpus name; a text to train on has newlines"
            )
        return name
    from charlstm.download import cache_dir  # noqa: PLC0415

    data = name.encode("utf-8")
    path = cache_dir() / "texts" / f"{hashlib.sha256(data).hexdigest()[:32]}.txt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    return str(path)


def explain_precision(precision: str, cell: str = "lstm") -> str:
    """One line saying which precision runs and why (`charlstm.precision.explain`)."""
    from charlstm.precision import explain  # noqa: PLC0415 (imports TensorFlow)

    return explain(precision, cell)


# a trained run


def check_run(run_dir: str | Path) -> None:
    """Refuse a folder that is not a readable run, without loading TensorFlow.

    Raises:
        CharlstmError: no such folder, no or a bad config.json or tokenizer.json.
    """
    RunDir.open(Path(run_dir))


def sampling_config(**sampling) -> SamplingConfig:
    """SamplingConfig from its fields by name (temperature, top_k, top_p, seed); the ones not
    given, or None, keep their defaults.

    Raises:
        CharlstmError: an unknown name, a value of the wrong type or out of range.
    """
    return from_dict(SamplingConfig, {k: v for k, v in sampling.items() if v is not None})


def _inference(precision: str | None, kernel: str | None = None) -> InferenceConfig:
    """InferenceConfig with `precision` and `kernel` (None: their defaults), checked."""
    given = {"precision": precision, "kernel": kernel}
    return from_dict(InferenceConfig, {k: v for k, v in given.items() if v is not None})


class LanguageModel:
    """A trained run, loaded: its best checkpoint's Keras model, tokenizer and config.

    Attributes:
        run: the RunDir.
        model: the Keras model (a CharModel): `model.summary()`, `model(ids, states)` ->
            (logits (B, T, V), states), and `model.fit` with the loss in docs/training.md.
        tokenizer: the CharTokenizer.
        config: the RunConfig the run trained with.
        precision: the dtype the model's products run in here ("float32" or "bfloat16").
        kernel: the loops its layers run in ("compiled" or "xla", `charlstm.kernel`).
        generation_kernel: the loop generation runs in ("compiled": the generation op).
    """

    def __init__(
        self, run_dir: str | Path, precision: str | None = None, kernel: str | None = None
    ):
        inference = _inference(precision, kernel)
        self.run = RunDir.open(Path(run_dir))  # a bad run is refused before TensorFlow loads
        from charlstm.kernel import choose  # noqa: PLC0415
        from charlstm.precision import resolve  # noqa: PLC0415 (imports TensorFlow)

        self.config: RunConfig = self.run.config
        self.tokenizer = self.run.tokenizer
        self.run.check_model()  # a damaged run is refused before a kernel is built for it
        model = self.config.model
        self.precision = resolve(inference.precision, model.cell)
        self.kernel = choose(inference.kernel, self.precision, model.cell, model.units)
        self.generation_kernel = choose(
            inference.kernel,
            self.precision,
            model.cell,
            model.units,
            generation=True,
            members=model.members,
        )
        self.model = self.run.load_model(matmul_dtype=self.precision, kernel=self.kernel)
        self._sampler: Sampler | None = None

    def __repr__(self) -> str:
        return f"LanguageModel({str(self.run.path)!r})"

    @property
    def info(self) -> RunInfo:
        """The run at a glance, as `charlstm info` prints it (`info`)."""
        return _run_info(self.run)

    @property
    def sampler(self) -> Sampler:
        """The model's Sampler: its compiled loops serve every call after the first."""
        if self._sampler is None:
            from charlstm.sample import Sampler  # noqa: PLC0415

            self._sampler = Sampler(self.model, self.tokenizer, self.generation_kernel)
        return self._sampler

    def stream(
        self,
        prime: str = "",
        length: int = GENERATE_LENGTH,
        num_samples: int | None = None,
        chunk: int = 256,
        stop: Sequence[str] = (),
        **sampling,
    ) -> Iterator[str] | Iterator[tuple[str, ...]]:
        """The text after `prime`, in pieces of `chunk` characters as they are drawn
        (`Sampler.generate`); with num_samples, tuples of the next piece of each sample.
        stop: each sample ends just after the first of these texts it draws (kept).
        `sampling`: SamplingConfig's fields (temperature, top_k, top_p, seed). The same seed
        gives the same text whatever the chunk.

        Raises:
            CharlstmError: a bad sampling setting at once; a length outside 1..MAX_LENGTH or
                too many samples for memory when the first piece is asked for.
        """
        config = sampling_config(**sampling)
        return self.sampler.generate(prime, length, config, num_samples, chunk, stop)

    def generate(
        self,
        prime: str = "",
        length: int = GENERATE_LENGTH,
        num_samples: int | None = None,
        stop: Sequence[str] = (),
        **sampling,
    ) -> str | list[str]:
        """`length` characters after `prime` (without it); with num_samples, a list of that many
        drawn at once; each ending just after the first of the `stop` texts it draws (kept).
        The same seed gives the same text."""
        pieces = self.stream(prime, length, num_samples, stop=stop, **sampling)
        if num_samples is None:
            return "".join(cast(Iterator[str], pieces))
        return ["".join(parts) for parts in zip(*cast(Iterator[tuple[str, ...]], pieces))]

    def conversation(self, keep_state: bool = False, **sampling) -> Conversation:
        """Turns of one text, for a loop that answers each line (`charlstm generate
        --interactive`): `reply(prime, length)` yields the answer piece by piece. keep_state:
        each turn continues the text so far, else starts afresh."""
        from charlstm.sample import Conversation  # noqa: PLC0415

        return Conversation(self.sampler, sampling_config(**sampling), keep_state)

    def check_request(self, length: int, num_samples: int | None = None) -> None:
        """Refuse what `generate` would refuse: a length outside 1..MAX_LENGTH, or a batch of
        samples too big for memory (CharlstmError)."""
        self.sampler.check_request(length, num_samples)

    def evaluate(self, text: str, streams: int | None = None) -> Loss:
        """The loss on `text` as `charlstm evaluate` computes it: a Loss (nats, bits,
        perplexity, chars); `streams` as `evaluate`'s."""
        return _static_loss(self.model, self.config, self.tokenizer.encode(text), streams)[0]

    def inside(self, text: str, layer: int = 0, quantity: str = "c") -> Inside:
        """`text` read from zero states, as the inside view of the served page shows it: layer
        `layer`'s `quantity` (c, h, or a gate: i, f, g, o) after each character, and the five
        likeliest next characters (`charlstm.explore.probe.trace`, which has every layer and
        gate at once). An ensemble's layers are its members' in a row: member m's layer l is
        layer m x N + l.

        Raises:
            CharlstmError: an empty text, a layer or quantity the model has not, a cell other
                than lstm.
        """
        model = self.config.model
        layers = model.num_layers * model.members  # an ensemble's members' in a row
        if not text:
            raise CharlstmError("text must have at least one character")
        if not 0 <= layer < layers:
            raise CharlstmError(f"layer must be 0 to {layers - 1}, got {layer}")
        if quantity not in INSIDE_QUANTITIES:
            raise CharlstmError(
                f"quantity must be one of {', '.join(INSIDE_QUANTITIES)}, got {quantity!r}"
            )
        if self.config.model.cell != "lstm":
            raise CharlstmError(f"the inside view reads lstm cells, not {self.config.model.cell}")
        from charlstm.explore.probe import trace  # noqa: PLC0415

        seen = trace(self.model, self.tokenizer, text)
        top = [seen.top_next(t) for t in range(len(seen.chars))]
        return Inside(seen.chars, seen.layers[layer][quantity], top, layers)


# what `LanguageModel.inside` shows: the cell state, the hidden state, the gates
INSIDE_QUANTITIES = ("c", "h", "i", "f", "g", "o")


@dataclass(frozen=True)
class Inside:
    """A text as one layer of a model saw it (`LanguageModel.inside`).

    Attributes:
        chars: the T characters read (after NFC; unknown ones as U+FFFD).
        values: (T, H) float32, the quantity after each character.
        top: T lists of the five likeliest next characters, (character, probability).
        layers: the model's number of layers.
    """

    chars: list[str]
    values: Any
    top: list[list[tuple[str, float]]]
    layers: int


def load(
    run_dir: str | Path, precision: str | None = None, kernel: str | None = None
) -> LanguageModel:
    """The run in `run_dir`, loaded (its best checkpoint); `precision` of the products
    ("float32", "bfloat16" or "auto"; None: InferenceConfig's default, float32), `kernel` of
    the loops ("auto", "compiled" or "xla"; None: auto, `charlstm.kernel.choose`).

    Raises:
        CharlstmError: not a run, a damaged one, a model too big for memory, a bad precision,
            a compiled kernel that cannot run here.
    """
    return LanguageModel(run_dir, precision, kernel)


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate` found.

    Attributes:
        run_dir, text_file: as given.
        precision: the dtype the products ran in.
        streams: how many streams the static loss read the text as.
        static: the loss of the run's best checkpoint; with dynamic evaluation, of the one-
            stream layout the dynamic loss reads.
        dynamic: the loss while the weights adapt to the text (None without).
        settings: dynamic evaluation's settings (None without).
    """

    run_dir: str
    text_file: str
    precision: str
    streams: int
    static: Loss
    dynamic: Loss | None = None
    settings: DynamicConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object `charlstm evaluate --json` prints."""
        head = {"run_dir": self.run_dir, "text_file": self.text_file,
                "precision": self.precision, "streams": self.streams}  # fmt: skip
        if self.dynamic is None or self.settings is None:
            return {**head, **self.static.as_dict()}
        return {
            **head,
            **dataclasses.asdict(self.settings),
            "static": self.static.as_dict(),
            "dynamic": self.dynamic.as_dict(),
        }


def evaluate(
    run_dir: str | Path,
    text_file: str | Path,
    *,
    dynamic: bool = False,
    dynamic_lr: float | None = None,
    dynamic_decay: float | None = None,
    encoding: str | None = None,
    errors: str | None = None,
    precision: str | None = None,
    kernel: str | None = None,
    streams: int | None = None,
) -> Evaluation:
    """The loss of `run_dir`'s best checkpoint on `text_file` (a file, folder, pattern or
    corpus name), as `charlstm evaluate` reports it. None: the setting's declared default.

    Args:
        dynamic: also score the text while adapting the weights to it (dynamic evaluation):
            the text is read as one stream, each window scored and then learned from, beside
            the static loss of the same layout; the run directory is not changed.
        dynamic_lr, dynamic_decay: DynamicConfig's settings (with dynamic only).
        encoding, errors: how to read the text (RunConfig's).
        precision, kernel: InferenceConfig's.
        streams: read the text as this many parallel streams, each from zero state, in
            windows of the run's T (None: the run's batch size; fewer where the text is too
            short for each to hold a window). Each stream's first characters are predicted
            from little context, so more streams score a little higher.

    Raises:
        CharlstmError: a bad setting, run or text.
    """
    given = {"dynamic_lr": dynamic_lr, "dynamic_decay": dynamic_decay}
    given = {name: value for name, value in given.items() if value is not None}
    if given and not dynamic:
        raise CharlstmError(f"{', '.join(given)}: dynamic evaluation's settings; add dynamic")
    settings: DynamicConfig = from_dict(DynamicConfig, given)
    if streams is not None and dynamic:
        raise CharlstmError("streams: dynamic evaluation reads the text as one stream")
    if streams is not None and streams < 1:
        raise CharlstmError(f"streams must be at least 1, not {streams}")
    inference = _inference(precision, kernel)
    encoding, errors = _reading(encoding, errors)
    # neither needs TensorFlow: a bad run or text is refused at once
    run = RunDir.open(Path(run_dir))
    text = load_corpus(text_file, encoding, errors).text
    from charlstm.kernel import choose  # noqa: PLC0415
    from charlstm.precision import resolve  # noqa: PLC0415 (imports TensorFlow)

    cell, units = run.config.model.cell, run.config.model.units
    dtype = resolve(inference.precision, cell)
    run.check_model()  # a damaged run is refused before a kernel is built for it
    loops = choose(inference.kernel, dtype, cell, units)
    ids = run.tokenizer.encode(text)
    if not dynamic:
        model = run.load_model(matmul_dtype=dtype, kernel=loops)
        loss, used = _static_loss(model, run.config, ids, streams)
        return Evaluation(str(run_dir), str(text_file), dtype, used, loss)
    from charlstm.data import eval_windows  # noqa: PLC0415
    from charlstm.evaluate import dynamic_evaluate, evaluate_windows  # noqa: PLC0415

    # one stream: each window is predicted by weights that have read only the text before it
    windows = eval_windows(ids, 1, run.config.train.seq_len)
    # a fresh copy in memory: dynamic evaluation changes its weights
    model = run.load_model(matmul_dtype=dtype, kernel=loops)
    static = evaluate_windows(model, windows)
    adapted = dynamic_evaluate(model, windows, settings)
    return Evaluation(str(run_dir), str(text_file), dtype, 1, static, adapted, settings)


def _static_loss(model, config: RunConfig, ids, streams: int | None = None) -> tuple[Loss, int]:
    """The loss on ids read as `streams` streams (None: the run's batch_size) of the run's
    seq_len windows, and how many streams that was (fewer for a short text)."""
    from charlstm.data import eval_windows  # noqa: PLC0415
    from charlstm.evaluate import evaluate_windows  # noqa: PLC0415 (imports TensorFlow)

    settings = config.train
    windows = eval_windows(ids, streams or settings.batch_size, settings.seq_len)
    return evaluate_windows(model, windows), windows.inputs.shape[0]


def _reading(encoding: str | None, errors: str | None) -> tuple[str, str]:
    """How to read a text: encoding and errors as given, else RunConfig's defaults; checked
    against their declarations."""
    declared = {o.name: o for o in options(RunConfig, nested=False)}
    chosen = []
    for name, value in (("encoding", encoding), ("errors", errors)):
        option = declared[name]
        given = str(option.default) if value is None else coerce(str, value, name)
        option.check(given)
        chosen.append(given)
    return chosen[0], chosen[1]


@dataclass(frozen=True)
class RunInfo:
    """A run at a glance, as `charlstm info` prints it.

    Attributes:
        run: the run directory; corpus: its config's corpus; corpus_bytes: that corpus' size
            here (None where it is not found).
        config: the config's choices in three lines (`RunConfig.describe`).
        parameters: the model's, counted on the model built from the config (a run without
            checkpoints has them too); vocab_size: V.
        checkpoints: the complete checkpoints' steps, oldest first.
        best_val, best_step: the best validation loss (nats/char) and its step.
        last: the last validation record (None before the first).
        tensorflow, keras: the versions running here.
        kernel: the loops its training runs on here (`charlstm.kernel.describe`), or why the
            kernel its config asks for cannot run here.
        device: what trains here (`charlstm.precision.describe_device`).
    """

    run: str
    corpus: str
    corpus_bytes: int | None
    config: list[str]
    parameters: int
    vocab_size: int
    checkpoints: list[int]
    best_val: float | None
    best_step: int | None
    last: LogRecord | None
    tensorflow: str
    keras: str
    kernel: str
    device: str

    def to_dict(self) -> dict[str, Any]:
        """As JSON holds it (`GET /info` of `charlstm serve`)."""
        data = dataclasses.asdict(self)
        data["last"] = self.last.to_dict() if self.last is not None else None
        return data


def info(run_dir: str | Path) -> RunInfo:
    """The run at a glance (RunInfo), as `charlstm info` prints it.

    Raises:
        CharlstmError: not a run; the config's model does not fit in memory (it is not built).
    """
    return _run_info(RunDir.open(Path(run_dir)))  # a bad run is refused before TensorFlow loads


def _run_info(run: RunDir) -> RunInfo:
    import keras  # noqa: PLC0415 (slow import)
    import tensorflow as tf  # noqa: PLC0415

    from charlstm import kernel, precision  # noqa: PLC0415
    from charlstm.model import build_model, check_fits  # noqa: PLC0415

    config = run.config
    check_fits(config.model)
    checkpoints = run.checkpoints()
    progress = checkpoints[-1].progress if checkpoints else None
    records = run.read_log()
    return RunInfo(
        run=str(run.path),
        corpus=config.corpus,
        corpus_bytes=resolve(config.corpus).size,
        config=config.describe(),
        parameters=build_model(config.model).count_params(),
        vocab_size=config.model.vocab_size,
        checkpoints=[c.step for c in checkpoints],
        best_val=progress.best_val if progress else None,
        best_step=progress.best_step if progress else None,
        last=records[-1] if records else None,
        tensorflow=tf.__version__,
        keras=keras.__version__,
        kernel=_kernel_here(config, kernel, precision),
        device=precision.describe_device(),
    )


def _kernel_here(config: RunConfig, kernel, precision) -> str:
    dtype = precision.resolve(config.precision, config.model.cell)
    try:
        chosen = kernel.choose(config.kernel, dtype, config.model.cell, config.model.units)
        return kernel.describe(chosen)
    except CharlstmError as err:
        return f"kernel: {err}"


def plot(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw the run's learning curves (training and validation loss, bits/char, against step)
    into a PNG at `out` (None: RUN_DIR/curves.png, replaced), written whole or not at all;
    returns its path.

    Raises:
        CharlstmError: not a run, nothing logged yet, `out` exists, or it cannot be written.
    """
    run = RunDir.open(Path(run_dir))
    if out is not None and Path(out).exists():
        raise CharlstmError(f"{out} exists; choose another --out")
    records = run.read_log()
    if not records:
        raise CharlstmError(f"{run_dir}: no validation pass logged yet; nothing to plot")
    import io  # noqa: PLC0415

    from matplotlib import pyplot  # noqa: PLC0415 (slow import)

    from charlstm.explore.plots import plot_losses  # noqa: PLC0415

    path = Path(out) if out is not None else run.path / "curves.png"
    ax = plot_losses(records, label="")
    ax.set_title(f"{run.path.name}: {run.config.describe()[0].removeprefix('model: ')}", fontsize=8)
    ax.figure.tight_layout()
    png = io.BytesIO()
    ax.figure.savefig(png, format="png", dpi=120)
    pyplot.close(ax.figure)
    try:
        atomic_write_bytes(path, png.getvalue())
    except OSError as err:
        raise CharlstmError(f"{path}: cannot write ({err.strerror})") from err
    return path


def export(run_dir: str | Path, fmt: str, out: str | Path) -> Path:
    """Write the run's best model where charlstm is not needed to run it (`charlstm.export`:
    fmt savedmodel, tflite or keras, into folder `out`; `charlstm.web`: fmt web, the page
    `out`); `out` must not exist. Returns the path of what was written.

    Raises:
        CharlstmError: not a run, `out` exists or lies under a file, an unknown format.
    """
    check_run(run_dir)  # a bad run is refused before TensorFlow loads
    if Path(out).exists():
        raise CharlstmError(f"{out} exists; choose another --out")
    nearest = next(p for p in Path(out).absolute().parents if p.exists())
    if not nearest.is_dir():
        raise CharlstmError(f"{out}: {nearest} is a file, not a folder; choose another --out")
    if fmt == "web":
        from charlstm.web import write_page  # noqa: PLC0415 (imports TensorFlow)

        return write_page(run_dir, out)
    from charlstm.export import export as export_run  # noqa: PLC0415 (imports TensorFlow)

    return export_run(run_dir, fmt, out)


# corpora


@dataclass(frozen=True)
class CorpusEntry:
    """A corpus the catalogue knows by name (`corpus_list`).

    Attributes:
        name, licence, source: its name, licence and where it comes from, in words.
        bytes: its size (for one to download, the download's); None where not known, or for
            one built on the fly.
        url: where it downloads from; None for one that ships with charlstm or is built.
        path: its text here; None if it is not fetched yet, or built on the fly.
    """

    name: str
    bytes: int | None
    licence: str
    source: str
    url: str | None
    path: Path | None


def corpus_list() -> list[CorpusEntry]:
    """Every catalogued corpus."""
    from charlstm.corpus import catalogue, corpus_path  # noqa: PLC0415

    return [
        CorpusEntry(e.name, e.bytes, e.licence, e.source, e.url, corpus_path(e.name))
        for e in catalogue()
    ]  # fmt: skip


def corpus_info(
    name_or_path: str | Path, encoding: str | None = None, errors: str | None = None
) -> TextStats:
    """Characters, distinct characters, the most common ones, lines, and two reference points
    for a model's bits/char (`charlstm.corpus.text_stats`); encoding and errors: RunConfig's.

    Raises:
        CharlstmError: not a readable text nor a corpus name.
    """
    from charlstm.corpus import text_stats  # noqa: PLC0415

    return text_stats(load_corpus(name_or_path, *_reading(encoding, errors)).text)


@dataclass(frozen=True)
class Fetched:
    """A corpus' text in the cache folder, and whether this call downloaded it."""

    path: Path
    fetched: bool


def is_url(name_or_url: str) -> bool:
    """Whether `corpus_fetch` reads this as a URL rather than a corpus name."""
    return "://" in name_or_url


def corpus_fetch(
    name_or_url: str,
    sha256: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> Fetched:
    """Download a catalogued corpus, or the file at a URL, into the cache folder
    ($CHARLSTM_DATA, else the user's cache folder), checking its size and SHA-256 where known
    (for a URL, `sha256` if given). A cut download resumes where it stopped; a file already
    there is not downloaded again. progress(bytes so far, total or None) as it goes.

    Raises:
        CharlstmError: not a corpus to download, sha256 for a corpus name, a failed download.
    """
    if is_url(name_or_url):
        from charlstm.download import cache_dir, download  # noqa: PLC0415

        name = name_or_url.rstrip("/").rsplit("/", 1)[-1] or "download"
        got = download(name_or_url, cache_dir() / name, sha256=sha256, progress=progress)
        return Fetched(got.path, got.fetched)
    if sha256 is not None:
        raise CharlstmError("sha256 is for a URL; the catalogue has the corpus' own")
    from charlstm.corpus import fetch_corpus  # noqa: PLC0415

    path, fetched = fetch_corpus(name_or_url, progress=progress)
    return Fetched(path, fetched)


@dataclass(frozen=True)
class MadeText:
    """A text of known entropy that `make_text` wrote.

    Attributes:
        source: the process and its settings (`charlstm.sources.Source.name`).
        path, chars: where it is and how many characters it has.
        rate_bits, rate_nats: the process' entropy rate: the best loss any model can reach.
        text_bits: the process' own loss on this text, bits/char.
    """

    source: str
    path: Path
    chars: int
    rate_bits: float
    rate_nats: float
    text_bits: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON object `charlstm corpus make --json` prints."""
        return {**dataclasses.asdict(self), "path": str(self.path)}


def make_text(source: str, out: str | Path, *, force: bool = False, **settings) -> MadeText:
    """Write a text drawn from process `source` (SOURCES: markov, brackets, copy) with its
    settings (the keyword arguments of SOURCES[source]) to file `out`.

    Raises:
        CharlstmError: an unknown source or setting, a bad value, `out` exists without force.
    """
    if source not in SOURCES:
        raise CharlstmError(f"{source}: not a text source ({', '.join(SOURCES)})")
    make = cast(Callable[..., Any], SOURCES[source])
    params = inspect.signature(make).parameters
    unknown = sorted(set(settings) - set(params))
    if unknown:
        raise CharlstmError(f"{source}: unknown setting(s) {', '.join(unknown)}")
    values = {k: coerce(type(params[k].default), v, k) for k, v in settings.items()}
    path = Path(out)
    if path.exists() and not force:
        raise CharlstmError(f"{path} exists; --force replaces it")
    made = make(**values)
    try:
        atomic_write_bytes(path, made.text.encode("utf-8"))
    except OSError as err:
        raise CharlstmError(f"{path}: cannot write ({err.strerror})") from err
    return MadeText(made.name, path, len(made.text), made.rate_bits, made.rate_nats,
                    float(made.bits.mean()))  # fmt: skip
