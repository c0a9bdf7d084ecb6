"""Data-parallel training on tf.distribute (`charlstm.distribute`) on this CPU machine: two
logical CPU devices under MirroredStrategy, and two worker processes on 127.0.0.1 under
MultiWorkerMirroredStrategy. Every run is a process of its own (tests/distributed.py): the
devices and the cluster are fixed when TensorFlow starts. Only loopback addresses are used,
and every process is started and ended by these tests."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from charlstm.errors import CharlstmError
from charlstm.rundir import RunDir
from charlstm.trainer import train
from tests.conftest import make_text
from tests.distributed import config, losses_of
from tests.test_cli import _foreground

pytestmark = pytest.mark.slow  # a minute in all: `pytest -m slow`, which CI runs

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
# float rounding: the replicas sum their gradients in another order than one device does, and
# Adam's m / sqrt(v) turns a rounding difference in a near-zero gradient into a visible one
# (weights here are O(0.1-1); the losses agree to ~1e-7)
CLOSE = {"rtol": 1e-3, "atol": 1e-4}


def _checkpoints(run: RunDir) -> dict:
    return {c.step: c for c in run.checkpoints()}


def test_two_devices_take_one_devices_steps_and_carry_the_same_states(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tests.distributed", "mirrored", str(tmp_path)],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    losses = json.loads((tmp_path / "losses.json").read_text())
    # each replica draws dropout masks of its own: the same ids, other logits
    first, second = losses["masks"]
    assert not np.allclose(first, second)
    one, two = losses["one"], losses["mirrored"]
    assert one.keys() == two.keys() and len(one) > 100
    for step, loss in one.items():
        assert two[step] == pytest.approx(loss, rel=1e-4, abs=1e-5), step
    runs = [RunDir.open(tmp_path / name) for name in ("one", "mirrored")]
    assert runs[1].config.train.strategy == "mirrored"
    ckpts = [_checkpoints(run) for run in runs]
    assert ckpts[0].keys() == ckpts[1].keys()
    mid_epoch = min(ckpts[0])  # its carried states are a window's, not an epoch's zeros
    for step in ckpts[0]:
        a, b = (c[step] for c in ckpts)
        for name, value in a.model_tensors().items():
            np.testing.assert_allclose(b.model_tensors()[name], value, **CLOSE, err_msg=name)
        state_a, state_b = a.train_state_tensors(), b.train_state_tensors()
        carried = [name for name in state_a if name.startswith("carry/")]
        assert carried and state_a.keys() == state_b.keys()
        for name in carried:  # gathered from the two replicas in the global streams' order
            np.testing.assert_allclose(state_b[name], state_a[name], **CLOSE, err_msg=name)
            if step == mid_epoch:
                assert np.abs(state_a[name]).min(axis=1).all()  # no stream left at zero
    # validation split across the devices, the replicas' sums added: the same loss
    logs = [run.read_log() for run in runs]
    assert [r.step for r in logs[0]] == [r.step for r in logs[1]]
    for a, b in zip(*logs):
        assert b.val_loss == pytest.approx(a.val_loss, rel=1e-4)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(
    tmp_path: Path, out: Path, corpus: Path, epochs: int, env=None, resume: bool = False,
    outs: list[Path] | None = None, minutes: float | None = None, envs=({}, {}),
):  # fmt: skip
    """Two workers of a cluster on 127.0.0.1 (worker 0 is the chief), each with its own
    TF_CONFIG and temporary folder: (processes, weight files, temporary folders). With
    `resume`, they resume the run in `out` to `epochs`. `outs`: each worker's --out (default:
    `out` for both, as one command run on every host). `minutes`: --minutes. `env`: more
    environment for both, `envs` for each. SIGINT is as a terminal's foreground job has it."""
    outs = outs or [out, out]
    more = ["resume"] if resume else [str(minutes)] if minutes is not None else []
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs, weights, temps = [], [], []
    for index in range(2):
        temp = tmp_path / f"tmp{index}{'-resume' * resume}"
        temp.mkdir()
        tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        weights.append(tmp_path / f"weights{index}{'-resume' * resume}.npz")
        temps.append(temp)
        command = [sys.executable, "-m", "tests.distributed", "worker", str(outs[index]),
                   str(corpus), str(epochs), str(weights[-1]), *more]  # fmt: skip
        # TensorFlow's log level as a user's worker has it: charlstm's default for workers
        worker_env = {k: v for k, v in ENV.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
        worker_env |= {"TF_CONFIG": json.dumps(tf_config), "TMPDIR": str(temp), **(env or {})}
        worker_env |= envs[index]
        procs.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=worker_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=_foreground,
            )  # fmt: skip
        )
    return procs, weights, temps


