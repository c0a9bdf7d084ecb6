import dataclasses
import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest

from charlstm.config import ModelConfig, RunConfig, TrainConfig
from charlstm.errors import CharlstmError
from charlstm.events import EvalEvent, StepEvent, StopReason
from charlstm.rundir import RunDir
from charlstm.schedule import learning_rate, progress
from charlstm.trainer import Trainer, train
from tests.conftest import prepare_data, tiny_config


def _losses(events):
    return {e.step: e.loss for e in events if isinstance(e, StepEvent)}


def test_train_writes_config_tokenizer_checkpoints_and_log(tmp_path, text_file):
    events = []
    result = train(tmp_path / "run", tiny_config(str(text_file)), callback=events.append)
    run = RunDir.open(tmp_path / "run")
    assert run.config.corpus == str(text_file.resolve())
    assert run.config.model.vocab_size == run.tokenizer.vocab_size
    records = run.read_log()
    assert [r.step for r in records] == [e.record.step for e in events if isinstance(e, EvalEvent)]
    steps = [r.step for r in records]
    assert steps == sorted(set(steps)) and steps[-1] == result.step
    first = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert {"val_loss", "val_bits_per_char", "train_loss", "learning_rate"} <= set(first)
    assert records[0].val_bits_per_char == pytest.approx(records[0].val_loss / math.log(2))
    assert result.best_val == min(r.val_loss for r in records)
    assert run.best_checkpoint().step == steps[int(np.argmin([r.val_loss for r in records]))]
    # every step reports progress with throughput
    step_events = [e for e in events if isinstance(e, StepEvent)]
    assert [e.step for e in step_events] == list(range(1, result.step + 1))
    assert all(e.chars_per_sec > 0 for e in step_events)


def test_validation_loss_falls_well_below_uniform_on_tiny_corpus(trained_run):
    run = RunDir.open(trained_run)
    records = run.read_log()
    uniform = math.log(run.config.model.vocab_size)
    assert records[0].val_loss < uniform
    assert records[-1].val_loss < 0.6 * uniform
    assert records[-1].val_loss < records[0].val_loss


