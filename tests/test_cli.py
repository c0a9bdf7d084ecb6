import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
from click.testing import CliRunner

from charlstm.cli import cli
from charlstm.config import (
    SET_BY_THE_RUN,
    DynamicConfig,
    InferenceConfig,
    ModelConfig,
    RunConfig,
    SamplingConfig,
    TrainConfig,
    options,
    run_options,
)
from charlstm.rundir import RunDir
from tests.conftest import TINY_TRAIN_ARGS

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _command(*args) -> list[str]:
    return [sys.executable, "-m", "charlstm", *(str(a) for a in args)]


def run_charlstm(*args, cwd=None, timeout=120, env=None) -> subprocess.CompletedProcess:
    """The installed command in a process of its own, as a user runs it: what it prints is all
    there is (click's CliRunner would catch a traceback before it is printed). `env`: more
    environment variables."""
    return subprocess.run(
        _command(*args), env={**ENV, **(env or {})}, cwd=cwd, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def _foreground() -> None:
    """In the child before exec: SIGINT as a terminal's foreground job has it. A test suite
    run in the background of a shell (`pytest &`, a CI runner) inherits SIGINT ignored, and
    Python then installs no KeyboardInterrupt for it: Ctrl-C would never reach the command."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def started(*args):
    """`charlstm ARGS` running, stdout and stderr piped as bytes; killed if the test fails."""
    proc = subprocess.Popen(
        _command(*args),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_foreground,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def assert_one_error_line(result, code=1):
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_train_options_match_config_fields():
    train = cli.commands["train"]
    options = {p.name for p in train.params} - {"corpus", "out", "resume", "force", "config_file"}
    fields = {f for f in ModelConfig.__dataclass_fields__ if f != "vocab_size"}
    run_fields = set(RunConfig.__dataclass_fields__) - {"model", "train", "corpus"}
    run_fields -= set(SET_BY_THE_RUN)
    assert options == fields | set(TrainConfig.__dataclass_fields__) | run_fields


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.stdout


def test_train_generate_evaluate_info_end_to_end(tmp_path, text_file):
    out = tmp_path / "run"
    result = invoke("train", text_file, "--out", out, *TINY_TRAIN_ARGS, "--sample-chars", 30)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # progress and logs go to stderr
    assert "best validation loss" in result.stderr
    from charlstm.precision import cpu_name  # noqa: PLC0415

    here = f"CPU, {cpu_name()} ({os.cpu_count()} core"  # no GPU where the tests run
    assert f"device: {here}" in result.stderr
    sample = json.loads((out / "log.jsonl").read_text().splitlines()[0])["sample"]
    assert "\n".join("    " + line for line in sample.split("\n")) in result.stderr

    first = invoke("generate", out, "--prime", "The", "--length", 60, "--seed", 3)
    second = invoke("generate", out, "--prime", "The", "--length", 60, "--seed", 3)
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    assert first.stdout.startswith("The") and len(first.stdout) == len("The") + 60 + 1

    result = invoke("evaluate", out, text_file, "--json")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    metrics = json.loads(line)
    assert metrics["bits_per_char"] == pytest.approx(metrics["nats_per_char"] / 0.6931471805599453)
    assert metrics["chars"] > 1000 and metrics["perplexity"] > 1

    result = invoke("info", out)
    assert result.exit_code == 0 and "model: lstm 2 x 16, embedding 8" in result.stdout
    assert f"{text_file.stat().st_size:,} bytes" in result.stdout
    assert "TensorFlow 2." in result.stdout and "vocabulary:" in result.stdout
    assert f"device here: {here}" in result.stdout


def test_plot_writes_the_learning_curves_as_a_png_and_never_over_a_users_file(
    tmp_path, trained_run
):
    done = run_charlstm("plot", trained_run, "--out", tmp_path / "curves.png")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"my picture")
    refused = run_charlstm("plot", trained_run, "--out", mine)
    assert (
        refused.returncode == 1 and refused.stderr.count("\n") == 1 and "exists" in refused.stderr
    )
    assert mine.read_bytes() == b"my picture"


def test_a_config_file_sets_options_the_command_line_overrides_and_a_runs_repeats_it(
    tmp_path, text_file
):
    settings = tmp_path / "tiny.toml"
    settings.write_text(
        "embedding_dim = 8\nunits = 12\nnum_layers = 1\nbatch_size = 4\nseq_len = 16\n"
        "epochs = 1\neval_every = 20\nsample_chars = 0\ndropout = 0.1\n"
    )
    done = run_charlstm("train", text_file, "--out", tmp_path / "a", "--config", settings,
                        "--units", "10")  # fmt: skip
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["model"]["units"] == 10  # the command line wins
    assert saved["model"]["num_layers"] == 1 and saved["model"]["dropout"] == 0.1

    # a run's config.json as the settings file: the same run again, corpus included
    again = run_charlstm(
        "train", "--out", tmp_path / "b", "--config", tmp_path / "a" / "config.json"
    )
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "b" / "config.json").read_text()) == saved
    first = [json.loads(line)["val_loss"] for line in (tmp_path / "a" / "log.jsonl").open()]
    second = [json.loads(line)["val_loss"] for line in (tmp_path / "b" / "log.jsonl").open()]
    assert second == first

    bad = tmp_path / "bad.json"
    bad.write_text('{"unitz": 3}')
    refused = run_charlstm("train", text_file, "--out", tmp_path / "c", "--config", bad)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "unitz" in refused.stderr and not (tmp_path / "c").exists()


def test_shell_completion_as_the_readme_says():
    charlstm = shutil.which("charlstm")
    assert charlstm, "the charlstm command is installed"
    script = subprocess.run([charlstm], env={**ENV, "_CHARLSTM_COMPLETE": "bash_source"},
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "_charlstm_completion" in script.stdout
    words = {**ENV, "_CHARLSTM_COMPLETE": "bash_complete", "COMP_WORDS": "charlstm cor",
             "COMP_CWORD": "1"}  # fmt: skip
    done = subprocess.run([charlstm], env=words, capture_output=True, text=True, timeout=60)
    assert "plain,corpus" in done.stdout.splitlines()


def _converse(run, lines: list[str], *options) -> str:
    """`charlstm generate RUN --interactive OPTIONS` on a pseudo-terminal: type each line after
    the prompt, then Ctrl-D; returns everything the terminal showed (CR LF as LF)."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        _command("generate", run, "--interactive", *options), env=ENV,
        stdin=follower, stdout=follower, stderr=follower, preexec_fn=_foreground,
    )  # fmt: skip
    os.close(follower)
    shown = b""

    def read_until_prompt(count: int) -> None:
        nonlocal shown
        deadline = time.monotonic() + 120
        while shown.count(b"> ") < count:
            assert time.monotonic() < deadline, shown
            try:
                shown += os.read(leader, 4096)
            except OSError:
                break

    try:
        for i, line in enumerate(lines):
            read_until_prompt(i + 1)
            os.write(leader, line.encode() + b"\n")
        read_until_prompt(len(lines) + 1)
        os.write(leader, b"\x04")  # Ctrl-D at the start of a line: end of input
        assert proc.wait(timeout=60) == 0
        try:
            while chunk := os.read(leader, 4096):
                shown += chunk
        except OSError:  # the other end closed
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    return shown.decode().replace("\r\n", "\n")