def _end(procs) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _train_on_two_workers(tmp_path, out, corpus, epochs, outs=None, **more):
    """`_start_workers` (`more`: its other options), to the end: both exit 0, and every
    worker holds the same weights after the all-reduced steps. Returns their temporary
    folders and what each wrote on stderr."""
    outs = outs or [out, out]
    procs, weights, temps = _start_workers(tmp_path, out, corpus, epochs, outs=outs, **more)
    try:
        outputs = [proc.communicate(timeout=300) for proc in procs]
    finally:
        _end(procs)
    errs = [err.decode() for _, err in outputs]
    # on a failure, every worker's own words: the first to fail is not always the one reporting
    assert [p.returncode for p in procs] == [0, 0], "\n---\n".join(e[-3000:] for e in errs)
    for err, own in zip(errs, outs):
        # every worker points to its --out (the chief's run), not to its temporary folder
        assert err.rstrip().endswith(f"generate with: charlstm generate {own}")
    first, second = np.load(weights[0]), np.load(weights[1])
    assert sorted(first.files) == sorted(second.files)
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    return temps, errs


def test_two_workers_train_as_one_process_and_the_chiefs_run_resumes_on_one(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    out = tmp_path / "run"
    # worker 1 is told another --out: whatever it wrote there would show
    elsewhere = tmp_path / "worker-1-out"
    temps, _ = _train_on_two_workers(tmp_path, out, corpus, epochs=1, outs=[out, elsewhere])
    assert not elsewhere.exists()
    # the chief alone wrote the run, complete; the other worker's folder is gone
    run = RunDir.open(out)
    assert run.config.train.strategy == "multiworker"
    steps = [r.step for r in run.read_log()]
    assert steps == sorted(set(steps)) and run.latest_checkpoint().step == steps[-1]
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints", "config.json", "log.jsonl", "tensorboard", "tokenizer.json"
    ]  # fmt: skip
    assert [list(temp.iterdir()) for temp in temps] == [[], []]
    # the run goes on in one process, with the steps an uninterrupted one-process run takes
    resumed: list = []
    train(out, resume=True, epochs=2, strategy="one", callback=resumed.append)
    whole: list = []
    train(tmp_path / "whole", config(str(corpus), "one", epochs=2), callback=whole.append)
    whole_losses, resumed_losses = losses_of(whole), losses_of(resumed)
    assert min(resumed_losses) == steps[-1] + 1 and max(resumed_losses) == max(whole_losses)
    for step, loss in resumed_losses.items():
        assert loss == pytest.approx(whole_losses[step], rel=1e-4, abs=1e-5), step
    assert RunDir.open(out).config.train.strategy == "one"


def _has_checkpoint(out: Path) -> bool:
    try:
        return bool(RunDir.open(out).checkpoints())
    except CharlstmError:  # not a run yet
        return False


