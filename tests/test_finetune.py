"""Fine-tuning (`charlstm.finetune`): a run that starts from another run's best weights, its
vocabulary extended with the new corpus' characters."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from charlstm import api
from charlstm.errors import CharlstmError
from charlstm.tokenizer import CharTokenizer
from tests.conftest import make_text
from tests.test_cli import run_charlstm

# the new corpus: the tiny grammar in capitals, with characters the base never saw
NEW_CHARS = "ÉÀ{}#"
# every checkpoint kept: the tests read step 0's
TUNE = {"epochs": 1, "eval_every": 20, "sample_chars": 0, "keep_checkpoints": 100}


def new_text(seed: int = 1) -> str:
    text = make_text(seed=seed).upper().replace("E", "É").replace("A", "À")
    return text + "{#}\n" * 40


def test_an_extended_vocabulary_keeps_every_id_and_appends_the_new_characters_sorted():
    base = CharTokenizer.build("banana\n")
    extended = base.extended(set("zebra\n") | {"\ufffd"})
    assert extended.chars[: base.vocab_size] == base.chars
    assert extended.chars[base.vocab_size :] == ["e", "r", "z"]
    text = "zebra\nbanana"
    assert extended.decode(extended.encode(text)) == text
    known = "banana\n"
    assert (extended.encode(known) == base.encode(known)).all()
    assert base.extended("nab").chars == base.chars


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, trained_run):
    """The tiny trained run fine-tuned for an epoch on `new_text`: (base, fine-tuned run)."""
    import charlstm  # noqa: PLC0415

    folder = tmp_path_factory.mktemp("tuned")
    corpus = folder / "new.txt"
    corpus.write_text(new_text(), encoding="utf-8")
    charlstm.train(corpus, folder / "run", init_from=trained_run, **TUNE)
    return trained_run, folder / "run"


def test_a_fine_tuned_run_records_its_base_and_keeps_its_model(tuned):
    from charlstm.finetune import FINE_TUNE_RATE, FINE_TUNE_WARMUP  # noqa: PLC0415
    from charlstm.rundir import RunDir  # noqa: PLC0415

    base_dir, run_dir = tuned
    base, run = RunDir.open(base_dir), RunDir.open(run_dir)
    best = base.best_checkpoint()
    digest = hashlib.sha256((best.path / "model.safetensors").read_bytes()).hexdigest()
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["init_from"] == str(base_dir.resolve())
    assert (saved["init_step"], saved["init_sha256"]) == (best.step, digest)
    for name in ("embedding_dim", "units", "num_layers", "cell", "dropout"):
        assert getattr(run.config.model, name) == getattr(base.config.model, name)
    assert run.config.train.learning_rate == pytest.approx(
        base.config.train.learning_rate * FINE_TUNE_RATE
    )
    assert run.config.train.warmup_steps == FINE_TUNE_WARMUP
    assert run.tokenizer.chars[: base.tokenizer.vocab_size] == base.tokenizer.chars
    new = set(new_text()) - set(base.tokenizer.chars)
    assert set(NEW_CHARS) <= new
    assert run.tokenizer.chars[base.tokenizer.vocab_size :] == sorted(new)
    assert (
        f"fine-tuned from: {base_dir.resolve()}, step {best.step}" in api.info(run_dir).config[-1]
    )
    assert digest in api.info(run_dir).config[-1]


def test_fine_tuning_starts_from_the_base_weights_and_new_characters_start_fresh(tuned):
    import keras  # noqa: PLC0415

    from charlstm.model import build_model  # noqa: PLC0415
    from charlstm.rundir import RunDir, variables_by_path  # noqa: PLC0415

    base_dir, run_dir = tuned
    base, run = RunDir.open(base_dir), RunDir.open(run_dir)
    start = next(c for c in run.checkpoints() if c.step == 0).model_tensors()
    known = base.best_checkpoint().model_tensors()
    keras.utils.set_random_seed(run.config.train.seed)  # as the trainer builds a new model
    fresh = {
        k: v.numpy() for k, v in variables_by_path(build_model(run.config.model).weights).items()
    }
    V = base.tokenizer.vocab_size
    assert start.keys() == known.keys()
    widened = []
    for name, weights in known.items():
        cut = tuple(slice(0, n) for n in weights.shape)
        np.testing.assert_array_equal(start[name][cut], weights, err_msg=name)
        if start[name].shape != weights.shape:
            widened.append(name)
            rest = start[name].copy()
            rest[cut] = fresh[name][cut]
            np.testing.assert_array_equal(rest, fresh[name], err_msg=name)
            assert start[name].shape[-1 if name.endswith(("head/kernel", "bias")) else 0] > V
    assert sorted(widened) == [
        "char_lstm/embedding/embeddings", "char_lstm/head/bias", "char_lstm/head/kernel"
    ]  # fmt: skip
    # and training moved on from there
    after = run.best_checkpoint()
    assert after.step > 0


def test_the_first_validation_pass_is_the_base_models_loss_on_that_text(trained_run, tmp_path):
    """With only the base's characters in the text the fine-tuned model is the base at step 0:
    its first validation pass (before any step, with weight averaging on) is `evaluate`'s."""
    import charlstm  # noqa: PLC0415

    corpus, held_out = tmp_path / "more.txt", tmp_path / "held-out.txt"
    corpus.write_text(make_text(seed=2), encoding="utf-8")
    held_out.write_text(make_text(100, seed=3), encoding="utf-8")
    out = tmp_path / "run"
    # float32 on both sides: oneDNN's bfloat16 products round their sums to bfloat16, so that
    # batches laid out differently can move a loss by a few parts in 1e5
    charlstm.train(corpus, out, init_from=trained_run, val_file=held_out, eval_chars=0,
                   ema=0.99, epochs=1, eval_every=1000, sample_chars=0,
                   precision="float32")  # fmt: skip
    first = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert first["step"] == 0 and first["train_loss"] is None
    expected = api.evaluate(trained_run, held_out, precision="float32").static
    assert first["val_chars"] == expected.chars
    assert first["val_loss"] == pytest.approx(expected.nats, rel=1e-5)