def test_every_logged_learning_rate_is_the_schedules_and_cosine_ends_at_its_floor(trained_run):
    run = RunDir.open(trained_run)
    cfg = run.config.train
    records = run.read_log()
    windows = records[-1].step // cfg.epochs
    for r in records:  # the rate of the step just taken: step - 1, counted from 0
        step = r.step - 1
        p = progress(cfg, step, windows, elapsed_s=0.0)
        expected = learning_rate(cfg, step, step // windows, p)
        assert r.learning_rate == pytest.approx(expected, rel=1e-6)
    assert cfg.schedule == "cosine"
    assert records[-1].learning_rate == pytest.approx(cfg.learning_rate * cfg.lr_floor, rel=0.01)


def _stalling_text(tmp_path) -> str:
    """Training part "ab\n" repeated, validation part "a" repeated: the better the model
    learns the training part (never "a" after "a"), the worse it does on validation."""
    path = tmp_path / "stall.txt"
    path.write_text("ab\n" * 1200 + "a" * 400, encoding="utf-8")
    return str(path)


def test_early_stopping_ends_a_run_whose_validation_stalls(tmp_path):
    config = tiny_config(
        _stalling_text(tmp_path), val_fraction=0.1, test_fraction=0, eval_every=10,
        early_stop=2, epochs=2, learning_rate=1e-2, warmup_steps=1,
    )  # fmt: skip
    result = train(tmp_path / "run", config)
    records = RunDir.open(tmp_path / "run").read_log()
    assert result.stopped_by is StopReason.EARLY_STOP
    assert [r.step for r in records] == [10, 20, 30]  # the best at 10, then two stalls
    assert records[1].val_loss > records[0].val_loss < records[2].val_loss
    assert RunDir.open(tmp_path / "run").latest_checkpoint().step == 30


def test_plateau_schedule_cuts_the_rate_when_validation_stalls(tmp_path):
    config = tiny_config(
        _stalling_text(tmp_path), val_fraction=0.1, test_fraction=0, eval_every=10, epochs=1,
        schedule="plateau", plateau_patience=1, plateau_factor=0.5, warmup_steps=1,
        learning_rate=1e-2,
    )  # fmt: skip
    train(tmp_path / "run", config)
    records = RunDir.open(tmp_path / "run").read_log()
    assert len(records) >= 4
    # the rate logged with pass k is the one used before it: one cut per stalled pass before
    rates = [r.learning_rate for r in records]
    expected = [config.train.learning_rate * 0.5 ** max(0, k - 1) for k in range(len(rates))]
    assert rates == pytest.approx(expected, rel=1e-6)


def test_validation_scores_a_head_during_training_and_everything_at_the_end(tmp_path, text_file):
    train(tmp_path / "run", tiny_config(str(text_file), eval_chars=100))
    records = RunDir.open(tmp_path / "run").read_log()
    assert all(100 <= r.val_chars < 200 for r in records)
    assert records[0].val_loss_all is None
    assert records[-1].val_chars_all > 2 * records[-1].val_chars
    assert math.isfinite(records[-1].val_loss_all)


def test_minutes_given_at_resume_are_added_to_the_time_already_spent(tmp_path, text_file):
    config = tiny_config(str(text_file), epochs=50, minutes=0.002)
    first = train(tmp_path / "run", config)
    spent = RunDir.open(tmp_path / "run").latest_checkpoint().progress.elapsed_s
    again = train(tmp_path / "run", resume=True)  # the budget is used up: nothing to do
    assert (again.step, again.stopped_by) == (first.step, StopReason.MINUTES)
    more = train(tmp_path / "run", resume=True, minutes=0.002)
    assert more.step > first.step and more.stopped_by is StopReason.MINUTES
    minutes = json.loads((tmp_path / "run" / "config.json").read_text())["train"]["minutes"]
    assert minutes == pytest.approx(spent / 60 + 0.002)


def _trainer(tmp_path, text_file, **train_settings):
    """A Trainer over a fresh run of the tiny config, as `train` builds it."""
    from charlstm.corpus import load_corpus
    from charlstm.tokenizer import CharTokenizer

    config = tiny_config(str(text_file), **train_settings)
    corpus = load_corpus(str(text_file))
    tokenizer = CharTokenizer.build(corpus.text)
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, vocab_size=tokenizer.vocab_size)
    )
    _, train_w, val_w = prepare_data(corpus.text, corpus.starts, tokenizer, config)
    run = RunDir.create(tmp_path / "run", config, tokenizer)
    return Trainer(run, train_w, val_w), corpus, train_w


def test_states_carry_across_windows_and_reset_each_epoch(tmp_path, text_file):
    trainer, corpus, train_w = _trainer(tmp_path, text_file, epochs=2, eval_every=1000)
    seen = []
    step = trainer.train_step

    def spy(x, y, states):
        loss, new_states = step(x, y, states)
        seen.append(([[np.asarray(s) for s in pair] for pair in states], x.numpy(), new_states))
        return loss, new_states

    trainer.train_step = spy
    trainer.fit(resume=False, corpus=corpus.description)
    n = len(train_w)
    assert len(seen) == 2 * n
    for k, (states_in, x, _) in enumerate(seen):
        np.testing.assert_array_equal(x, train_w[k % n][0])
        if k % n == 0:  # first window of an epoch starts from zero state
            assert all(not s.any() for pair in states_in for s in pair)
        else:  # every other window starts from the previous window's final state
            previous = seen[k - 1][2]
            for pair_in, pair_prev in zip(states_in, previous):
                for s_in, s_prev in zip(pair_in, pair_prev):
                    np.testing.assert_array_equal(s_in, np.asarray(s_prev))


def test_minutes_budget_stops_training_and_saves(tmp_path, text_file):
    result = train(tmp_path / "run", tiny_config(str(text_file), epochs=50, minutes=0.002))
    assert result.stopped_by is StopReason.MINUTES
    run = RunDir.open(tmp_path / "run")
    assert run.latest_checkpoint().step == result.step
    assert result.step < 50 * 10