def test_a_killed_worker_stops_the_other_with_one_line_and_the_cluster_resumes(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    out = tmp_path / "run"
    timeout = 20
    env = {"CHARLSTM_COLLECTIVE_TIMEOUT": str(timeout)}
    procs, _, _ = _start_workers(tmp_path, out, corpus, epochs=1000, env=env)
    try:
        _wait_for_a_checkpoint(procs, out)
        procs[1].kill()  # SIGKILL: no goodbye to its peer
        killed = time.monotonic()
        _, err = procs[0].communicate(timeout=timeout + 90)
        waited = time.monotonic() - killed
    finally:
        _end(procs)
    lines = err.decode().strip().splitlines()
    assert procs[0].returncode == 1, lines[-5:]
    assert lines[-1].startswith("Error: a worker of the cluster was lost"), lines[-5:]
    assert not any("Traceback" in line for line in lines)
    # no TensorFlow log line about the failed calls: the one line says it
    assert not [line for line in lines if re.match(r"[EWIF]\d{4} ", line)], lines[-5:]
    # a lost peer is noticed within the collective timeout (in practice at once: the
    # connection resets), not after the communicate's allowance
    assert waited < timeout + 10, waited
    kept = RunDir.open(out).latest_checkpoint().step  # the last complete checkpoint is kept
    # --resume with the same command on the same cluster goes on from it, to the epoch's end
    _train_on_two_workers(tmp_path, out, corpus, epochs=1, resume=True)
    run = RunDir.open(out)
    steps = [r.step for r in run.read_log()]
    assert steps == sorted(set(steps)) and kept in steps
    assert run.latest_checkpoint().step == steps[-1] > kept


def _wait_for_a_checkpoint(procs, out: Path) -> None:
    deadline = time.monotonic() + 240
    while not _has_checkpoint(out):
        assert time.monotonic() < deadline, "the cluster never saved a checkpoint"
        assert all(p.poll() is None for p in procs), procs[0].stderr.read().decode()[-3000:]
        time.sleep(0.5)


def test_ctrl_c_to_one_worker_stops_both_at_one_step_with_one_line_each(tmp_path):
    """SIGINT to worker 1 (not the chief): both save at the same step and exit 130 within
    seconds, each with one line; the chief's run resumes from that step."""
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    out = tmp_path / "run"
    procs, _, _ = _start_workers(tmp_path, out, corpus, epochs=1000)
    try:
        _wait_for_a_checkpoint(procs, out)
        procs[1].send_signal(signal.SIGINT)
        asked = time.monotonic()
        outputs = [proc.communicate(timeout=120) for proc in procs]
        took = time.monotonic() - asked
    finally:
        _end(procs)
    errs = [err.decode() for _, err in outputs]
    assert [p.returncode for p in procs] == [130, 130], "\n---\n".join(e[-3000:] for e in errs)
    assert took < 15, took  # a step, a checkpoint and the exit: seconds, not a timeout
    said = []
    for err in errs:
        assert "Traceback" not in err and not re.search(r"^[EWIF]\d{4} ", err, re.M), err[-3000:]
        last = err.rstrip().splitlines()[-1]
        found = re.fullmatch(r"interrupted: at step (\d+), checkpoint saved; continue with: "
                             r"charlstm train --out .* --resume", last)  # fmt: skip
        assert found, last
        said.append(int(found.group(1)))
    assert said[0] == said[1] == RunDir.open(out).latest_checkpoint().step


def test_minutes_end_both_workers_at_the_same_step_though_their_clocks_differ(tmp_path):
    """Worker 1 begins its fit 5 s after the chief, so its own deadline is 5 s later: the
    agreed clock stops both at the chief's (a worker left alone would wait for a peer that
    has gone, and fail)."""
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    out = tmp_path / "run"
    _, errs = _train_on_two_workers(
        tmp_path, out, corpus, epochs=1000, minutes=0.25,
        envs=({}, {"CHARLSTM_TEST_FIT_DELAY": "5"}),
    )  # fmt: skip
    steps = []
    for err in errs:
        last = err.rstrip().splitlines()[-1]
        found = re.match(r"done \(minutes\): step (\d+),", last)
        assert found, last
        steps.append(int(found.group(1)))
    assert steps[0] == steps[1] == RunDir.open(out).latest_checkpoint().step > 0
