"""Fine-tuning: a new run that starts from another run's best weights.

    base run (config, vocabulary of V characters, best checkpoint) + a new corpus
      -> the base's model config; its vocabulary with the corpus' new characters appended (V')
      -> a model built as a fresh one is (seeded), then the base's weights placed over it:
         every tensor whole, except along the vocabulary's axis (embedding (V', E) rows, head
         kernel (H, V') columns, head bias (V',)), where the base fills the first V entries and
         the new characters keep their fresh initialization.

`options` merges a fine-tuning run's options without loading TensorFlow: the base's model
(options that would change a weight's shape are refused), its batch, window and regularization,
and the fine-tuning recipe (FINE_TUNE_RATE x the base's peak rate, FINE_TUNE_WARMUP steps of
warm-up); options given win. `Base.read` reads the base checkpoint once and hashes those bytes
(config.json records the hash); `Base.place` puts its weights into a model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from charlstm.errors import CharlstmError
from charlstm.rundir import MODEL, RunDir, tensors_from_bytes, variables_by_path
from charlstm.tokenizer import CharTokenizer

# the options that set the weights' shapes: a fine-tuned run keeps its base's
SHAPES = ("embedding_dim", "units", "num_layers", "cell", "tie_embeddings", "members")
# the base's options a fine-tuned run keeps unless given: the model's, and how it was fed and
# regularized (the budget, schedule position, data split, seed and machine are the new run's)
CARRIED = (
    *SHAPES, "dropout", "dropout_mask", "recurrent_dropout", "weight_drop",
    "batch_size", "seq_len", "schedule", "lr_floor", "lr_decay", "plateau_factor",
    "plateau_patience", "weight_decay", "grad_clip", "ema",
)  # fmt: skip
# the recipe: a peak rate this multiple of the base's, reached after this many steps (a lower
# rate was worse: Tiny Shakespeare -> python-stdlib, 3 minutes, 1.375 nats/char at x1, 1.440
# at x0.3, 1.572 at x0.1; docs/results.md)
FINE_TUNE_RATE = 1.0
FINE_TUNE_WARMUP = 10


def options(init_from: str | Path, given: dict[str, Any]) -> dict[str, Any]:
    """The options of a run fine-tuned from run `init_from`: the base's CARRIED options and
    the recipe, then `given` (flat option values, as `RunConfig.from_options` takes them).

    Raises:
        CharlstmError: `init_from` is not a run with a complete checkpoint; a given option
            would change the shape of a weight, or picks another preset.
    """
    base = RunDir.open(Path(init_from))
    base.check_model()  # a complete, intact checkpoint whose weights the config describes
    values = base.config.option_values()
    preset = given.get("preset", "auto")
    reshaped = [f"--{name.replace('_', '-')}" for name in SHAPES
                if name in given and given[name] != values[name]]  # fmt: skip
    if preset not in ("auto", base.config.preset):
        reshaped.append("--preset")
    if reshaped:
        m = base.config.model
        raise CharlstmError(
            f"--init-from {init_from} keeps its model ({m.cell} {m.num_layers} x {m.units}, "
            f"embedding {m.embedding_dim}{', tied' if m.tie_embeddings else ''}"
            f"{f', ensemble of {m.members}' if m.members > 1 else ''}); "
            f"{', '.join(reshaped)} would change its weights' shapes: leave them out, or train "
            "from scratch"
        )
    recipe = {
        "learning_rate": values["learning_rate"] * FINE_TUNE_RATE,  # type: ignore[operator]
        "warmup_steps": FINE_TUNE_WARMUP,
        "preset": base.config.preset,
    }
    carried = {name: values[name] for name in CARRIED}
    return carried | recipe | given | {"init_from": str(base.path.resolve())}


@dataclass(frozen=True)
class Base:
    """A fine-tuned run's base, read once.

    Attributes:
        path: the base run's folder (absolute).
        step: its best checkpoint's step, whose weights these are.
        sha256: the SHA-256 of that checkpoint's model.safetensors, as read.
        tokenizer: the base's vocabulary (V characters).
        tensors: its weights by variable path.
    """

    path: Path
    step: int
    sha256: str
    tokenizer: CharTokenizer
    tensors: dict[str, np.ndarray]

    @classmethod
    def read(cls, init_from: str | Path) -> Base:
        """The best checkpoint of run `init_from`, its bytes read once: hashed and parsed.

        Raises:
            CharlstmError: not a run, no complete checkpoint, a damaged weights file.
        """
        run = RunDir.open(Path(init_from))
        checkpoint = run.check_model()
        source = checkpoint.path / MODEL
        try:
            data = source.read_bytes()
        except OSError as err:
            raise CharlstmError(f"{source}: cannot read ({err.strerror})") from err
        tensors = tensors_from_bytes(data, str(source))
        digest = hashlib.sha256(data).hexdigest()
        return cls(run.path.resolve(), checkpoint.step, digest, run.tokenizer, tensors)

    def place(self, model) -> None:
        """Assign the base's weights to `model`, a model of the base's config with a
        vocabulary that extends the base's (module docstring): whole tensors, and the first V
        entries along the vocabulary's axis.

        Raises:
            CharlstmError: the model's weights are not the base's, or not only wider along
                the vocabulary's axis.
        """
        by_path = variables_by_path(model.weights)
        if set(by_path) != set(self.tensors):
            raise CharlstmError(f"{self.path}: its weights are not those of this model")
        for name, variable in by_path.items():
            known = self.tensors[name]
            value = np.array(variable.numpy())
            if value.ndim != known.ndim or any(k > v for k, v in zip(known.shape, value.shape)):
                raise CharlstmError(
                    f"{self.path}: weight {name} is {list(known.shape)}, the model's "
                    f"{list(value.shape)}"
                )
            value[tuple(slice(0, size) for size in known.shape)] = known
            variable.assign(value)