# the weight average (ema) rides along in one: its averages and the raw weights must come back
@pytest.mark.parametrize(("precision", "ema"), [("float32", 0.0), ("bfloat16", 0.9)])
def test_resume_continues_with_the_same_losses_as_an_uninterrupted_run(
    tmp_path, text_file, precision, ema
):
    config = tiny_config(str(text_file), epochs=2, eval_every=25, ema=ema)
    config = dataclasses.replace(config, precision=precision)
    # dropout, recurrent dropout and weight drop draw random masks: exact resume needs their
    # RNG states back too
    model = {"dropout": 0.2, "recurrent_dropout": 0.2, "weight_drop": 0.2}
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, **model))
    whole = []
    train(tmp_path / "whole", config, callback=whole.append)

    class Stop(Exception):
        pass

    def stop_after_37(event):
        if isinstance(event, StepEvent) and event.step == 37:
            raise Stop  # a crash mid-epoch: the last checkpoint is at step 25

    with pytest.raises(Stop):
        train(tmp_path / "cut", config, callback=stop_after_37)
    assert RunDir.open(tmp_path / "cut").latest_checkpoint().step == 25
    resumed = []
    result = train(tmp_path / "cut", resume=True, callback=resumed.append)
    whole_losses, resumed_losses = _losses(whole), _losses(resumed)
    assert min(resumed_losses) == 26 and max(resumed_losses) == max(whole_losses) == result.step
    for step, loss in resumed_losses.items():
        assert loss == pytest.approx(whole_losses[step], rel=1e-4, abs=1e-5), step
    steps = [r.step for r in RunDir.open(tmp_path / "cut").read_log()]
    assert steps == sorted(set(steps))  # no duplicate step after the resume


def test_resume_with_more_epochs_extends_a_finished_run(tmp_path, text_file):
    first = train(tmp_path / "run", tiny_config(str(text_file), epochs=1))
    more = train(tmp_path / "run", resume=True, epochs=2)
    assert more.step == 2 * first.step
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["epochs"] == 2


def test_a_nan_weight_stops_training_at_its_first_step_and_nothing_is_saved(tmp_path, text_file):
    """A real NaN in the weights (the output layer's bias of the checkpoint set to NaN, its
    manifest rehashed, as a damaged file would arrive): the resumed run's first loss is NaN;
    training stops with one clear error, and no checkpoint is written after it."""
    import hashlib
    import json

    from charlstm.rundir import read_tensors, tensors_to_bytes

    out = tmp_path / "run"
    first = train(out, tiny_config(str(text_file), epochs=1, eval_every=5))
    folder = RunDir.open(out).latest_checkpoint().path
    tensors = read_tensors(folder / "model.safetensors")
    (bias,) = [name for name in tensors if name.endswith("head/bias")]
    tensors[bias] = np.full_like(tensors[bias], np.nan)
    (folder / "model.safetensors").write_bytes(tensors_to_bytes(tensors))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["model.safetensors"] = hashlib.sha256(
        (folder / "model.safetensors").read_bytes()
    ).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    with pytest.raises(
        CharlstmError,
        match=f"loss became nan at step {first.step + 1}.*lower --learning-rate",
    ):
        train(out, resume=True, epochs=2)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before


