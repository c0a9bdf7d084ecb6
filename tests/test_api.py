"""charlstm.train and charlstm.load: the Python front door gives what the command line gives."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import charlstm
from charlstm import api, precision
from charlstm.config import DynamicConfig, InferenceConfig, SamplingConfig
from charlstm.errors import CharlstmError
from tests.conftest import make_text
from tests.test_cli import run_charlstm

TINY = {"embedding_dim": 8, "units": 16, "num_layers": 2, "batch_size": 4, "seq_len": 16,
        "epochs": 1, "eval_every": 20, "sample_chars": 0}  # fmt: skip


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A tiny run trained from a text given as a str."""
    out = tmp_path_factory.mktemp("api") / "run"
    return charlstm.train(make_text(), out, **TINY)


def test_train_on_a_text_returns_the_loaded_run(lm):
    assert lm.config.model.units == 16 and lm.config.train.sample_chars == 0
    assert lm.info.parameters == lm.model.count_params() > 0
    assert lm.info.vocab_size == lm.tokenizer.vocab_size
    assert lm.info.best_step in lm.info.checkpoints
    lines = []
    lm.model.summary(print_fn=lambda line, **_: lines.append(line))
    assert any("char_lstm" in line for line in lines)


def test_generate_is_the_samplers_text_and_repeats_with_its_seed(lm):
    from charlstm.sample import Sampler

    text = lm.generate("The", 80, seed=4, temperature=0.7)
    assert len(text) == 80 and text == lm.generate("The", 80, seed=4, temperature=0.7)
    reference = "".join(
        Sampler(lm.model, lm.tokenizer).generate("The", 80, SamplingConfig(seed=4, temperature=0.7))
    )
    assert text == reference
    assert "".join(lm.stream("The", 80, seed=4, temperature=0.7)) == text
    several = lm.generate("The", 30, num_samples=3, seed=1)
    assert len(several) == 3 and all(len(s) == 30 for s in several)