def test_train_on_a_terminal_draws_a_progress_bar_with_its_eta(tmp_path, text_file):
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    # a terminal 120 columns wide: a new pseudo-terminal has none, and tqdm draws to the width
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        _command("train", text_file, "--out", tmp_path / "run", *TINY_TRAIN_ARGS), env=ENV,
        stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    shown = b""
    try:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the command ended and closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        assert proc.wait(timeout=120) == 0, shown.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    text = shown.decode()
    assert "training: 100%|" in text and "<00:00" in text  # the bar, full, with its ETA
    assert "val " in text and "nats/char" in text  # validation lines above it


@pytest.mark.slow  # a terminal session, turn by turn: half a minute
def test_interactive_generate_answers_each_line_and_keeps_state_if_asked(trained_run):
    options = ("--length", "25", "--seed", "2")
    alone = run_charlstm("generate", trained_run, "--prime", "The cat\n", *options).stdout
    fresh = _converse(trained_run, ["The cat", "The cat"], *options)
    kept = _converse(trained_run, ["The cat", "The cat"], *options, "--keep-state")
    answer = alone[len("The cat\n") :].rstrip("\n")
    # the first turn is the one-shot command's text; without --keep-state so is the second
    assert fresh.count(answer) == 2, (fresh, answer)
    assert kept.count(answer) == 1, (kept, answer)
    assert "Traceback" not in fresh + kept


