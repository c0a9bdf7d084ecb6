"""Crash safety, one writer per run, safe loading and determinism (issue 5)."""

import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
from subprocess import DEVNULL

import numpy as np
import pytest

from charlstm import rundir as rundir_module
from charlstm.data import tbptt_windows
from charlstm.errors import CharlstmError
from charlstm.rundir import CONFIG, LOCK, MODEL, RunDir, run_lock
from charlstm.train import StepEvent, train
from tests.conftest import tiny_config

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _command(text_file, out, *extra):
    return [
        sys.executable, "-m", "charlstm", "train", str(text_file), "--out", str(out),
        "--embedding-dim", "8", "--units", "16", "--num-layers", "1",
        "--batch-size", "4", "--seq-len", "16", "--eval-every", "3", *extra,
    ]  # fmt: skip


def _newest_step(out) -> int:
    steps = [int(p.parent.name.split("-")[1]) for p in out.glob("checkpoints/step-*/manifest.json")]
    return max(steps, default=-1)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_finishes_with_a_whole_log(tmp_path, text_file):
    out = tmp_path / "run"
    epochs = 4
    command = _command(text_file, out, "--epochs", str(epochs), "--resume")
    rng = random.Random(1)
    kills = 0
    for _ in range(4):
        seen = _newest_step(out)
        proc = subprocess.Popen(command, env=ENV, stdout=DEVNULL, stderr=DEVNULL)
        deadline = time.monotonic() + 120
        while _newest_step(out) <= seen and proc.poll() is None:  # wait for progress
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))  # then kill anywhere: in a step, in a save
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 3
    final = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    run = RunDir.open(out)
    steps = [r["step"] for r in run.read_log()]
    train_part = np.zeros(round(len(text_file.read_text(encoding="utf-8")) * 0.9))
    windows = len(tbptt_windows(train_part, 4, 16))
    assert steps == sorted(set(steps)), "a step is logged twice"
    assert steps[-1] == run.latest_checkpoint().step == epochs * windows
    # no gap: validation every 3 steps and at each epoch's end
    assert all(b - a <= 3 for a, b in zip(steps, steps[1:])), steps
    model = run.load_model()
    assert model(np.zeros((1, 3), np.int32))[0].shape == (1, 3, run.config.model.vocab_size)
    assert not (out / LOCK).exists()


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_and_exits_130_with_one_line(tmp_path, text_file):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        _command(text_file, out, "--epochs", "50"),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list((out / "checkpoints").glob("step-*/manifest.json")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert stdout == "" and "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted: at step ") and "--resume" in last
    step = int(last.split("at step ")[1].split(",")[0])
    assert RunDir.open(out).latest_checkpoint().step == step
    assert not (out / LOCK).exists()


def test_a_crash_during_a_save_leaves_the_previous_checkpoint_in_use(
    tmp_path, text_file, monkeypatch
):
    out = tmp_path / "run"
    real_write = rundir_module.atomic_write_bytes
    writes = {"n": 0}

    def crash_on_the_sixth_checkpoint_file(path, data):
        if path.name in (MODEL, "train_state.safetensors", "progress.json", "manifest.json"):
            writes["n"] += 1
            if writes["n"] == 6:  # the second checkpoint's second file
                raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(rundir_module, "atomic_write_bytes", crash_on_the_sixth_checkpoint_file)
    with pytest.raises(OSError):
        train(out, tiny_config(str(text_file), eval_every=5))
    monkeypatch.setattr(rundir_module, "atomic_write_bytes", real_write)
    run = RunDir.open(out)
    assert [c.step for c in run.checkpoints()] == [5]
    result = train(out, resume=True, epochs=1)
    assert result.step > 5 and run.latest_checkpoint().step == result.step