def test_evaluate_gives_the_commands_numbers_with_the_same_default_precision(lm, tmp_path):
    text = make_text(seed=3)
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    done = run_charlstm("evaluate", lm.run.path, tmp_path / "t.txt", "--json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["precision"] == InferenceConfig().precision == lm.precision
    ours = api.evaluate(lm.run.path, tmp_path / "t.txt").to_dict()
    assert ours.keys() == printed.keys() and ours["chars"] == printed["chars"]
    assert (ours["run_dir"], ours["text_file"]) == (printed["run_dir"], printed["text_file"])
    assert ours["nats_per_char"] == pytest.approx(printed["nats_per_char"])
    assert lm.evaluate(text).nats == pytest.approx(printed["nats_per_char"])


def test_evaluate_reads_the_text_as_the_streams_asked_for(lm, tmp_path):
    from charlstm.data import eval_windows
    from charlstm.evaluate import evaluate_windows

    text = make_text(seed=3)
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    ids, T = lm.tokenizer.encode(text), lm.config.train.seq_len
    default = api.evaluate(lm.run.path, path)
    assert default.streams == lm.config.train.batch_size == 4  # the run's own layout
    one = api.evaluate(lm.run.path, path, streams=1)
    expected = evaluate_windows(lm.model, eval_windows(ids, 1, T))
    assert (one.streams, one.static.chars) == (1, expected.chars)
    assert one.static.nats == pytest.approx(expected.nats, rel=1e-5)
    assert one.static.nats != pytest.approx(default.static.nats, rel=1e-6)
    assert lm.evaluate(text, streams=1).nats == pytest.approx(one.static.nats, rel=1e-5)
    printed = run_charlstm("evaluate", lm.run.path, path, "--streams", "1", "--json")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["streams"] == 1
    assert json.loads(printed.stdout)["nats_per_char"] == pytest.approx(one.static.nats, rel=1e-5)
    refused = run_charlstm("evaluate", lm.run.path, path, "--streams", "2", "--dynamic")
    assert refused.returncode == 2 and "reads the text as one stream" in refused.stderr
    assert "Traceback" not in refused.stderr
    with pytest.raises(CharlstmError, match="one stream"):
        api.evaluate(lm.run.path, path, streams=2, dynamic=True)
    with pytest.raises(CharlstmError, match="at least 1"):
        api.evaluate(lm.run.path, path, streams=0)


def test_dynamic_evaluation_gives_both_losses_and_refuses_its_settings_without_it(lm, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(make_text(seed=3), encoding="utf-8")
    found = api.evaluate(lm.run.path, text, dynamic=True, dynamic_lr=1e-3)
    assert found.settings == DynamicConfig(dynamic_lr=1e-3)
    assert found.dynamic is not None and found.dynamic.chars == found.static.chars
    assert found.to_dict()["dynamic"] == found.dynamic.as_dict()
    with pytest.raises(CharlstmError, match="dynamic_lr: dynamic evaluation's settings"):
        api.evaluate(lm.run.path, text, dynamic_lr=1e-3)


def test_without_out_a_run_goes_to_runs_and_the_corpus_label(text_file):
    plan = api.plan_training(text_file, **TINY)
    assert plan.out == Path("runs") / "tiny" and plan.corpus_named
    assert api.plan_training().corpus == api.DEFAULT_CORPUS
    assert not api.plan_training().corpus_named


def test_a_budget_picks_small_longer_where_the_products_run_in_float32_on_a_cpu(text_file):
    # float32 asked for is a float32 CPU whatever its flags, where TensorFlow sees no GPU
    on_cpu = "medium" if precision.gpu_capabilities() else "small"
    assert api.plan_training(text_file, minutes=9, precision="float32").config.preset == on_cpu
    assert api.plan_training(text_file, minutes=9, precision="bfloat16").config.preset == "medium"
    assert api.plan_training(text_file, minutes=20, precision="float32").config.preset == "medium"
    named = api.plan_training(text_file, minutes=9, precision="float32", preset="medium")
    assert named.config.preset == "medium"


def test_load_reads_the_same_run(lm):
    again = charlstm.load(lm.run.path)
    assert again.generate("A", 40, seed=2) == lm.generate("A", 40, seed=2)


def test_the_package_load_passes_every_option_of_the_api_load(lm):
    package, api_load = inspect.signature(charlstm.load), inspect.signature(api.load)
    assert list(package.parameters) == list(api_load.parameters)
    xla = charlstm.load(lm.run.path, kernel="xla")
    assert xla.kernel == xla.generation_kernel == "xla"


def test_a_missing_path_and_an_unknown_option_are_refused(tmp_path):
    with pytest.raises(CharlstmError, match="no such file"):
        charlstm.train("corpus/missing.txt", tmp_path / "run")
    with pytest.raises(CharlstmError, match="unit"):
        charlstm.train(make_text(), tmp_path / "run", unit=3)
    assert not (tmp_path / "run").exists()


def test_the_package_functions_survive_importing_the_trainer_module(tmp_path):
    import charlstm.trainer  # noqa: F401

    assert charlstm.train.__module__ == charlstm.load.__module__ == "charlstm"
    with pytest.raises(CharlstmError, match="no such run directory"):
        charlstm.load(tmp_path / "missing")


def test_the_keras_model_fits_with_the_documented_loss(tmp_path):
    """docs/training.md's `fit`: the model in a functional Keras model, each position's next id as
    its label, sparse categorical cross-entropy on the logits. It trains the run's own
    weights: the loss falls, and LanguageModel.evaluate sees it."""
    import keras

    lm = charlstm.train(make_text(), tmp_path / "run", **TINY)
    text = make_text(seed=2)
    ids = lm.tokenizer.encode(text)
    n = (len(ids) - 1) // 32
    x, y = ids[: n * 32].reshape(n, 32), ids[1 : n * 32 + 1].reshape(n, 32)
    inputs = keras.Input((None,), dtype="int32")
    logits, _ = lm.model(inputs)
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = lm.evaluate(text).nats
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert lm.evaluate(text).nats < before - 0.1
    same = np.asarray(model(x[:2]))
    np.testing.assert_allclose(same, np.asarray(lm.model(x[:2])[0]), rtol=1e-5, atol=1e-5)


def test_importing_charlstm_changes_nothing_in_the_host_process():
    code = (
        "import os, sys; env, finders = dict(os.environ), list(sys.meta_path); "
        "import charlstm, charlstm.api; "
        "assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items()); "
        "assert sys.meta_path == finders; assert 'tensorflow' not in sys.modules"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
