"""Crash safety, one writer per run, safe loading and determinism."""

import errno
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path
from subprocess import DEVNULL

import numpy as np
import pytest

from charlstm import rundir as rundir_module
from charlstm.data import tbptt_windows
from charlstm.errors import CharlstmError
from charlstm.events import StepEvent
from charlstm.rundir import CONFIG, LOCK, MODEL, TRAIN_STATE, RunDir, run_lock
from charlstm.trainer import train
from tests.conftest import TINY_TRAIN_ARGS, make_text, require, tiny_config
from tests.test_cli import run_charlstm, started

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
    steps = [r.step for r in run.read_log()]
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


def test_a_save_failing_mid_checkpoint_leaves_the_previous_one_and_no_temporary(tmp_path):
    """The fault itself, in a real `charlstm train`: once a checkpoint is complete, the
    process' file-size limit (RLIMIT_FSIZE, set from outside with prlimit, which binds root
    too) is lowered between the sizes of the checkpoint's first file and its second, so the
    next save writes model.safetensors and then the kernel refuses train_state.safetensors
    (EFBIG), midway through the checkpoint, as a full disk or a quota would."""
    text = tmp_path / "tiny.txt"
    text.write_text(make_text(), encoding="utf-8")
    out = tmp_path / "run"
    args = [*TINY_TRAIN_ARGS, "--epochs", "1000", "--eval-every", "40", "--no-tensorboard"]
    with started("train", text, "--out", out, *args) as proc:
        deadline = time.monotonic() + 120
        while not (found := rundir_module.complete_checkpoints(out)):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.01)
        sizes = {f.name: f.stat().st_size for f in found[-1].path.iterdir()}
        assert sizes[MODEL] < sizes[TRAIN_STATE]
        limit = (sizes[MODEL] + sizes[TRAIN_STATE]) // 2
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (limit, limit))
        _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "File too large" in errors[0], err[-3000:]
    failed = int(errors[0].split("cannot write checkpoint ")[1].split()[0])
    kept = [c.step for c in RunDir.open(out).checkpoints()]
    assert kept and kept[-1] < failed and f"step {kept[-1]}, is intact" in errors[0]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        f"step-{step:08d}" for step in kept
    ]  # no partial folder of the failed step
    RunDir.open(out).load_model()
    resumed = run_charlstm("train", "--out", out, "--resume", "--epochs", "1", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert RunDir.open(out).latest_checkpoint().step > kept[-1]


def _record_fsyncs_and_renames(monkeypatch, name_folders: bool) -> list:
    """Spy on os.fsync and os.replace (both still do their work): ("fsync", "file" or the
    folder's name, or "folder"), ("replace", the destination's name), in order."""
    events: list = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        folder = stat.S_ISDIR(os.fstat(fd).st_mode)
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name if name_folders else "folder"
        events.append(("fsync", name if folder else "file"))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_atomic_writes_fsync_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = _record_fsyncs_and_renames(monkeypatch, name_folders=False)
    rundir_module.atomic_write_bytes(tmp_path / "a.json", b"new")
    assert events == [("fsync", "file"), ("replace", "a.json"), ("fsync", "folder")]
    assert (tmp_path / "a.json").read_bytes() == b"new"


def test_a_checkpoint_write_fsyncs_every_file_and_the_folders_it_adds_and_prunes(
    tmp_path, monkeypatch
):
    """The whole write_checkpoint sequence, recorded: the new step folder's entry is made
    durable (fsync of checkpoints/) before its files; each file is fsync'd, renamed into place
    and its folder fsync'd; the manifest comes last; pruning is made durable too."""
    from charlstm.config import ModelConfig, RunConfig
    from charlstm.records import Progress
    from charlstm.tokenizer import CharTokenizer

    tokenizer = CharTokenizer.build("abc de\n")
    config = RunConfig(model=ModelConfig(vocab_size=tokenizer.vocab_size, units=4))
    run = RunDir.create(tmp_path / "run", config, tokenizer)
    events = _record_fsyncs_and_renames(monkeypatch, name_folders=True)
    tensors = {"w": np.ones((2, 3), np.float32)}
    run.write_checkpoint(tensors, {"s": np.zeros(1, np.float32)}, Progress(10), keep=1)
    step = "step-00000010"
    written = [("fsync", "file"), ("replace", None), ("fsync", step)]
    expected = [("fsync", "checkpoints")]
    for name in ("model.safetensors", "train_state.safetensors", "progress.json", "manifest.json"):
        expected += [(kind, name if what is None else what) for kind, what in written]
    assert events == expected
    events.clear()
    run.write_checkpoint(tensors, {"s": np.zeros(1, np.float32)}, Progress(20), keep=1)
    assert events[-1] == ("fsync", "checkpoints")  # step 10 pruned, durably
    assert [c.step for c in run.checkpoints()] == [20]


def _name_in_manifest(folder: Path, name: str) -> None:
    """Tamper with a checkpoint: its manifest also names `name`; or, for "symlink", its weights
    become a symlink to an identical file outside the folder (the hash still matches)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    if name == "symlink":
        outside = folder.parent.parent / f"outside-{folder.name}"
        (folder / "model.safetensors").rename(outside)
        (folder / "model.safetensors").symlink_to(outside)
    else:
        manifest["files"][name] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["/dev/zero", "../../config.json", "/etc/passwd", "symlink"])
def test_a_manifest_naming_a_file_outside_its_folder_makes_the_checkpoint_incomplete(
    run_copy, name
):
    """A checkpoint's manifest names exactly its three files, regular files of its folder:
    another name (absolute, out of the folder) is never read, a symlink never followed; the
    run falls back to an older checkpoint, and with none left `charlstm generate` refuses in
    one line, at once (reading /dev/zero would never end)."""
    folders = sorted((run_copy / "checkpoints").iterdir())
    assert len(folders) >= 2
    _name_in_manifest(folders[-1], name)
    run = RunDir.open(run_copy)
    assert run.latest_checkpoint().path == folders[-2]  # the older one is used
    for folder in folders[:-1]:
        _name_in_manifest(folder, name)
    assert run.checkpoints() == []
    done = subprocess.run(
        [sys.executable, "-m", "charlstm", "generate", str(run_copy), "--length", "5"],
        env=ENV, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "passes its manifest check" in done.stderr


@pytest.mark.slow
def test_a_second_real_trainer_on_a_live_run_is_refused_and_a_killed_ones_lock_is_taken_over(
    tmp_path, text_file
):
    """Two real `charlstm train` processes on one --out: the second exits 1 with one line
    naming the first; once the first is SIGKILLed (its lock file stays, naming it), the same
    run resumes in a new process."""
    out = tmp_path / "run"
    first = subprocess.Popen(_command(text_file, out, "--epochs", "1000", "--minutes", "3"),
                             env=ENV, stdout=DEVNULL, stderr=DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while _newest_step(out) < 0:  # it trains: a checkpoint is written
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        second = subprocess.run(_command(text_file, out, "--epochs", "1"), env=ENV,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert second.returncode == 1 and second.stdout == "", second.stderr
        assert second.stderr.count("\n") == 1
        assert f"in use by another charlstm train (process {first.pid})" in second.stderr
        assert first.poll() is None  # the first goes on
    finally:
        first.kill()  # SIGKILL: its lock file stays behind
        first.wait()
    assert (out / LOCK).read_text().strip() == str(first.pid)
    resumed = subprocess.run(
        [sys.executable, "-m", "charlstm", "train", "--out", str(out), "--resume", "--minutes",
         "0.05"], env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert not (out / LOCK).exists()


_RACER = """
import os, sys, time
from pathlib import Path
from charlstm.errors import CharlstmError
from charlstm.rundir import run_lock
out, start, log = Path(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
try:
    with run_lock(out):
        entered = time.monotonic()
        time.sleep(0.5)
        with open(log, "a") as f:
            f.write(f"{entered} {time.monotonic()}\\n")
except CharlstmError:
    pass
"""


def test_processes_racing_for_a_stale_lock_hold_it_one_at_a_time(tmp_path):
    """A stale lock (its writer killed) raced for by six processes at the same moment: at
    least one takes it, and no two ever hold it at once."""
    out, log = tmp_path / "run", tmp_path / "held.txt"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK).write_text(f"{dead.pid}\n")  # as a SIGKILLed writer leaves it
    start = time.time() + 4  # every racer has imported charlstm by then
    racers = [
        subprocess.Popen([sys.executable, "-c", _RACER, str(out), str(start), str(log)], env=ENV)
        for _ in range(6)
    ]
    for racer in racers:
        assert racer.wait(timeout=60) == 0
    held = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
    assert held
    for (_, left), (entered, _) in zip(held, held[1:]):
        assert entered >= left, held  # one holder at a time
    assert not (out / LOCK).exists()


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


# start-up, full disk, --force, symlinks


# runs the real command with os.replace turned into a SIGKILL-like exit at its k-th call
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_sigkill_during_start_up_never_locks_the_plain_command_out(tmp_path, text_file, seed):
    """The plain command (no --resume), SIGKILLed at a random moment of its first seconds
    (importing, building, writing tokenizer.json and config.json, the first steps), then run
    again: it trains; or, once a checkpoint exists, it says in one line to add --resume, and
    that finishes the run. No temporary file survives the finished run."""
    out = tmp_path / "run"
    command = _command(text_file, out, "--epochs", "1")
    delay = random.Random(seed).uniform(3.0, 9.0)
    proc = subprocess.Popen(command, env=ENV, stdout=DEVNULL, stderr=DEVNULL)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    again = subprocess.run(command, env=ENV, capture_output=True, text=True)
    if again.returncode == 1:  # it had saved a checkpoint: keep it, continue with --resume
        assert _newest_step(out) >= 0, again.stderr
        assert again.stderr.count("\n") == 1 and "pass --resume" in again.stderr
        again = subprocess.run([*command, "--resume"], env=ENV, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    run = RunDir.open(out)
    assert run.read_log()[-1].step == run.latest_checkpoint().step
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not (out / LOCK).exists()


def test_a_folder_left_before_the_first_checkpoint_is_started_afresh(tmp_path, text_file):
    """What a killed start leaves (a stale lock, tokenizer.json, config.json, temporaries, an
    incomplete checkpoint folder) holds nothing to keep: the plain command starts there."""
    out = tmp_path / "run"
    train(out, tiny_config(str(text_file), epochs=1))
    shutil.rmtree(out / "checkpoints")
    (out / "checkpoints" / "step-00000003").mkdir(parents=True)  # killed mid-save
    (out / ".config.json.x1y2.tmp").write_text("{")
    (out / "checkpoints" / "step-00000003" / ".model.safetensors.a1.tmp").write_bytes(b"x")
    (out / LOCK).write_text("999999999\n")  # a killed writer's
    result = train(out, tiny_config(str(text_file), epochs=1))
    assert result.step > 0
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    (out / "notes.txt").write_text("mine")  # a file charlstm did not write: refused
    shutil.rmtree(out / "checkpoints")
    with pytest.raises(CharlstmError, match="already holds"):
        train(out, tiny_config(str(text_file), epochs=1))


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs: a real file system that fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    require(done.returncode == 0, "needs root to mount a 2 MiB tmpfs (a disk that fills up)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)])


def _fill(folder: Path) -> None:
    """Write a file until the disk refuses another byte."""
    with open(folder / "filler", "wb", buffering=0) as f:
        for size in (64 * 1024, 4096, 1):
            try:
                while True:
                    f.write(bytes(size))
            except OSError as err:
                assert err.errno == errno.ENOSPC


@pytest.mark.slow
def test_a_full_disk_stops_training_in_one_line_and_the_last_checkpoint_loads(
    small_disk, text_file
):
    out = small_disk / "run"
    first = subprocess.run(
        _command(text_file, out, "--epochs", "1"), env=ENV, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    before = RunDir.open(out).latest_checkpoint().step
    _fill(small_disk)
    resumed = subprocess.run(
        _command(text_file, out, "--epochs", "3", "--resume"),
        env=ENV, capture_output=True, text=True,
    )  # fmt: skip
    assert resumed.returncode == 1
    assert resumed.stdout == ""
    assert "Traceback" not in resumed.stderr
    last_line = resumed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("Error: ") and "No space left on device" in last_line
    assert f"step {before}, is intact" in last_line
    run = RunDir.open(out)
    assert run.latest_checkpoint().step == before
    # nothing half-written is left behind: no temporary, no step folder without its manifest
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    folders = sorted((out / "checkpoints").iterdir())
    assert folders == [c.path for c in run.checkpoints()]
    run.load_model()  # still loads, on the full disk
    (small_disk / "filler").unlink()
    again = subprocess.run(
        _command(text_file, out, "--epochs", "2", "--resume"),
        env=ENV, capture_output=True, text=True,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert RunDir.open(out).latest_checkpoint().step > before


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_force_replaces_a_run_of_another_size_and_keeps_foreign_files(tmp_path, text_file):
    out = tmp_path / "run"
    train(out, tiny_config(str(text_file), epochs=1))
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    old_steps = {c.path.name for c in RunDir.open(out).checkpoints()}
    config = tiny_config(str(text_file), epochs=1, eval_every=7)
    config = config.__class__(
        model=config.model.__class__(**{**config.model.__dict__, "units": 12}),
        train=config.train,
        corpus=config.corpus,
    )
    train(out, config, force=True)
    run = RunDir.open(out)
    assert run.config.model.units == 12
    new_steps = {c.path.name for c in run.checkpoints()}
    assert {p.name for p in (out / "checkpoints").iterdir()} == new_steps != old_steps
    log = run.read_log()  # B's only: every 7 steps, then the epoch's end
    assert [r.step % 7 for r in log[:-1]] == [0] * (len(log) - 1)
    assert run.load_model().get_layer("head").kernel.shape[0] == 12
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_symlinks_in_a_run_folder_are_never_followed_out_of_it(tmp_path, text_file):
    outside = tmp_path / "outside"
    (outside / "step-00000001").mkdir(parents=True)
    (outside / "step-00000001" / "precious.txt").write_text("keep", encoding="utf-8")
    (outside / "log.txt").write_text("keep", encoding="utf-8")
    before = _hashes(outside)
    out = tmp_path / "run"
    train(out, tiny_config(str(text_file), epochs=1))
    (out / "checkpoints" / "step-00000001").symlink_to(outside / "step-00000001")
    run = RunDir.open(out)
    assert all(not c.path.is_symlink() for c in run.checkpoints())
    train(out, resume=True, epochs=2)  # prunes checkpoints: the link goes, not its target
    assert not (out / "checkpoints" / "step-00000001").exists()
    (out / "log.jsonl").unlink()
    (out / "log.jsonl").symlink_to(outside / "log.txt")
    shutil.rmtree(out / "checkpoints")
    (out / "checkpoints").symlink_to(outside)
    assert RunDir.open(out).checkpoints() == []
    train(out, tiny_config(str(text_file), epochs=1), force=True)
    assert not (out / "checkpoints").is_symlink() and not (out / "log.jsonl").is_symlink()
    assert _hashes(outside) == before


# loading and resuming refuse what does not belong


def test_a_config_naming_a_huge_model_is_refused_before_anything_is_built(run_copy):
    _edit_config(run_copy, lambda c: c["model"].update({"units": 60000}))
    run = RunDir.open(run_copy)
    expected = r"kernel is float32\[8, 64\], the model needs float32\[8, 240000\]"
    with pytest.raises(CharlstmError, match=expected):
        run.load_model()


def test_training_a_model_too_big_for_the_memory_is_refused_before_touching_out(
    tmp_path, text_file
):
    config = tiny_config(str(text_file))
    config = config.__class__(
        model=config.model.__class__(units=50000, num_layers=4),
        train=config.train,
        corpus=config.corpus,
    )
    with pytest.raises(CharlstmError, match="GiB of memory, more than the .* GiB available"):
        train(tmp_path / "run", config)
    assert not (tmp_path / "run").exists()


def test_resume_refuses_a_checkpoint_missing_a_layer(tmp_path, text_file):
    out = tmp_path / "run"
    train(out, tiny_config(str(text_file), epochs=1))
    other = tmp_path / "other"
    config = tiny_config(str(text_file), epochs=1)
    train(other, config.__class__(model=config.model.__class__(embedding_dim=8, units=16,
          num_layers=1), train=config.train, corpus=config.corpus))  # fmt: skip
    target = RunDir.open(out).latest_checkpoint().path
    source = RunDir.open(other).latest_checkpoint().path
    shutil.copy(source / MODEL, target / MODEL)
    _rehash(target)
    with pytest.raises(CharlstmError, match="missing .*lstm_1"):
        train(out, resume=True, epochs=2)


def test_resume_refuses_a_tampered_training_state(tmp_path, text_file):
    out = tmp_path / "run"
    train(out, tiny_config(str(text_file), epochs=1))
    target = RunDir.open(out).latest_checkpoint().path
    state = rundir_module.read_tensors(target / "train_state.safetensors")
    state["carry/0/h"] = np.zeros((3, 3), np.float32)  # another shape
    state["evil"] = np.zeros(1, np.float32)
    (target / "train_state.safetensors").write_bytes(rundir_module.tensors_to_bytes(state))
    _rehash(target)
    with pytest.raises(CharlstmError, match="does not match the model: missing \\[\\], unexpected"):
        train(out, resume=True, epochs=2)


def test_info_counts_the_parameters_of_the_model_it_describes(trained_run):
    done = subprocess.run(
        [sys.executable, "-m", "charlstm", "info", str(trained_run)],
        env=ENV, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    count = RunDir.open(trained_run).load_model().count_params()
    assert f"parameters: {count:,}" in done.stdout


@pytest.mark.slow
def test_training_is_deterministic_across_processes(tmp_path, text_file):
    logs = []
    for name, hash_seed in (("a", "1"), ("b", "2")):
        out = tmp_path / name
        done = subprocess.run(
            _command(text_file, out, "--epochs", "1"),
            env={**ENV, "PYTHONHASHSEED": hash_seed}, capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        logs.append([(r.step, r.train_loss, r.val_loss) for r in RunDir.open(out).read_log()])
        weights = RunDir.open(out).latest_checkpoint().model_tensors()
        logs[-1].append(sorted((k, v.tobytes()) for k, v in weights.items()))
    assert logs[0] == logs[1]


def test_a_run_killed_after_a_checkpoint_resumes_in_a_new_process_with_the_same_losses(
    tmp_path, text_file
):
    """SIGKILL a training process once it has saved a checkpoint, resume in a new process:
    every logged loss (training and validation, at every pass) equals an uninterrupted run's,
    which trained in a process of its own."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    budget = ("--epochs", "2", "--eval-every", "5")
    done = subprocess.run(_command(text_file, whole, *budget), env=ENV, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    proc = subprocess.Popen(_command(text_file, cut, *budget), env=ENV, stdout=DEVNULL,
                            stderr=DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while _newest_step(cut) < 10:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert proc.poll() is None
        proc.kill()  # SIGKILL: no handler runs
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = RunDir.open(cut).latest_checkpoint().step
    resumed = subprocess.run(
        [*_command(text_file, cut, *budget), "--resume"], env=ENV, capture_output=True
    )
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert f"resuming at step {killed_at}".encode() in resumed.stderr

    def losses(out):
        return [(r.step, r.train_loss, r.val_loss) for r in RunDir.open(out).read_log()]

    assert [r[0] for r in losses(cut)] == [r[0] for r in losses(whole)]
    for (step, train_cut, val_cut), (_, train_whole, val_whole) in zip(losses(cut), losses(whole)):
        assert train_cut == pytest.approx(train_whole, rel=1e-4), step
        assert val_cut == pytest.approx(val_whole, rel=1e-4), step
