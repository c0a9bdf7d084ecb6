import json
import sys
import threading

import numpy as np
import pytest

from charlstm.config import ModelConfig, RunConfig
from charlstm.errors import CharlstmError
from charlstm.model import build_model
from charlstm.records import LogRecord, Progress
from charlstm.rundir import (
    CHECKPOINTS,
    MODEL,
    RunDir,
    assign_tensors,
    atomic_write_bytes,
    copy_for_resume,
    read_tensors,
    tensors_to_bytes,
    variables_by_path,
)
from charlstm.schedule import ValidationHistory
from charlstm.tokenizer import CharTokenizer


@pytest.fixture
def run(tmp_path):
    tokenizer = CharTokenizer.build("abc de\n")
    config = RunConfig(model=ModelConfig(vocab_size=tokenizer.vocab_size, units=4, embedding_dim=3))
    return RunDir.create(tmp_path / "run", config, tokenizer)


def _write(run, step, best_step=None, keep=2):
    tensors = {"w": np.full((2, 3), step, np.float32)}
    state = {"optimizer/iteration": np.array(step, np.int64)}
    progress = Progress(step, history=ValidationHistory(best_step=best_step))
    return run.write_checkpoint(tensors, state, progress, keep=keep)


def _record(step):
    return LogRecord(step, 0, None, 1.0, 1.4, 100, 1e-3, None, 1.0)


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "f.json"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_tensors_round_trip_with_names_shapes_dtypes_including_scalars(tmp_path):
    tensors = {"a/b": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.array(7, np.int64)}
    (tmp_path / "t.safetensors").write_bytes(tensors_to_bytes(tensors))
    back = read_tensors(tmp_path / "t.safetensors")
    assert set(back) == set(tensors)
    for name, value in tensors.items():
        assert back[name].shape == value.shape and back[name].dtype == value.dtype
        np.testing.assert_array_equal(back[name], value)


def test_checkpoint_has_manifest_with_hashes_and_is_listed(run):
    ckpt = _write(run, 10)
    manifest = json.loads((ckpt.path / "manifest.json").read_text())
    assert set(manifest["files"]) == {
        "model.safetensors",
        "train_state.safetensors",
        "progress.json",
    }
    assert [c.step for c in run.checkpoints()] == [10]


def test_corrupt_or_incomplete_checkpoint_is_passed_over_for_the_previous_one(run):
    _write(run, 10)
    newer = _write(run, 20)
    with open(newer.path / MODEL, "r+b") as f:  # flip a byte: the hash no longer matches
        f.seek(-1, 2)
        byte = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert run.latest_checkpoint().step == 10
    (run.path / CHECKPOINTS / "step-00000030").mkdir()  # a folder without manifest
    assert run.latest_checkpoint().step == 10


def test_pruning_keeps_the_newest_two_and_the_best(run):
    for step in (10, 20, 30, 40):
        _write(run, step, best_step=20)
    assert [c.step for c in run.checkpoints()] == [20, 30, 40]
    assert run.best_checkpoint().step == 20
    _write(run, 50, best_step=50, keep=3)
    assert [c.step for c in run.checkpoints()] == [30, 40, 50]


def test_assign_tensors_refuses_missing_names_and_wrong_shapes_or_dtypes():
    model = build_model(ModelConfig(vocab_size=5, embedding_dim=3, units=4, num_layers=1))
    good = {v.path: np.asarray(v.numpy()) for v in model.weights}
    extra = {**good, "evil": np.zeros(1, np.float32)}
    with pytest.raises(CharlstmError, match="unexpected"):
        assign_tensors(variables_by_path(model.weights), extra, "x")
    name = "char_lstm/head/bias"
    weights = variables_by_path(model.weights)
    with pytest.raises(CharlstmError, match="head/bias"):
        assign_tensors(weights, {**good, name: np.zeros(6, np.float32)}, "x")
    with pytest.raises(CharlstmError, match="float64"):
        assign_tensors(weights, {**good, name: np.zeros(5, np.float64)}, "x")
    assign_tensors(weights, {**good, name: np.ones(5, np.float32)}, "x")
    np.testing.assert_array_equal(model.get_layer("head").bias.numpy(), np.ones(5))