def test_options_that_would_change_the_weights_shapes_are_refused(trained_run, text_file):

    for given, named in (({"units": 32}, "--units"), ({"cell": "layernorm"}, "--cell"),
                         ({"preset": "medium"}, "--preset")):  # fmt: skip
        with pytest.raises(CharlstmError, match=named):
            api.plan_training(text_file, init_from=trained_run, **given)
    # the base's own values, and options that keep the shapes, are fine
    plan = api.plan_training(
        text_file, init_from=trained_run, units=16, dropout=0.3, batch_size=8, learning_rate=1e-3
    )
    assert (plan.config.model.dropout, plan.config.train.batch_size) == (0.3, 8)
    assert plan.config.train.learning_rate == 1e-3


def test_a_fine_tuned_run_resumes_from_its_own_checkpoint_and_before_one_from_its_base(tuned):
    """Resumed with checkpoints, the run goes on from them; resumed before its first, it starts
    from the base again, if the base's best checkpoint is still the one it recorded."""
    import shutil  # noqa: PLC0415

    import charlstm  # noqa: PLC0415

    base_dir, run_dir = tuned
    copy = run_dir.parent / "resumed"
    shutil.copytree(run_dir, copy)
    steps = json.loads((copy / "log.jsonl").read_text().splitlines()[-1])["step"]
    charlstm.train(out=copy, resume=True, epochs=2)
    records = [json.loads(line) for line in (copy / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records].count(0) == 1 and records[-1]["step"] > steps

    shutil.rmtree(copy / "checkpoints")
    (copy / "log.jsonl").unlink()
    charlstm.train(out=copy, resume=True, epochs=1)
    first = json.loads((copy / "log.jsonl").read_text().splitlines()[0])
    start = json.loads((run_dir / "log.jsonl").read_text().splitlines()[0])
    assert first["step"] == 0 and first["val_loss"] == pytest.approx(start["val_loss"], rel=1e-6)

    shutil.rmtree(copy / "checkpoints")
    (copy / "log.jsonl").unlink()
    config = json.loads((copy / "config.json").read_text())
    config["init_sha256"] = "0" * 64
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CharlstmError, match="no longer the one this run started from"):
        charlstm.train(out=copy, resume=True, epochs=1)


def test_the_command_fine_tunes_and_says_from_what(tuned, tmp_path):
    base_dir, _ = tuned
    corpus = tmp_path / "new.txt"
    corpus.write_text(new_text(seed=4), encoding="utf-8")
    out = tmp_path / "run"
    args = ["--epochs", "1", "--eval-every", "20", "--sample-chars", "0"]
    trained = run_charlstm("train", str(corpus), "--init-from", str(base_dir), "--out", str(out),
                           *args, timeout=300)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert f"fine-tuned from: {Path(base_dir).resolve()}" in trained.stderr
    assert "step 0 epoch 0: train n/a" in trained.stderr
    shown = run_charlstm("info", str(out))
    assert shown.returncode == 0 and f"fine-tuned from: {Path(base_dir).resolve()}" in shown.stdout