def test_text_shorter_than_one_window_is_refused_before_touching_out(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("hello world\n" * 3, encoding="utf-8")
    with pytest.raises(CharlstmError, match="text too short"):
        train(tmp_path / "run", tiny_config(str(short), batch_size=8, seq_len=50))
    assert not (tmp_path / "run").exists()


def test_occupied_out_is_refused_without_force_and_replaced_with_it(tmp_path, text_file):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(CharlstmError, match="--force"):
        train(out, tiny_config(str(text_file), epochs=1))
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    train(out, tiny_config(str(text_file), epochs=1), force=True)
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert (out / "config.json").exists()


def test_a_weight_turned_nan_is_never_checkpointed_nor_logged(tmp_path, text_file):
    """The fault itself: after step 10's update (its loss was finite) a weight holds NaN, as
    after a step whose gradients overflowed; step 10 is an evaluation and save step."""
    trainer, corpus, _ = _trainer(tmp_path, text_file, eval_every=5)
    step = trainer.train_step

    def step_then_poison(x, y, states):
        loss, states = step(x, y, states)
        if int(trainer.optimizer.iterations) == 10:
            bias = trainer.model.get_layer("head").bias
            bias.assign(np.where(np.arange(bias.shape[0]) == 1, np.nan, bias.numpy()))
        return loss, states

    trainer.train_step = step_then_poison
    with pytest.raises(CharlstmError, match="non-finite at step 10.*step 5, is intact"):
        trainer.fit(resume=False, corpus=corpus.description)
    run = RunDir.open(tmp_path / "run")
    assert [c.step for c in run.checkpoints()] == [5]
    for checkpoint in run.checkpoints():
        assert all(np.isfinite(t).all() for t in checkpoint.model_tensors().values())
        assert checkpoint.progress.best_step == 5
    assert [r.step for r in run.read_log()] == [5]


SHAKESPEARE = Path(__file__).resolve().parents[1] / "corpora" / "tinyshakespeare.txt"


@pytest.mark.slow
def test_the_default_recipe_learns_as_much_per_step_as_it_did(tmp_path):
    """A learning-regression check: a small model, a fixed number of steps (4 epochs of 52
    windows) on a fixed slice of Tiny Shakespeare, with every other setting at its default.
    Measured on an AMD EPYC, seeds 0 and 1: the recipe of 2026-11-26 (Keras' uniform +-0.05
    embedding, no dropout, Adam 2e-3 x 0.97 per epoch) 2.39-2.42 nats/char; with N(0, 1)
    embeddings and window dropout 0.2 2.12-2.17; a constant 2e-3 2.17-2.21; cosine from 1e-2
    1.93-1.96; the defaults now (cosine from 1.5e-2) 1.84-1.85. The bound, 1.90, lies between
    the recipe (0.05 below it) and the nearest known-worse one (0.03 above it): a change that
    makes each step learn as little as cosine from 1e-2 fails here.
    """
    text = tmp_path / "shakespeare-120k.txt"
    text.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:120_000], encoding="utf-8")
    config = RunConfig(
        model=ModelConfig(embedding_dim=32, units=128, num_layers=1),
        train=TrainConfig(batch_size=32, seq_len=64, epochs=4, eval_every=10_000),
        corpus=str(text),
    )
    result = train(tmp_path / "run", config)
    assert result.step == 4 * 52
    assert result.best_val < 1.90


def test_ema_checkpoints_the_average_of_the_raw_weights_and_logs_both_scores(tmp_path, text_file):
    from charlstm.rundir import variables_by_path

    m = 0.8
    trainer, corpus, train_w = _trainer(tmp_path, text_file, epochs=1, eval_every=1000, ema=m)
    step = trainer.train_step
    raws = []  # every trainable weight after each step

    def spy(x, y, states):
        out = step(x, y, states)
        raws.append({v.path: v.numpy().copy() for v in trainer.model.trainable_variables})
        return out

    trainer.train_step = spy
    trainer.fit(resume=False, corpus=corpus.description)
    assert len(raws) == len(train_w) > 3
    average = dict(raws[0])  # a = w after the first step, then a <- m a + (1 - m) w
    for raw in raws[1:]:
        average = {k: m * average[k] + (1 - m) * w for k, w in raw.items()}
    ckpt = trainer.run.latest_checkpoint()
    saved, state = ckpt.model_tensors(), ckpt.train_state_tensors()
    paths = {v.path: k for k, v in variables_by_path(trainer.model.weights).items()}
    for path, value in average.items():
        np.testing.assert_allclose(saved[paths[path]], value, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(state[f"raw/{paths[path]}"], raws[-1][path])
        # the model goes on training from its raw weights
        assert not np.allclose(raws[-1][path], value, atol=1e-6)
    record = trainer.run.read_log()[-1]
    assert record.val_loss_raw != record.val_loss
    # the run's model, as generate and evaluate load it, holds the average
    for v in trainer.run.load_model().trainable_variables:
        np.testing.assert_allclose(v.numpy(), average[v.path], rtol=1e-5, atol=1e-6)


def test_weight_decay_shrinks_kernels_and_embeddings_but_not_biases():
    from charlstm.model import build_model
    from charlstm.steps import make_optimizer

    model = build_model(ModelConfig(vocab_size=5, embedding_dim=3, units=4, num_layers=1))
    settings = TrainConfig(learning_rate=0.1, warmup_steps=1, weight_decay=0.5)
    optimizer = make_optimizer(settings)
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    # zero gradients: Adam's own update is zero, what changes is the decoupled decay alone
    zeros = [np.zeros(v.shape, np.float32) for v in model.trainable_variables]
    optimizer.apply_gradients(zip(zeros, model.trainable_variables))
    for v in model.trainable_variables:
        factor = 1.0 if v.path.endswith("bias") else 1 - 0.1 * 0.5
        np.testing.assert_allclose(v.numpy(), before[v.path] * factor, rtol=1e-6)
    assert type(make_optimizer(TrainConfig())) is keras.optimizers.Adam


@pytest.mark.parametrize("split", ["files", "chars"])
def test_split_cuts_a_corpus_of_files_between_files_or_at_the_fractions(split):
    from charlstm.tokenizer import CharTokenizer  # noqa: PLC0415

    docs = ["a" * 700 + "\n", "b" * 150 + "\n", "c" * 150 + "\n"]  # starts 0, 701, 852
    text = "".join(docs)
    config = tiny_config(val_fraction=0.1, test_fraction=0.1, batch_size=2, seq_len=8)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, split=split))
    splits, _, _ = prepare_data(text, (0, 701, 852), CharTokenizer.build(text), config)
    if split == "files":  # the file starts nearest 80% and 90%: the b and c files
        assert (len(splits.train), len(splits.val)) == (701, 151)
    else:
        cuts = round(0.8 * len(text)), round(0.9 * len(text))
        assert (len(splits.train), len(splits.val)) == (cuts[0], cuts[1] - cuts[0])


