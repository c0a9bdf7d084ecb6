"""A trained model out of the package: a TensorFlow SavedModel, a TFLite step, a .keras file.

savedmodel: a tf.Module whose signatures need nothing of charlstm to run.
    generate(prime: string, length: int32, temperature: float32, top_k: int32, top_p: float32,
             seed: int32) -> text: string
        the whole of `charlstm generate` inside: the prime's characters to ids (one lookup per
        code point; the prime must already be NFC, as most text is), the prime fed through the
        model, then `length` draws with the same strategies and the same (seed, step) random
        numbers as `charlstm.sample.Sampler`, compiled by XLA as the Sampler is, so a seed
        gives the same text as `charlstm generate`; the ids back to characters.
    step(ids: int32 (B,), h: float32 (N, B, H), c: float32 (N, B, H))
        -> logits (B, V), h, c: one character for every stream (an ensemble of M members:
        h and c (M x N, B, H), member 0's N layers first; logits the ln of its averaged
        probabilities).
    assets/chars.json: the vocabulary, one character per id (a JSON list).
tflite: `step` alone, converted (model.tflite): for phones and the browser.
keras: `model.keras`, Keras' own format (config + weights), which loads with
    `keras.saving.load_model(path, safe_mode=True)` once charlstm is imported (its classes are
    registered there and nowhere else: no code runs from the file).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from charlstm.errors import CharlstmError
from charlstm.model import CharModel
from charlstm.sample import MAX_LENGTH, draw_steps, empty_prime, feed, never_drawn
from charlstm.tokenizer import UNK_ID, CharTokenizer

FORMATS = ("savedmodel", "tflite", "keras")


class Exported:
    """The model's `generate` and `step` functions (module docstring) as tf.functions with
    fixed input signatures, over the model's own variables; the vocabulary is constants."""

    def __init__(self, model: CharModel, tokenizer: CharTokenizer):
        self.model = model
        # layer states: N, or M x N for an Ensemble of M members (its states in a row)
        self.num_layers, self.units = len(model.zero_states(1)), model.config.units
        chars = tokenizer.chars
        # code point -> id by binary search over the sorted code points: constants, no table
        order = np.argsort([ord(c) for c in chars])
        self.codes = tf.constant(np.array([ord(c) for c in chars])[order], tf.int32)
        self.ids = tf.constant(order, tf.int32)
        self.chars = tf.constant(chars)
        self.never = tf.constant(never_drawn(tokenizer))
        self.empty = chars.index(empty_prime(tokenizer))
        states = tf.TensorSpec((self.num_layers, None, self.units), tf.float32)
        self.step = tf.function(
            self._step, input_signature=[tf.TensorSpec((None,), tf.int32), states, states]
        )
        scalar = [tf.TensorSpec((), dtype) for dtype in
                  (tf.string, tf.int32, tf.float32, tf.int32, tf.float32, tf.int32)]  # fmt: skip
        self.generate = tf.function(self._generate, input_signature=scalar)

    def _states(self, h, c):
        return [[h[i], c[i]] for i in range(self.num_layers)]

    def _step(self, ids, h, c):
        logits, states = self.model.step(ids, self._states(h, c))
        return {
            "logits": logits,
            "h": tf.stack([s[0] for s in states]),
            "c": tf.stack([s[1] for s in states]),
        }

    def _to_ids(self, prime):
        codes = tf.strings.unicode_decode(prime, "UTF-8")
        at = tf.minimum(tf.searchsorted(self.codes, codes), tf.size(self.codes) - 1)
        known = tf.gather(self.codes, at) == codes
        return tf.where(known, tf.gather(self.ids, at), UNK_ID)

    def _generate(self, prime, length, temperature, top_k, top_p, seed):
        ids = self._to_ids(prime)
        ids = tf.cond(tf.size(ids) > 0, lambda: ids, lambda: tf.constant([self.empty]))
        states = [
            [tf.zeros((1, self.units)), tf.zeros((1, self.units))] for _ in range(self.num_layers)
        ]
        states = feed(self.model, ids[None, :-1], states)
        length = tf.clip_by_value(length, 1, MAX_LENGTH)
        last = tf.reshape(ids[-1], (1,))
        out = self._draw(last, states, length, temperature, top_k, top_p, seed)
        return {"text": tf.strings.reduce_join(tf.gather(self.chars, out))}

    @tf.function(jit_compile=True)
    def _draw(self, last, states, length, temperature, top_k, top_p, seed):
        """`length` ids after `last` (1,), drawn as the Sampler draws them (`draw_steps`)."""
        ids, _, _ = draw_steps(self.model, self.never, last, states, 0, length, temperature,
                               top_k, top_p, seed, filtering=True)  # fmt: skip
        return ids[0]


def _write_savedmodel(model: CharModel, tokenizer: CharTokenizer, path: Path) -> None:
    """Keras' ExportArchive: it tracks the model's variables, we add the two endpoints."""
    import keras  # noqa: PLC0415

    functions = Exported(model, tokenizer)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", functions.generate)
    archive.add_endpoint("step", functions.step)
    archive.write_out(str(path), verbose=False)
    (path / "assets").mkdir(exist_ok=True)
    (path / "assets" / "chars.json").write_text(json.dumps(tokenizer.chars))


def export(run_dir: str | Path, fmt: str, out: str | Path) -> Path:
    """Write run `run_dir`'s best model in format `fmt` (FORMATS) into folder `out` (which
    must not exist); returns the path of what was written."""
    from charlstm.rundir import RunDir  # noqa: PLC0415

    if fmt not in FORMATS:
        raise CharlstmError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    if out.exists():
        raise CharlstmError(f"{out} exists; choose another --out")
    run = RunDir.open(Path(run_dir))
    model = run.load_model()
    out.parent.mkdir(parents=True, exist_ok=True)
    # built in a fresh hidden folder beside `out`, renamed to `out` once complete
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        if fmt == "savedmodel":
            _write_savedmodel(model, run.tokenizer, staging)
            written = staging
        elif fmt == "tflite":
            with tempfile.TemporaryDirectory() as tmp:
                _write_savedmodel(model, run.tokenizer, Path(tmp) / "saved")
                converter = tf.lite.TFLiteConverter.from_saved_model(
                    str(Path(tmp) / "saved"), signature_keys=["step"]
                )
                (staging / "model.tflite").write_bytes(converter.convert())
            written = staging / "model.tflite"
        else:
            model.save(staging / "model.keras")
            written = staging / "model.keras"
        if fmt != "savedmodel":
            (staging / "chars.json").write_text(json.dumps(run.tokenizer.chars))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    staging.rename(out)
    return out / written.relative_to(staging) if written != staging else out