def test_generate_num_samples_prints_each_sample(trained_run):
    result = invoke("generate", trained_run, "--prime", "A", "--length", 20, "--num-samples", 3)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") >= 3 and result.stderr.count("--- sample") == 3


def test_generate_stop_ends_the_text_after_the_stop_through_the_installed_command(trained_run):
    greedy = ("--prime", "The cat", "--temperature", "0", "--length", "150")
    full = run_charlstm("generate", trained_run, *greedy).stdout.removesuffix("\n")
    drawn = full[len("The cat") :]
    stop = drawn[30:33]
    end = len("The cat") + drawn.index(stop) + len(stop)
    done = run_charlstm("generate", trained_run, *greedy, "--stop", "no such text", "--stop", stop)
    assert done.returncode == 0 and done.stdout == full[:end] + "\n", done.stderr
    several = run_charlstm("generate", trained_run, *greedy, "--stop", stop, "--num-samples", "2")
    assert several.stdout == 2 * (full[:end] + "\n")
    asked = run_charlstm("generate", trained_run, "--interactive", "--stop", ".")
    assert asked.returncode == 2 and asked.stdout == "" and "no --stop" in asked.stderr


def test_train_without_corpus_uses_tinyshakespeare_and_says_so(tmp_path):
    out = tmp_path / "run"
    result = invoke("train", "--out", out, *TINY_TRAIN_ARGS, "--minutes", "0.02")
    assert result.exit_code == 0, result.output
    assert "no CORPUS given: training on tinyshakespeare" in result.stderr
    saved = json.loads((out / "config.json").read_text())
    assert saved["corpus"] == "tinyshakespeare"  # a name, so the run moves between machines
    # the preset a 0.02-minute budget picks, under the sizes given, each choice printed
    assert saved["preset"] == "tiny" and saved["train"]["warmup_steps"] == 20
    assert saved["model"]["units"] == 16
    assert "model: lstm 2 x 16, embedding 8" in result.stderr and "(preset tiny)" in result.stderr
    assert "budget: 1 epoch or 0.02 minutes" in result.stderr
    assert re.search(r"precision: (float32|bfloat16) \(auto: the CPU has ", result.stderr)


def test_ctrl_c_in_train_keeps_a_checkpoint_and_exits_130_with_one_line(tmp_path, text_file):
    out = tmp_path / "run"
    with started("train", text_file, "--out", out, *TINY_TRAIN_ARGS, "--epochs", "1000") as proc:
        deadline = time.monotonic() + 120
        while not list((out / "checkpoints").glob("step-*/manifest.json")):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    stderr = stderr.decode()
    assert proc.returncode == 130, stderr
    assert stdout == b"" and "Traceback" not in stderr
    interrupted = [line for line in stderr.splitlines() if "interrupted" in line]
    assert interrupted == stderr.splitlines()[-1:] and interrupted[0].startswith("interrupted")
    assert "--resume" in interrupted[0]
    result = run_charlstm("generate", out, "--length", 5)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == 5 + 1


def test_ctrl_c_in_generate_keeps_the_text_so_far_and_exits_130_with_one_line(trained_run):
    with started("generate", trained_run, "--length", 10_000_000) as proc:
        first = os.read(proc.stdout.fileno(), 1)  # unbuffered: the rest stays in the pipe
        proc.send_signal(signal.SIGINT)
        rest, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr == b"interrupted\n"
    assert len(first + rest) >= 256  # the first chunk of the text, streamed before the signal


def test_generate_into_a_closed_pipe_exits_141_quietly(trained_run):
    with started("generate", trained_run, "--length", 10_000_000) as proc:
        assert len(proc.stdout.read(10)) == 10
        proc.stdout.close()  # as `charlstm generate RUN | head -c 10` does
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 141, stderr
    assert stderr == b""  # no traceback, no "Exception ignored ... BrokenPipeError"


