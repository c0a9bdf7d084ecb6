"""Ensembles (ModelConfig.members > 1): the averaged probabilities against members run alone,
members that learn from their own losses only, and a run of two members through every
command: train, resume, evaluate, generate, inside, export, fine-tune."""

from __future__ import annotations

import dataclasses
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from charlstm.config import ModelConfig, SamplingConfig
from charlstm.errors import CharlstmError
from charlstm.model import CharLSTM, Ensemble, build_model, memory_estimate, weight_shapes
from charlstm.rundir import variables_by_path
from charlstm.steps import loss_and_gradients
from tests.conftest import TINY_TRAIN_ARGS, write_tiny_text
from tests.test_cli import run_charlstm

B, T, V, M = 3, 7, 11, 3
CONFIG = ModelConfig(vocab_size=V, embedding_dim=5, units=6, num_layers=2, dropout=0.0)


def _pair(config: ModelConfig = CONFIG, members: int = M):
    """An Ensemble and its members as models alone, holding the same weights."""
    keras.utils.set_random_seed(3)
    ensemble = build_model(dataclasses.replace(config, members=members))
    alone = [build_model(config) for _ in range(members)]
    weights = variables_by_path(ensemble.weights)
    for m, single in enumerate(alone):
        for path, variable in variables_by_path(single.weights).items():
            variable.assign(weights[path.replace("char_lstm/", f"char_lstm/member_{m}/", 1)])
    return ensemble, alone


@pytest.fixture(scope="module")
def ids():
    return tf.constant(np.random.default_rng(0).integers(0, V, size=(B, T)), tf.int32)


def _log_mean_softmax(logits: list) -> np.ndarray:
    """ln(1/M sum_m softmax(logits_m)), in float64 NumPy."""
    probs = [np.exp(z - z.max(-1, keepdims=True)) for z in (np.float64(x) for x in logits)]
    return np.log(np.mean([p / p.sum(-1, keepdims=True) for p in probs], axis=0))