def test_a_live_writer_locks_the_run_and_a_dead_ones_lock_is_taken_over(tmp_path, text_file):
    out = tmp_path / "run"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out.mkdir()
        (out / LOCK).write_text(f"{sleeper.pid}\n")
        with pytest.raises(
            CharlstmError, match=f"in use by another charlstm train .*{sleeper.pid}"
        ):
            train(out, tiny_config(str(text_file), epochs=1))
        assert (out / LOCK).read_text().strip() == str(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    result = train(out, tiny_config(str(text_file), epochs=1))  # the holder is dead now
    assert result.step > 0 and not (out / LOCK).exists()


def test_lock_holds_this_process_id_while_inside(tmp_path):
    with run_lock(tmp_path / "run"):
        assert (tmp_path / "run" / LOCK).read_text().strip() == str(os.getpid())
    assert not (tmp_path / "run" / LOCK).exists()


# safe loading


@pytest.fixture
def run_copy(tmp_path, trained_run):
    import shutil

    dest = tmp_path / "copy"
    shutil.copytree(trained_run, dest)
    return dest


def _edit_config(run_dir, edit):
    config = json.loads((run_dir / CONFIG).read_text())
    edit(config)
    (run_dir / CONFIG).write_text(json.dumps(config))


def _rehash(folder):
    """Make a tampered checkpoint look complete, as a malicious sender would."""
    import hashlib

    manifest = json.loads((folder / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["model"].update({"class_name": "Lambda"}), "unknown key"),
        (lambda c: c.update({"__reduce__": "os.system"}), "unknown key"),
        (lambda c: c["model"].update({"units": "os.system('echo pwned')"}), "must be int"),
        (lambda c: c["train"].update({"seq_len": 0}), "seq_len"),
        (lambda c: c.update({"model": ["not", "an", "object"]}), "JSON object"),
    ],
)
def test_a_config_naming_code_or_bad_values_is_refused(run_copy, edit, message, capfd):
    _edit_config(run_copy, edit)
    with pytest.raises(CharlstmError, match=message):
        RunDir.open(run_copy)
    assert "pwned" not in capfd.readouterr().out


def test_a_truncated_weights_file_is_refused_even_with_a_matching_manifest(run_copy):
    run = RunDir.open(run_copy)
    for checkpoint in run.checkpoints():
        data = (checkpoint.path / MODEL).read_bytes()
        (checkpoint.path / MODEL).write_bytes(data[: len(data) // 2])
    assert run.checkpoints() == []  # hashes no longer match: nothing loads
    for folder in (run_copy / "checkpoints").iterdir():
        _rehash(folder)
    with pytest.raises(CharlstmError, match="not a valid safetensors file"):
        run.load_model()


def test_weights_of_a_different_architecture_are_refused(run_copy, tmp_path, text_file):
    other = tmp_path / "other"
    config = tiny_config(str(text_file), epochs=1)
    train(other, config.__class__(model=config.model.__class__(units=9), train=config.train,
                                   corpus=config.corpus))  # fmt: skip
    source = RunDir.open(other).latest_checkpoint().path / MODEL
    run = RunDir.open(run_copy)
    target = run.best_checkpoint().path
    (target / MODEL).write_bytes(source.read_bytes())
    _rehash(target)
    with pytest.raises(CharlstmError, match="tensor .* the model needs"):
        run.load_model(run.best_checkpoint())


def _safetensors(header: dict, payload: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + payload


@pytest.mark.parametrize(
    "data",
    [
        _safetensors(
            {"w": {"dtype": "F32", "shape": [10**9], "data_offsets": [0, 4 * 10**9]}}, b""
        ),
        _safetensors(
            {
                "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
            },
            bytes(24),
        ),
        struct.pack("<Q", 2**62) + b"{}",
        b"\x89PNG\r\n\x1a\n" + bytes(64),
    ],
    ids=["huge tensor", "overlapping tensors", "huge header", "not safetensors"],
)
def test_malformed_safetensors_headers_are_refused(tmp_path, data):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(CharlstmError, match="not a valid safetensors file"):
        rundir_module.read_tensors(path)


def test_a_tokenizer_that_does_not_match_the_models_vocabulary_is_refused(run_copy):
    from charlstm.tokenizer import CharTokenizer

    (run_copy / "tokenizer.json").write_text(CharTokenizer.build("xyz").to_json())
    with pytest.raises(CharlstmError, match="inconsistent"):
        RunDir.open(run_copy)


# determinism


def test_same_seed_and_config_give_identical_first_epoch_losses(tmp_path, text_file):
    runs = []
    for name in ("a", "b"):
        events = []
        train(tmp_path / name, tiny_config(str(text_file), epochs=1), callback=events.append)
        runs.append([e.loss for e in events if isinstance(e, StepEvent)])
    assert runs[0] == runs[1]  # bitwise: same kernels, same order, same seeds on one CPU
    other = []
    train(tmp_path / "c", tiny_config(str(text_file), epochs=1, seed=1), callback=other.append)
    assert [e.loss for e in other if isinstance(e, StepEvent)] != runs[0]