def test_a_val_file_is_the_validation_part_and_the_corpus_keeps_a_test_part(tmp_path, text_file):
    val = tmp_path / "other.txt"
    val.write_text("The king likes the song.\n" * 40, encoding="utf-8")
    config = dataclasses.replace(tiny_config(str(text_file), epochs=1), val_file=str(val))
    result = train(tmp_path / "run", config)
    saved = RunDir.open(tmp_path / "run").config
    assert saved.val_file == str(val.resolve())
    from charlstm.tokenizer import CharTokenizer  # noqa: PLC0415

    text = text_file.read_text(encoding="utf-8")
    splits, _, val_w = prepare_data(text, (0,), CharTokenizer.build(text), saved, val.read_text())
    B = saved.train.batch_size  # the val file read as B streams, each scored after its first
    assert val_w.num_chars == (len(val.read_text()) // B - 1) * B
    assert len(splits.test) == round(0.05 * len(text)) and len(splits.train) + len(
        splits.test
    ) == len(text)
    resumed = train(tmp_path / "run", resume=True, epochs=2)  # reads the val file again
    assert resumed.step > result.step


def test_every_validation_pass_logs_a_sample_and_writes_tensorboard(tmp_path, text_file):
    """Each record carries a sample: the validation part's prime and 30 characters after it,
    the same at a given step every time (a fixed seed); TensorBoard's event files hold the
    same numbers and the samples. Sampling leaves training as it was: same losses without."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from charlstm.trainer import sample_prime

    train(tmp_path / "a", tiny_config(str(text_file), sample_chars=30))
    run = RunDir.open(tmp_path / "a")
    records = run.read_log()
    _, _, val_w = prepare_data(text_file.read_text(), (0,), run.tokenizer, run.config)
    prime = sample_prime(run.tokenizer, val_w)
    assert prime and prime.endswith("\n") and text_file.read_text().count(prime) >= 1
    assert all(r.sample.startswith(prime) and len(r.sample) == len(prime) + 30
               for r in records)  # fmt: skip
    assert all(r.chars_per_sec > 0 for r in records)

    # size_guidance 0: keep every event (the accumulator samples 10 per tag by default)
    events = EventAccumulator(str(tmp_path / "a" / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    scalars = {e.step: float(tf.make_ndarray(e.tensor_proto))
               for e in events.Tensors("loss/validation")}  # fmt: skip
    assert scalars == pytest.approx({r.step: r.val_loss for r in records}, rel=1e-6)
    assert {"loss/train", "learning_rate", "chars_per_sec", "sample"} <= set(
        events.Tags()["tensors"]
    )

    train(tmp_path / "b", tiny_config(str(text_file), sample_chars=30))
    assert [r.sample for r in RunDir.open(tmp_path / "b").read_log()] == [r.sample for r in records]
    train(tmp_path / "c", tiny_config(str(text_file), sample_chars=0, tensorboard=False))
    quiet = RunDir.open(tmp_path / "c").read_log()
    assert [r.train_loss for r in quiet] == [r.train_loss for r in records]
    assert quiet[0].sample is None and not (tmp_path / "c" / "tensorboard").exists()