def _bad_files(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(20))
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 au lait\n".encode("latin-1") * 50)
    (tmp_path / "short.txt").write_text("too short\n", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    return {
        "missing.txt": "no such file",
        "empty.txt": "empty",
        "image.png": "binary",
        "latin1.txt": "byte offset 3",
        "short.txt": "text too short",
        "folder": "no files there",  # an empty folder: a folder is a corpus of its files
    }


def test_bad_text_files_get_one_line_and_exit_1(tmp_path):
    for name, message in _bad_files(tmp_path).items():
        out = tmp_path / f"out-{name}"
        result = invoke("train", tmp_path / name, "--out", out, *TINY_TRAIN_ARGS)
        assert_one_error_line(result)
        assert message in result.stderr, (name, result.stderr)
        assert not out.exists()  # nothing created for a refused input


def test_evaluate_refuses_bad_text_files_with_one_line(tmp_path, trained_run):
    for name, message in _bad_files(tmp_path).items():
        if name == "short.txt":
            continue
        result = invoke("evaluate", trained_run, tmp_path / name)
        assert_one_error_line(result)
        assert message in result.stderr


@pytest.mark.parametrize("command", ["generate", "info"])
def test_a_folder_that_is_not_a_run_gets_one_line(tmp_path, command):
    assert_one_error_line(invoke(command, tmp_path / "nope"))
    assert_one_error_line(invoke(command, tmp_path))


def test_train_refuses_an_out_folder_holding_a_run_and_keeps_it(tmp_path, text_file, trained_run):
    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    before = _contents(out)
    result = invoke("train", text_file, "--out", out, *TINY_TRAIN_ARGS)
    assert_one_error_line(result)
    assert "--force" in result.stderr
    assert _contents(out) == before  # byte for byte


def _contents(folder):
    """Every path under `folder` -> the SHA-256 of its bytes (None for a folder)."""
    return {
        p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        for p in folder.rglob("*")
    }


@pytest.mark.parametrize(
    "args, message",
    [
        (["--temperature", "-1"], "--temperature"),
        (["--top-p", "0"], "--top-p"),
        (["--top-p", "1.5"], "--top-p"),
        (["--top-k", "-2"], "--top-k"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_out_of_range_generate_options_are_usage_errors_in_one_line(trained_run, args, message):
    result = invoke("generate", trained_run, *args)
    assert_one_error_line(result, code=2)
    assert message in result.stderr


def test_bad_generate_length_gets_one_line(trained_run):
    result = invoke("generate", trained_run, "--length", "0")
    assert_one_error_line(result)
    assert "length" in result.stderr


@pytest.mark.parametrize(
    "command, declared",
    [
        ("train", options(RunConfig)),
        ("generate", options(SamplingConfig) + options(InferenceConfig)),
        (
            "evaluate",
            run_options("encoding", "errors") + options(DynamicConfig) + options(InferenceConfig),
        ),
        ("serve", options(InferenceConfig)),
    ],
)
def test_option_ranges_and_choices_are_the_config_declarations(command, declared):
    """One declaration per setting: the click type of each option is built from it."""
    declared = {o.name: o for o in declared}
    checked = 0
    for param in cli.commands[command].params:
        option = declared.get(param.name)
        if option is None:
            continue
        checked += 1
        if option.choices:
            assert list(param.type.choices) == list(option.choices)
        elif option.range is not None:
            r = option.range
            assert (param.type.min, param.type.max) == (r.min, r.max)
            assert (param.type.min_open, param.type.max_open) == (r.min_open, r.max_open)
        else:
            click_names = {str: "text", int: "integer", float: "float", bool: "boolean"}
            assert param.type.name == click_names[option.type]
            if option.type is bool:  # a --name/--no-name flag
                assert param.secondary_opts == [f"--no-{option.name.replace('_', '-')}"]
        assert option.help in param.help
    assert checked == len(declared)


def test_invalid_utf8_trains_with_errors_replace_and_a_warning(tmp_path, text_file):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(text_file.read_bytes() + b"caf\xe9\n" + text_file.read_bytes())
    out = tmp_path / "run"
    result = invoke("train", bad, "--out", out, *TINY_TRAIN_ARGS, "--errors", "replace")
    assert result.exit_code == 0, result.output
    assert f"byte offset {len(text_file.read_bytes()) + 3}" in result.stderr
    assert json.loads((out / "config.json").read_text())["errors"] == "replace"


def test_latin1_text_trains_with_encoding_option(tmp_path, text_file):
    latin = tmp_path / "latin.txt"
    latin.write_bytes(text_file.read_text().replace("cat", "caf\u00e9").encode("latin-1"))
    result = invoke("train", latin, "--out", tmp_path / "run", *TINY_TRAIN_ARGS)
    assert_one_error_line(result)
    assert "--encoding" in result.stderr
    result = invoke(
        "train", latin, "--out", tmp_path / "run", *TINY_TRAIN_ARGS, "--encoding", "latin-1"
    )
    assert result.exit_code == 0, result.output
    assert "\u00e9" in RunDir.open(tmp_path / "run").tokenizer.chars


def test_usage_errors_are_one_line_with_exit_2(trained_run):
    assert_one_error_line(invoke("generate", trained_run, "--length", "lots"), code=2)
    assert_one_error_line(invoke("train", "--no-such-option"), code=2)
    assert_one_error_line(invoke("no-such-command"), code=2)


def test_out_of_range_train_options_are_usage_errors_in_one_line_in_the_configs_words(
    tmp_path, text_file
):
    result = invoke("train", text_file, "--out", tmp_path / "run", "--seq-len", "0")
    assert_one_error_line(result, code=2)
    assert result.stderr.startswith("Error: Invalid value for '--seq-len': ")
    assert "seq_len must be in [1, 1048576], got 0" in result.stderr  # as TrainConfig says it
    assert not (tmp_path / "run").exists()


def test_non_finite_train_settings_get_one_line(tmp_path, text_file):
    result = invoke("train", text_file, "--out", tmp_path / "run", "--learning-rate", "nan")
    assert_one_error_line(result)
    assert "learning_rate must be a finite number" in result.stderr


def test_a_text_of_one_repeated_character_is_refused(tmp_path):
    same = tmp_path / "aaa.txt"
    same.write_text("a" * 5000, encoding="utf-8")
    result = invoke("train", same, "--out", tmp_path / "run", *TINY_TRAIN_ARGS)
    assert_one_error_line(result)
    assert "one distinct character" in result.stderr


def test_prime_with_unseen_characters_warns_in_one_line_and_generates(trained_run):
    # a process of its own: in this one, other tests' samplers leave TensorFlow's retracing notes
    result = run_charlstm("generate", trained_run, "--prime", "Zebra\u00e9!", "--length", 20)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Zebra\u00e9!")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "not in the vocabulary" in warnings[0]


def test_resume_with_a_changed_option_is_refused_and_the_run_kept(tmp_path, text_file):
    out = tmp_path / "run"
    assert invoke("train", text_file, "--out", out, *TINY_TRAIN_ARGS).exit_code == 0
    config = (out / "config.json").read_text()
    result = invoke("train", text_file, "--out", out, "--resume", "--units", "32")
    assert_one_error_line(result)
    assert "--units" in result.stderr
    assert (out / "config.json").read_text() == config


@pytest.mark.slow
def test_a_50_mb_single_line_trains_within_its_time_budget(tmp_path):
    line = tmp_path / "line.txt"
    words = ("lorem ipsum dolor sit amet consectetur adipiscing elit " * 1000).encode()
    with open(line, "wb") as f:
        for _ in range(50 * 2**20 // len(words)):
            f.write(words)
    result = invoke("train", line, "--out", tmp_path / "run", *TINY_TRAIN_ARGS, "--minutes", "0.05",
                    "--val-fraction", "0.002", "--test-fraction", "0.002")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "done (minutes)" in result.stderr


def test_generate_in_a_fresh_process_writes_no_tensorflow_log_lines(trained_run):
    # TensorFlow's C++ logging (e.g. oneDNN's notes and errors) goes to fd 2, around click
    result = subprocess.run(
        [sys.executable, "-m", "charlstm", "generate", str(trained_run), "--length", "20"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) >= 20
    assert not re.search(r"^[IWEF]\d{4} ", result.stderr, re.MULTILINE), result.stderr