def test_a_loaded_model_equals_the_trainers_own_tensor_by_tensor(tmp_path, text_file):
    from charlstm.trainer import Trainer
    from tests.conftest import prepare_data, tiny_config

    config = tiny_config(str(text_file), epochs=1)
    tokenizer = CharTokenizer.build(text_file.read_text(encoding="utf-8"))
    config = RunConfig(
        model=ModelConfig(**{**config.model.__dict__, "vocab_size": tokenizer.vocab_size}),
        train=config.train,
        corpus=config.corpus,
    )
    _, train_w, val_w = prepare_data(text_file.read_text(encoding="utf-8"), (), tokenizer, config)
    trainer = Trainer(RunDir.create(tmp_path / "run", config, tokenizer), train_w, val_w)
    trainer.fit(resume=False, corpus="tiny")
    # in the trainer's precision (auto: bfloat16 on some CPUs) and kernel (auto: compiled
    # where it builds), so that the outputs match too
    model = trainer.model
    loaded = RunDir.open(tmp_path / "run").load_model(None, model.matmul_dtype, model.kernel)
    ours = variables_by_path(trainer.model.weights)
    theirs = variables_by_path(loaded.weights)
    assert set(ours) == set(theirs)
    for name, variable in ours.items():
        np.testing.assert_array_equal(theirs[name].numpy(), variable.numpy(), err_msg=name)
    ids = tokenizer.encode("The king")[None]
    np.testing.assert_array_equal(loaded(ids)[0].numpy(), trainer.model(ids)[0].numpy())


def test_open_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(CharlstmError, match="no such run directory"):
        RunDir.open(tmp_path / "missing")
    with pytest.raises(CharlstmError, match="not a charlstm run directory"):
        RunDir.open(tmp_path)


def test_open_refuses_a_tokenizer_that_does_not_match_the_config(run):
    other = CharTokenizer.build("a completely different vocabulary!")
    (run.path / "tokenizer.json").write_text(other.to_json(), encoding="utf-8")
    with pytest.raises(CharlstmError, match="inconsistent"):
        RunDir.open(run.path)


def test_log_truncation_drops_records_after_a_step(run):
    for step in (5, 10, 15):
        run.append_log(_record(step))
    run.truncate_log(10)
    assert [r.step for r in run.read_log()] == [5, 10]


def test_a_resume_copy_takes_config_tokenizer_and_complete_checkpoints_only(run, tmp_path):
    _write(run, 10)
    _write(run, 20)
    (run.path / CHECKPOINTS / "step-00000030").mkdir()  # a killed run's incomplete save
    (run.path / ".config.json.x1y2.tmp").write_text("{")  # an atomic write's temporary
    (run.path / "train.lock").write_text("123")
    run.append_log(_record(10))
    (run.path / "tensorboard").mkdir()
    copy_for_resume(run.path, tmp_path / "copy")
    copied = RunDir.open(tmp_path / "copy")
    assert [c.step for c in copied.checkpoints()] == [10, 20]
    assert sorted(p.name for p in copied.path.iterdir()) == [
        "checkpoints", "config.json", "tokenizer.json"
    ]  # fmt: skip
    assert sorted(p.name for p in (copied.path / CHECKPOINTS).iterdir()) == [
        "step-00000010", "step-00000020"
    ]  # fmt: skip


def test_a_resume_copy_is_whole_while_the_run_is_rewritten_and_pruned(run, tmp_path):
    """The multi-worker resume: the chief rewrites config.json and saves and prunes
    checkpoints while another worker copies the run (a copy of every file there once failed on
    a temporary that was renamed away mid-copy)."""
    _write(run, 10)
    stop = threading.Event()

    def chief():
        step = 20
        while not stop.is_set():
            run.save_config(run.config)
            _write(run, step)
            step += 10

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the two threads take turns as often as they can
    writer = threading.Thread(target=chief)
    writer.start()
    try:
        for attempt in range(100):
            copy = tmp_path / f"copy{attempt}"
            copy_for_resume(run.path, copy)
            copied = RunDir.open(copy)
            assert copied.checkpoints(), attempt
            assert len(list((copy / CHECKPOINTS).iterdir())) == len(copied.checkpoints())
    finally:
        stop.set()
        writer.join()
        sys.setswitchinterval(interval)


def test_a_run_directory_written_before_still_loads_and_generates(tmp_path):
    """tests/data/run-2026-12-03 was written by charlstm as it was on 2026-12-03 (a tiny run
    of 21 steps): its progress, log and weights read into today's types and model."""
    import shutil
    from pathlib import Path

    from charlstm import api

    run_dir = shutil.copytree(Path(__file__).parent / "data" / "run-2026-12-03", tmp_path / "r")
    run = RunDir.open(run_dir)
    checkpoint = run.best_checkpoint()
    assert checkpoint.step == checkpoint.progress.best_step == 21
    assert checkpoint.progress.elapsed_s > 0 and checkpoint.progress.history.cuts == 0
    (record,) = [r for r in run.read_log() if r.step == 21]
    assert record.val_loss == pytest.approx(checkpoint.progress.best_val)
    lm = api.load(run_dir)
    assert len(lm.generate("The", 20, seed=1)) == 20
    assert api.info(run_dir).checkpoints == [21]
