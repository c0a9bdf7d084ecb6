"""The Python front door: `charlstm.load(run_dir)` and `charlstm.train(text_or_path, out, ...)`.

    import charlstm

    lm = charlstm.train("tinyshakespeare", "runs/demo", minutes=1)     # or a path, or a text
    print(lm.generate("ROMEO:", 200, seed=1))
    for piece in lm.stream("JULIET:", 500):
        print(piece, end="")
    lm.evaluate("To be, or not to be, that is the question")   # a Loss: nats, bits, perplexity
    lm.model.summary()                                          # the Keras model
    lm.info                                                     # what `charlstm info` prints

Everything here goes through the same functions as the command line (`charlstm.trainer.train`,
`charlstm.sample.Sampler`, `charlstm.evaluate`), with the same checks and errors
(CharlstmError).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

from charlstm.config import RunConfig, SamplingConfig
from charlstm.corpus import is_corpus_name, is_pattern
from charlstm.errors import CharlstmError
from charlstm.rundir import RunDir

if TYPE_CHECKING:
    from charlstm.sample import Sampler


class LanguageModel:
    """A trained run, loaded: its best checkpoint's Keras model, tokenizer and config.

    Attributes:
        run: the RunDir.
        model: the Keras model (a CharModel): `model.summary()`, `model(ids, states)` ->
            (logits (B, T, V), states), and `model.fit` with the loss in the README.
        tokenizer: the CharTokenizer.
        config: the RunConfig the run trained with.
    """

    def __init__(self, run_dir: str | Path, precision: str = "float32"):
        from charlstm.precision import resolve  # noqa: PLC0415 (imports TensorFlow)

        self.run = RunDir.open(Path(run_dir))
        self.config: RunConfig = self.run.config
        self.tokenizer = self.run.tokenizer
        self.model = self.run.load_model(matmul_dtype=resolve(precision, self.config.model.cell))
        self._sampler: Sampler | None = None

    def __repr__(self) -> str:
        return f"LanguageModel({str(self.run.path)!r})"

    @property
    def info(self) -> dict:
        """`run_info` of the run: what `charlstm info` prints."""
        return run_info(self.run)

    def stream(
        self,
        prime: str = "",
        length: int = 500,
        num_samples: int | None = None,
        chunk: int = 256,
        **sampling,
    ) -> Iterator[str] | Iterator[tuple[str, ...]]:
        """The text after `prime`, in pieces of `chunk` characters as they are drawn
        (`Sampler.generate`); `sampling`: SamplingConfig's fields (temperature, top_k, top_p,
        seed). The same seed gives the same text whatever the chunk."""
        from charlstm.sample import Sampler  # noqa: PLC0415

        if self._sampler is None:  # its compiled loops serve every later call
            self._sampler = Sampler(self.model, self.tokenizer)
        config = SamplingConfig(**sampling)
        return self._sampler.generate(prime, length, config, num_samples, chunk)

    def generate(
        self, prime: str = "", length: int = 500, num_samples: int | None = None, **sampling
    ) -> str | list[str]:
        """`length` characters after `prime` (without it); with num_samples, a list of that many
        drawn at once. The same seed gives the same text."""
        pieces = self.stream(prime, length, num_samples, **sampling)
        if num_samples is None:
            return "".join(cast(Iterator[str], pieces))
        return ["".join(parts) for parts in zip(*cast(Iterator[tuple[str, ...]], pieces))]

    def evaluate(self, text: str):
        """The loss on `text` as `charlstm evaluate` computes it: a Loss (nats, bits,
        perplexity, chars)."""
        from charlstm.evaluate import eval_windows, evaluate_windows  # noqa: PLC0415

        settings = self.config.train
        windows = eval_windows(self.tokenizer.encode(text), settings.batch_size, settings.seq_len)
        return evaluate_windows(self.model, windows)


def load(run_dir: str | Path, precision: str = "float32") -> LanguageModel:
    """The run in `run_dir`, loaded (its best checkpoint); `precision` of the products
    ("float32", "bfloat16" or "auto", `charlstm.precision`)."""
    return LanguageModel(run_dir, precision)


def train(
    text_or_path: str | Path, out: str | Path, *, resume: bool = False, force: bool = False,
    **options,
) -> LanguageModel:  # fmt: skip
    """Train on a corpus and load the result. `text_or_path`: a file, folder or glob pattern,
    a corpus name (`charlstm corpus list`), or the training text itself (a str with newlines,
    saved under the cache folder's texts/ by its SHA-256); `options`: the command line's
    options by their Python names (units=512, minutes=3, preset="small", ...).

    Raises:
        CharlstmError: as `charlstm train` (bad corpus, occupied `out`, bad option values).
    """
    from charlstm.corpus import corpus_size  # noqa: PLC0415
    from charlstm.trainer import train as train_run  # noqa: PLC0415

    corpus = _corpus(text_or_path)
    unknown = set(options) - set(RunConfig().option_values())
    if unknown:
        raise CharlstmError(f"unknown option(s): {', '.join(sorted(unknown))}")
    config = RunConfig.from_options(corpus, corpus_chars=corpus_size(corpus), **options)
    train_run(out, config, resume=resume, force=force)
    return load(out)


def run_info(run: RunDir) -> dict:
    """A run at a glance, as `charlstm info` prints it: path, corpus and its size in bytes
    here (None where it is not found), the config's lines, parameters (counted on the model
    built from the config: a run without checkpoints has them too), vocabulary size,
    checkpoints, best validation loss and its step, the last log record, and the TensorFlow and
    Keras versions.

    Raises:
        CharlstmError: the config's model does not fit in memory (it is not built).
    """
    import keras  # noqa: PLC0415 (slow import)
    import tensorflow as tf  # noqa: PLC0415

    from charlstm.corpus import corpus_size  # noqa: PLC0415
    from charlstm.model import build_model, check_fits  # noqa: PLC0415

    config = run.config
    check_fits(config.model)
    checkpoints = run.checkpoints()
    progress = checkpoints[-1].progress if checkpoints else {}
    records = run.read_log()
    return {
        "run": str(run.path),
        "corpus": config.corpus,
        "corpus_bytes": corpus_size(config.corpus),
        "config": config.describe(),
        "parameters": build_model(config.model).count_params(),
        "vocab_size": config.model.vocab_size,
        "checkpoints": [c.step for c in checkpoints],
        "best_val": progress.get("best_val"),
        "best_step": progress.get("best_step"),
        "last": records[-1] if records else None,
        "software": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }


def _corpus(text_or_path: str | Path) -> str:
    """A corpus name or path as is; a text saved to a file named by its hash."""
    name = str(text_or_path)
    if isinstance(text_or_path, Path) or is_corpus_name(name) or is_pattern(name):
        return name
    if "\n" not in name:  # a path, or a mistyped one: never a one-line corpus
        if not Path(name).exists():
            raise CharlstmError(
                f"{name}: no such file, nor a corpus name; a text to train on has newlines"
            )
        return name
    from charlstm.download import cache_dir  # noqa: PLC0415
    from charlstm.rundir import atomic_write_bytes  # noqa: PLC0415

    data = name.encode("utf-8")
    path = cache_dir() / "texts" / f"{hashlib.sha256(data).hexdigest()[:32]}.txt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    return str(path)
