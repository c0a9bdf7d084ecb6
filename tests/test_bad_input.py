"""Bad input through the real `charlstm` command, one subprocess per case.

Each case must end in its documented exit status (docs/rundir.md, "Errors and exit codes") with
one line on stderr, nothing on stdout, no traceback, every input file as it was, and nothing
created.
Subprocesses, not click's CliRunner: CliRunner catches what the real command would print as a
traceback, so "no traceback" is only proved by the command itself.
"""

import hashlib
import json
import shutil
import struct
from pathlib import Path

import pytest

from tests.conftest import TINY_TRAIN_ARGS, make_text
from tests.test_cli import run_charlstm


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root, relative, -> the sha256 of its bytes ("folder" for a folder)."""
    return {str(p.relative_to(root)): _digest(p) for p in sorted(root.rglob("*"))}


def _digest(path: Path) -> str:
    return "folder" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()


def _edit_config(run: Path, edit) -> None:
    config = json.loads((run / "config.json").read_text())
    edit(config)
    (run / "config.json").write_text(json.dumps(config))  # NaN stays NaN: json writes it bare


def _rehash(run: Path) -> None:
    """Make every tampered checkpoint look complete: its manifest names the new hashes."""
    for folder in (run / "checkpoints").iterdir():
        manifest = json.loads((folder / "manifest.json").read_text())
        for name in manifest["files"]:
            manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        (folder / "manifest.json").write_text(json.dumps(manifest))


def _damage_weights(run: Path, damage) -> None:
    for weights in run.glob("checkpoints/*/model.safetensors"):
        weights.write_bytes(damage(weights.read_bytes()))
    _rehash(run)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, trained_run) -> Path:
    """One folder of bad (and good) inputs shared by every case; no case may change it."""
    d = tmp_path_factory.mktemp("inputs")
    (d / "tiny.txt").write_text(make_text(), encoding="utf-8")
    (d / "empty.txt").write_bytes(b"")
    (d / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(20))
    (d / "latin1.txt").write_bytes("caf\u00e9 au lait\n".encode("latin-1") * 50)
    (d / "short.txt").write_text("too short\n", encoding="utf-8")
    (d / "aaa.txt").write_text("a" * 5000, encoding="utf-8")
    (d / "notes.txt").write_text("my notes\n", encoding="utf-8")
    (d / "bad.toml").write_text('units = "many"\n', encoding="utf-8")
    (d / "folder").mkdir()
    (d / "folder" / "inside.txt").write_text(make_text(), encoding="utf-8")
    (d / "binaries").mkdir()
    for name in ("a.png", "b.png"):
        shutil.copy(d / "image.png", d / "binaries" / name)
    (d / "other-files").mkdir()
    (d / "other-files" / "notes.txt").write_text("not a run\n", encoding="utf-8")
    (d / "not-a-run").mkdir()
    (d / "not-a-run" / "readme.txt").write_text("hello\n", encoding="utf-8")
    shutil.copytree(trained_run, d / "run")

    def damaged(name: str) -> Path:
        return Path(shutil.copytree(trained_run, d / name))

    (damaged("config-not-json") / "config.json").write_text('{"model": {"units": 16,')
    _edit_config(damaged("config-unknown-key"), lambda c: c["model"].update({"class_name": "X"}))
    _edit_config(
        damaged("config-nan"), lambda c: c["train"].update({"learning_rate": float("nan")})
    )
    # a config naming a model far larger than its weights: refused before anything is built
    _edit_config(damaged("config-huge-units"), lambda c: c["model"].update({"units": 200000}))
    (damaged("tokenizer-garbage") / "tokenizer.json").write_bytes(b"\x00\xffnot a tokenizer")
    shutil.rmtree(damaged("no-checkpoints") / "checkpoints")
    _damage_weights(damaged("weights-truncated"), lambda data: data[: len(data) // 2])
    _damage_weights(damaged("weights-garbage"), lambda data: struct.pack("<Q", 2**40) + bytes(64))
    return d


# usage errors stop before --out is used; should one not, the default --out lands in {tmp}, the
# command's working folder, and the case fails
TRAIN_TINY = ["train", "{d}/tiny.txt", *TINY_TRAIN_ARGS]


def train_on(text: str) -> list[str]:
    return ["train", f"{{d}}/{text}", "--out", "{tmp}/out", *TINY_TRAIN_ARGS]


# (arguments, exit status, a piece of the one stderr line); {d} is the inputs folder, {tmp} an
# empty folder of the case's own
CASES = [
    # the text to train on
    pytest.param(train_on("missing.txt"), 1, "no such file", id="train-missing-file"),
    pytest.param(train_on("empty.txt"), 1, "empty", id="train-empty-file"),
    pytest.param(train_on("image.png"), 1, "binary", id="train-binary-file"),
    pytest.param(train_on("latin1.txt"), 1, "byte offset 3", id="train-non-utf8-file"),
    pytest.param(train_on("binaries"), 1, "none of its 2 files", id="train-folder-without-text"),
    pytest.param(train_on("short.txt"), 1, "too short", id="train-text-shorter-than-a-window"),
    pytest.param(train_on("aaa.txt"), 1, "one distinct character", id="train-one-character"),
    # usage: options and their ranges
    pytest.param(["train", "--no-such-option"], 2, "--no-such-option", id="train-unknown-option"),
    pytest.param([*TRAIN_TINY, "--units", "lots"], 2, "--units", id="train-units-not-a-number"),
    pytest.param([*TRAIN_TINY, "--seq-len", "0"], 2, "--seq-len", id="train-seq-len-0"),
    pytest.param([*TRAIN_TINY, "--dropout", "1.0"], 2, "--dropout", id="train-dropout-1"),
    pytest.param([*TRAIN_TINY, "--num-layers", "17"], 2, "--num-layers", id="train-17-layers"),
    pytest.param([*TRAIN_TINY, "--lr-decay", "0"], 2, "--lr-decay", id="train-lr-decay-0"),
    pytest.param(
        [*TRAIN_TINY, "--val-fraction", "0.5"], 2, "--val-fraction", id="train-val-fraction-half"
    ),
    pytest.param([*TRAIN_TINY, "--errors", "ignore"], 2, "--errors", id="train-errors-ignore"),
    pytest.param([*TRAIN_TINY, "--precision", "float16"], 2, "--precision", id="train-float16"),
    pytest.param(["train", "war-and-peace"], 1, "nor a corpus name", id="train-unknown-corpus"),
    pytest.param(
        [*train_on("tiny.txt"), "--config", "{d}/bad.toml"], 1, "units", id="config-file-wrong-type"
    ),
    pytest.param(
        ["export", "{d}/run", "--format", "keras", "--out", "{d}/tiny.txt/x"],
        1,
        "is a file, not a folder",
        id="export-under-a-file",
    ),
    pytest.param(
        ["export", "{d}/run", "--format", "web", "--out", "{d}/notes.txt"],
        1,
        "exists",
        id="export-web-over-a-file",
    ),
    pytest.param(
        ["corpus", "info", "war-and-peace"], 1, "nor a corpus name", id="corpus-info-unknown"
    ),
    pytest.param(["corpus", "info", "{d}/image.png"], 1, "binary", id="corpus-info-binary-file"),
    pytest.param([*TRAIN_TINY, "--units", "100000"], 2, "--units", id="train-units-beyond-range"),
    pytest.param(
        [*train_on("tiny.txt"), "--learning-rate", "nan"],
        1,
        "learning_rate must be a finite number",
        id="train-learning-rate-nan",
    ),
    pytest.param([*train_on("tiny.txt"), "--minutes", "inf"], 1, "minutes", id="train-minutes-inf"),
    pytest.param(
        [*train_on("tiny.txt"), "--strategy", "multiworker"],
        1,
        "needs TF_CONFIG",
        id="train-multiworker-without-a-cluster",
    ),
    pytest.param(
        [*train_on("tiny.txt"), "--units", "60000"], 1, "memory", id="train-model-beyond-memory"
    ),
    # where the run goes
    pytest.param([*TRAIN_TINY, "--out", "{d}/run"], 1, "--force", id="train-out-holds-a-run"),
    pytest.param(
        [*TRAIN_TINY, "--out", "{d}/other-files"], 1, "--force", id="train-out-holds-other-files"
    ),
    pytest.param(
        [*TRAIN_TINY, "--out", "{d}/notes.txt"], 1, "not a folder", id="train-out-is-a-file"
    ),
    pytest.param(
        [*TRAIN_TINY, "--out", "/dev/null/run"], 1, "/dev/null/run", id="train-out-under-a-file"
    ),
    pytest.param(
        ["train", "--out", "{d}/run", "--resume", "--units", "32"],
        1,
        "--units",
        id="train-resume-with-changed-units",
    ),
    # the run to fine-tune from
    pytest.param(
        [*train_on("tiny.txt"), "--init-from", "{d}/run", "--units", "32"],
        1,
        "--units would change its weights' shapes",
        id="train-init-from-with-other-units",
    ),
    pytest.param(
        [*train_on("tiny.txt"), "--init-from", "{d}/run", "--preset", "large"],
        1,
        "--preset would change",
        id="train-init-from-with-another-preset",
    ),
    pytest.param(
        [*train_on("tiny.txt"), "--init-from", "{d}/not-a-run"],
        1,
        "not-a-run",
        id="train-init-from-not-a-run",
    ),
    pytest.param(
        [*train_on("tiny.txt"), "--init-from", "{d}/no-checkpoints"],
        1,
        "no complete checkpoint",
        id="train-init-from-a-run-without-checkpoints",
    ),
    pytest.param(
        [*train_on("tiny.txt"), "--init-from", "{d}/weights-truncated"],
        1,
        "not a valid safetensors file",
        id="train-init-from-damaged-weights",
    ),
    # the run to read
    pytest.param(["generate", "{d}/missing"], 1, "no such run", id="generate-missing-folder"),
    pytest.param(["generate", "{d}/not-a-run"], 1, "not-a-run", id="generate-not-a-run"),
    pytest.param(
        ["evaluate", "{d}/missing", "{d}/tiny.txt"], 1, "no such run", id="evaluate-missing-folder"
    ),
    pytest.param(["info", "{d}/not-a-run"], 1, "not-a-run", id="info-not-a-run"),
    pytest.param(["info", "{d}/config-not-json"], 1, "config.json", id="info-config-not-json"),
    pytest.param(
        ["generate", "{d}/config-unknown-key"], 1, "unknown key", id="generate-config-unknown-key"
    ),
    pytest.param(
        ["evaluate", "{d}/config-nan", "{d}/tiny.txt"],
        1,
        "learning_rate must be a finite number",
        id="evaluate-config-nan",
    ),
    pytest.param(
        ["generate", "{d}/config-huge-units"], 1, "units", id="generate-config-huge-units"
    ),
    pytest.param(
        ["generate", "{d}/tokenizer-garbage"], 1, "tokenizer.json", id="generate-tokenizer-garbage"
    ),
    pytest.param(
        ["generate", "{d}/weights-truncated"],
        1,
        "not a valid safetensors file",
        id="generate-weights-truncated",
    ),
    pytest.param(
        ["evaluate", "{d}/weights-garbage", "{d}/tiny.txt"],
        1,
        "not a valid safetensors file",
        id="evaluate-weights-garbage",
    ),
    # what to generate
    pytest.param(
        ["generate", "{d}/run", "--temperature", "-1"],
        2,
        "--temperature",
        id="generate-temperature-negative",
    ),
    pytest.param(["generate", "{d}/run", "--top-p", "0"], 2, "--top-p", id="generate-top-p-0"),
    pytest.param(["generate", "{d}/run", "--top-p", "1.5"], 2, "--top-p", id="generate-top-p-1.5"),
    pytest.param(["generate", "{d}/run", "--top-k", "-2"], 2, "--top-k", id="generate-top-k-neg"),
    pytest.param(["generate", "{d}/run", "--seed", "-1"], 2, "--seed", id="generate-seed-neg"),
    pytest.param(
        ["generate", "{d}/run", "--length", "lots"],
        2,
        "--length",
        id="generate-length-not-a-number",
    ),
    pytest.param(
        ["generate", "{d}/run", "--prime", "HELLO", "--length", "0"],
        1,
        "length must be in 1..10,000,000",
        id="generate-length-0",
    ),
    pytest.param(
        ["generate", "{d}/run", "--length", "10000001"],
        1,
        "length must be in 1..10,000,000",
        id="generate-length-beyond-maximum",
    ),
    pytest.param(
        ["generate", "{d}/run", "--prime", "HELLO", "--num-samples", "0"],
        1,
        "num_samples",
        id="generate-no-samples",
    ),
    # the text to evaluate on
    pytest.param(["evaluate", "{d}/run", "{d}/image.png"], 1, "binary", id="evaluate-binary-file"),
    # commands
    pytest.param(["no-such-command"], 2, "no-such-command", id="unknown-command"),
    pytest.param(["info"], 2, "RUN_DIR", id="info-without-run-dir"),
]


@pytest.mark.parametrize("args, status, message", CASES)
def test_bad_input_gets_one_line_and_its_exit_status_and_changes_nothing(
    inputs, tmp_path, args, status, message
):
    before = snapshot(inputs)
    result = run_charlstm(*(a.format(d=inputs, tmp=tmp_path) for a in args), cwd=tmp_path)
    assert result.returncode == status, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    line = result.stderr.removesuffix("\n")
    assert line.startswith("Error: ") and "\n" not in line, result.stderr
    assert message in line
    assert snapshot(inputs) == before
    assert list(tmp_path.iterdir()) == []  # nothing created for a refused input
