"""`charlstm export`: each format loads in a fresh process that does not import charlstm (but
for .keras, whose classes charlstm registers) and gives the run's own logits; the SavedModel
gives `charlstm generate`'s text for the same seed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from charlstm.rundir import RunDir
from tests.test_cli import ENV, run_charlstm

IDS = [3, 5, 7, 2, 9, 4]


def _reference_logits(run_dir) -> np.ndarray:
    """The run's model fed IDS one step at a time from zero states: (len(IDS), V)."""
    run = RunDir.open(run_dir)
    model = run.load_model()
    states = model.zero_states(1)
    rows = []
    for i in IDS:
        logits, states = model.step(np.array([i], np.int32), states)
        rows.append(np.asarray(logits)[0])
    return np.stack(rows)


def _in_fresh_python(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


_STEP_LOOP = """
import json, sys
import numpy as np
{load}
assert not any(name.startswith("charlstm") for name in sys.modules) or {allow_charlstm}
ids = {ids}
h = np.zeros(({layers}, 1, {units}), np.float32)
c = np.zeros(({layers}, 1, {units}), np.float32)
rows = []
for i in ids:
    logits, h, c = step(np.array([i], np.int32), h, c)
    rows.append(np.asarray(logits)[0].tolist())
print(json.dumps({{"logits": rows}}))
"""


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exports")
    paths = {}
    for fmt in ("savedmodel", "tflite", "keras"):
        done = run_charlstm("export", trained_run, "--format", fmt, "--out", folder / fmt,
                            timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        paths[fmt] = done.stdout.strip()
    return paths


def _step_logits(exported_path, load: str, trained_run, allow_charlstm=False) -> np.ndarray:
    config = RunDir.open(trained_run).config.model
    code = _STEP_LOOP.format(load=load.format(path=exported_path), ids=IDS,
                             layers=config.num_layers, units=config.units,
                             allow_charlstm=allow_charlstm)  # fmt: skip
    return np.array(_in_fresh_python(code)["logits"])


@pytest.mark.slow  # exports three formats: a minute
def test_savedmodel_step_gives_the_runs_logits(exported, trained_run):
    load = """
import tensorflow as tf
loaded = tf.saved_model.load({path!r})
def step(ids, h, c):
    out = loaded.signatures["step"](ids=tf.constant(ids), h=tf.constant(h), c=tf.constant(c))
    return out["logits"].numpy(), out["h"].numpy(), out["c"].numpy()
"""
    got = _step_logits(exported["savedmodel"], load, trained_run)
    np.testing.assert_allclose(got, _reference_logits(trained_run), rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # exports three formats: a minute
def test_savedmodel_generates_the_commands_text_for_a_seed(exported, trained_run):
    code = f"""
import json
import tensorflow as tf
loaded = tf.saved_model.load({exported["savedmodel"]!r})
out = loaded.signatures["serving_default"](
    prime=tf.constant("The"), length=tf.constant(60), temperature=tf.constant(0.7),
    top_k=tf.constant(0), top_p=tf.constant(1.0), seed=tf.constant(3))
print(json.dumps({{"text": out["text"].numpy().decode("utf-8")}}))
"""
    text = _in_fresh_python(code)["text"]
    cli = run_charlstm("generate", trained_run, "--prime", "The", "--length", 60, "--seed", 3,
                       "--temperature", 0.7)  # fmt: skip
    assert cli.stdout == "The" + text + "\n"


@pytest.mark.slow  # exports three formats: a minute
def test_tflite_step_gives_the_runs_logits(exported, trained_run):
    load = """
import tensorflow as tf
interpreter = tf.lite.Interpreter(model_path={path!r})
runner = interpreter.get_signature_runner()
def step(ids, h, c):
    out = runner(ids=ids, h=h, c=c)
    return out["logits"], out["h"], out["c"]
"""
    got = _step_logits(exported["tflite"], load, trained_run)
    np.testing.assert_allclose(got, _reference_logits(trained_run), rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # exports three formats: a minute
def test_keras_file_loads_in_safe_mode_with_only_charlstms_classes(exported, trained_run):
    load = """
import keras
import tensorflow as tf
import charlstm.model  # registers charlstm's classes: the file names them, nothing else
model = keras.saving.load_model({path!r}, safe_mode=True)
def step(ids, h, c):
    states = [[tf.constant(h[i]), tf.constant(c[i])] for i in range(h.shape[0])]
    logits, states = model.step(tf.constant(ids), states)
    return logits.numpy(), np.stack([s[0] for s in states]), np.stack([s[1] for s in states])
"""
    got = _step_logits(exported["keras"], load, trained_run, allow_charlstm=True)
    np.testing.assert_allclose(got, _reference_logits(trained_run), rtol=1e-5, atol=1e-6)


def test_export_never_writes_over_a_folder_that_exists(trained_run, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("mine")
    done = run_charlstm("export", trained_run, "--format", "keras", "--out", tmp_path / "mine")
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "exists" in done.stderr
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["keep.txt"]