def test_the_ensemble_predicts_the_mean_of_its_members_probabilities(ids):
    ensemble, alone = _pair()
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == M
    log_p, states = ensemble(ids)
    singles = [model(ids) for model in alone]
    np.testing.assert_allclose(log_p, _log_mean_softmax([s[0] for s in singles]), atol=1e-5)
    np.testing.assert_allclose(tf.reduce_logsumexp(log_p, -1), 0.0, atol=1e-5)  # a distribution
    # the states: member 0's layers, then member 1's, ... each as the member alone has them
    expected = [layer for _, layers in singles for layer in layers]
    assert len(states) == M * CONFIG.num_layers
    for got, want in zip(states, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    # one step at a time, from those states, is the window's call from them
    more = tf.constant(np.random.default_rng(1).integers(0, V, size=(B, 2)), tf.int32)
    whole, _ = ensemble(more, states)
    stepped = states
    for t in range(2):
        one, stepped = ensemble.step(more[:, t], stepped)
        np.testing.assert_allclose(one, whole[:, t], atol=1e-5)


def test_each_member_learns_from_its_own_loss_alone(ids):
    """The training loss is the mean of the members' own losses: member m's gradient is the
    gradient of its loss alone, / M, and never depends on the other members."""
    ensemble, alone = _pair()
    targets = tf.roll(ids, -1, axis=1)
    loss, grads, _ = loss_and_gradients(ensemble)(ids, targets, ensemble.zero_states(B))
    by_path = dict(zip([v.path for v in ensemble.trainable_variables], grads))
    losses = []
    for m, single in enumerate(alone):
        own, own_grads, _ = loss_and_gradients(single)(ids, targets, single.zero_states(B))
        losses.append(float(own))
        for variable, grad in zip(single.trainable_variables, own_grads):
            path = variable.path.replace("char_lstm/", f"char_lstm/member_{m}/", 1)
            np.testing.assert_allclose(by_path[path], np.asarray(grad) / M, atol=1e-6)
    np.testing.assert_allclose(float(loss), np.mean(losses), rtol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_an_ensembles_weights_and_memory_follow_from_its_config(fused):
    config = dataclasses.replace(CONFIG, members=2)
    model = build_model(config, fused=fused)
    assert weight_shapes(config) == {v.path: tuple(v.shape) for v in model.weights}
    assert all(path.startswith(("char_lstm/member_0/", "char_lstm/member_1/"))
               for path in weight_shapes(config))  # fmt: skip
    assert model.count_params() == 2 * build_model(CONFIG).count_params()
    assert memory_estimate(config, 4, 8, training=True) > memory_estimate(CONFIG, 4, 8, True)
    restored = Ensemble.from_config(model.get_config())
    assert restored.config == config and type(restored.members[0]) is type(model.members[0])
    assert (type(model.members[0]) is CharLSTM) == fused


def test_the_generation_op_leaves_an_ensembles_draws_to_the_xla_loop():
    from charlstm import kernel  # noqa: PLC0415

    flags = frozenset({"avx512f", "avx512_bf16"})
    assert kernel.choose("auto", "float32", "lstm", 16, True, flags, members=2) == "xla"
    assert kernel.choose("xla", "float32", "lstm", 16, True, flags, members=2) == "xla"
    with pytest.raises(CharlstmError, match="ensemble of 2"):
        kernel.choose("compiled", "float32", "lstm", 16, True, flags, members=2)


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    """A run of two members trained by the installed command for an epoch, then resumed."""
    folder = tmp_path_factory.mktemp("ensemble")
    text, out = write_tiny_text(folder), folder / "run"
    args = ["train", str(text), "--out", str(out), *TINY_TRAIN_ARGS, "--members", "2",
            "--learning-rate", "1e-2"]  # fmt: skip
    trained = run_charlstm(*args, timeout=300)
    assert trained.returncode == 0, trained.stderr
    assert "ensemble of 2" in trained.stderr + trained.stdout
    resumed = run_charlstm("train", "--out", str(out), "--resume", "--epochs", "2", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    return out, text


@pytest.mark.slow  # a run of two members trained and resumed by the command
def test_an_ensemble_run_learns_and_scores_as_its_members_averaged(ensemble_run):
    from charlstm import api  # noqa: PLC0415
    from charlstm.rundir import RunDir  # noqa: PLC0415

    out, text_file = ensemble_run
    run = RunDir.open(out)
    assert run.config.model.members == 2 and run.checkpoints()[-1].progress.epoch == 2
    records = run.read_log()
    assert records[-1].val_loss < 0.7 * math.log(run.config.model.vocab_size)
    text = text_file.read_text(encoding="utf-8")[-3000:]
    lm = api.load(out)
    scored = lm.evaluate(text, streams=4)
    # the same text scored by each member alone, then their probabilities averaged
    ids = lm.tokenizer.encode(text)
    rows = ids[: (len(ids) - 1) // 4 * 4 + 1]
    members = lm.model.members
    x = tf.constant(np.stack(np.split(rows[:-1], 4)), tf.int32)
    y = np.stack(np.split(rows[1:], 4))
    logits = [member(x)[0] for member in members]
    mixed = _log_mean_softmax(logits)
    nll = -np.take_along_axis(mixed, y[..., None], -1).mean()
    alone = [-np.take_along_axis(_log_mean_softmax([z]), y[..., None], -1).mean() for z in logits]
    assert scored.nats == pytest.approx(nll, abs=2e-4)
    # per character -ln(mean p) <= mean(-ln p) (ln is concave): never worse than the members'
    # mean, and better where they disagree
    assert scored.nats < np.mean(alone) - 1e-3


@pytest.mark.slow  # a run of two members trained and resumed by the command
def test_an_ensemble_run_generates_evaluates_and_tells_what_it_is(ensemble_run, tmp_path):
    out, text_file = ensemble_run
    greedy = run_charlstm("generate", str(out), "--prime", "The ", "--length", "80",
                          "--temperature", "0")  # fmt: skip
    assert greedy.returncode == 0, greedy.stderr
    assert greedy.stdout.startswith("The ") and len(greedy.stdout.rstrip("\n")) == 84
    from charlstm import api  # noqa: PLC0415

    lm = api.load(out)
    assert lm.generation_kernel == "xla"
    assert "The " + lm.generate("The ", 80, temperature=0) == greedy.stdout.rstrip("\n")
    sampled = lm.generate("The ", 50, temperature=1.0, seed=5, num_samples=3)
    assert sampled == lm.generate("The ", 50, temperature=1.0, seed=5, num_samples=3)
    scored = run_charlstm("evaluate", str(out), str(text_file), "--json")
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["nats_per_char"] > 0
    info = run_charlstm("info", str(out))
    assert info.returncode == 0 and "ensemble of 2" in info.stdout
    refused = run_charlstm("generate", str(out), "--kernel", "compiled", "--length", "5")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    from charlstm import kernel  # noqa: PLC0415

    if not kernel.load().reason:  # it builds here, and still draws from one model only
        assert "ensemble of 2" in refused.stderr


@pytest.mark.slow  # a run of two members trained and resumed by the command
def test_the_inside_view_of_an_ensemble_has_every_members_layers(ensemble_run):
    from charlstm import api  # noqa: PLC0415
    from charlstm.explore import probe  # noqa: PLC0415

    out, _ = ensemble_run
    lm = api.load(out)
    text = "The cat sees the dog.\n"
    seen = probe.trace(lm.model, lm.tokenizer, text)
    assert len(seen.layers) == 4
    ids = tf.constant(lm.tokenizer.encode(text)[None], tf.int32)
    log_p, _ = lm.model(ids)
    np.testing.assert_allclose(seen.probs, tf.exp(log_p)[0], atol=1e-5)
    member = probe.trace(lm.model.members[1], lm.tokenizer, text)
    np.testing.assert_allclose(seen.layers[2]["c"], member.layers[0]["c"], atol=1e-6)
    inside = lm.inside(text, layer=3, quantity="f")
    np.testing.assert_allclose(inside.values, member.layers[1]["f"], atol=1e-6)
    with pytest.raises(CharlstmError, match="layer must be 0 to 3"):
        lm.inside(text, layer=4)


@pytest.mark.slow  # a run of two members trained and resumed by the command
def test_an_ensemble_exports_and_refuses_another_shape_to_fine_tune(ensemble_run, tmp_path):
    out, text_file = ensemble_run
    saved = run_charlstm("export", str(out), "--format", "savedmodel", "--out",
                         str(tmp_path / "saved"))  # fmt: skip
    assert saved.returncode == 0, saved.stderr
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    text = loaded.signatures["serving_default"](
        prime=tf.constant("The "), length=tf.constant(40), temperature=tf.constant(0.0),
        top_k=tf.constant(0), top_p=tf.constant(1.0), seed=tf.constant(0))["text"]  # fmt: skip
    from charlstm import api  # noqa: PLC0415

    lm = api.load(out)
    assert text.numpy().decode() == lm.generate("The ", 40, temperature=0)
    zeros = np.zeros((4, 2, 16), np.float32)  # 2 members x 2 layers, 2 streams, 16 units
    step = loaded.signatures["step"](ids=tf.constant([1, 2]), h=zeros, c=zeros)
    expected, _ = lm.model.step(tf.constant([1, 2]), lm.model.zero_states(2))
    np.testing.assert_allclose(step["logits"], expected, atol=1e-5)
    assert step["h"].shape == (4, 2, 16)
    kept = run_charlstm("export", str(out), "--format", "keras", "--out", str(tmp_path / "k"))
    assert kept.returncode == 0, kept.stderr
    model = keras.saving.load_model(kept.stdout.strip(), safe_mode=True)
    assert isinstance(model, Ensemble) and model.config == lm.config.model
    again, _ = model.step(tf.constant([1, 2]), model.zero_states(2))
    np.testing.assert_allclose(again, expected, atol=1e-5)
    refused = run_charlstm("train", str(text_file), "--init-from", str(out), "--out",
                           str(tmp_path / "tuned"), "--members", "3")  # fmt: skip
    assert refused.returncode != 0 and "--members" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "tuned").exists()


def test_sampling_an_ensemble_draws_from_the_averaged_distribution(ids):
    """Greedy draws are the argmax of the mean probabilities, not of any member's."""
    from charlstm.sample import Sampler  # noqa: PLC0415
    from charlstm.tokenizer import CharTokenizer  # noqa: PLC0415

    tokenizer = CharTokenizer.build("abcdefghi ")
    config = ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=4, units=8)
    ensemble, alone = _pair(config, members=2)
    for model in (ensemble, *alone):  # weights larger than new ones: members that disagree
        for variable in model.weights:
            variable.assign(variable * 3)
    text = "".join(Sampler(ensemble, tokenizer).generate(
        "abc", 30, SamplingConfig(temperature=0)))  # fmt: skip
    ids_ = tokenizer.encode("abc" + text)
    states = [layer for m in alone for layer in m.zero_states(1)]
    ensemble_states = ensemble.zero_states(1)
    for t in range(len(ids_) - 1):
        log_p, ensemble_states = ensemble.step(tf.constant(ids_[t : t + 1], tf.int32),
                                               ensemble_states)  # fmt: skip
        singles = [m.step(tf.constant(ids_[t : t + 1], tf.int32), states[2 * k : 2 * k + 2])
                   for k, m in enumerate(alone)]  # fmt: skip
        states = [layer for _, layers in singles for layer in layers]
        if t >= 2:  # a drawn character: the argmax of the averaged probabilities
            mixed = _log_mean_softmax([logits for logits, _ in singles])[0]
            mixed[0] = -np.inf  # the unknown token is never drawn
            assert ids_[t + 1] == int(np.argmax(mixed))
