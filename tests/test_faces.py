"""The faces agree with the front door: every option of every command takes its default from
one declaration, the API takes the same names, and the same bad input is refused in the same
words by the API (a CharlstmError) and the command line (its one "Error: ..." line)."""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import charlstm
from charlstm import api
from charlstm.cli import cli
from charlstm.config import (
    GENERATE_LENGTH,
    DynamicConfig,
    InferenceConfig,
    RunConfig,
    SamplingConfig,
    options,
)
from charlstm.errors import CharlstmError
from tests.test_api import TINY
from tests.test_cli import run_charlstm


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


COMMANDS = dict(_commands(cli))
# the config dataclasses whose fields are options, and their declarations
DECLARED = [o for cls in (RunConfig, SamplingConfig, DynamicConfig, InferenceConfig)
            for o in options(cls)]  # fmt: skip
FIELD_NAMES = {o.name for o in DECLARED}

# the API's functions behind each command; a command's options are their parameters
API = {
    ("train",): [api.plan_training, api.train],
    ("generate",): [api.load, api.LanguageModel.generate, api.LanguageModel.conversation],
    ("evaluate",): [api.evaluate],
    ("info",): [api.info],
    ("plot",): [api.plot],
    ("export",): [api.export],
    ("serve",): [api.load],
    ("corpus", "list"): [api.corpus_list],
    ("corpus", "info"): [api.corpus_info],
    ("corpus", "fetch"): [api.corpus_fetch],
    **{("corpus", "make", name): [api.make_text, make] for name, make in api.SOURCES.items()},
}
# what the API takes as keywords (**options, **sampling), checked by the tests below
KEYWORDS = {("train",): options(RunConfig), ("generate",): options(SamplingConfig)}
# how a command presents (--json, the terminal loop) and where it listens: not the API's
PRESENTATION = {"as_json", "interactive", "host", "port"}


def test_every_command_has_its_api():
    assert set(COMMANDS) == set(API)


def _source_settings(name: str):
    return inspect.signature(api.SOURCES[name]).parameters


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_option_defaults_to_its_one_declaration(path):
    """An option of a config field is made from the field's declaration and leaves its default
    to the dataclass; any other option bears no field's name, but a text source's settings,
    whose defaults are the source function's, and --length, GENERATE_LENGTH."""
    for param in COMMANDS[path].params:
        if not isinstance(param, click.Option):
            continue
        declared = getattr(param, "declared", None)
        if declared is not None:
            assert declared in DECLARED, (path, param.name)
            assert param.default is None, (path, param.name)
            shown = "none" if declared.default is None else declared.default
            if declared.type is bool:
                shown = "on" if declared.default else "off"
            assert param.help.endswith(f"[default: {shown}]"), (path, param.help)
        elif path[:2] == ("corpus", "make") and param.name in _source_settings(path[2]):
            assert param.default == _source_settings(path[2])[param.name].default
        elif param.name == "length":
            assert param.default == GENERATE_LENGTH
        else:
            assert param.name not in FIELD_NAMES, (path, param.name)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_the_api_takes_every_option_by_its_name(path):
    functions = API[path]
    taken = {name for f in functions for name in inspect.signature(f).parameters}
    taken |= {o.name for o in KEYWORDS.get(path, [])}
    names = {p.name for p in COMMANDS[path].params} - PRESENTATION - {"help"}
    assert names <= taken, names - taken


def test_the_keywords_the_api_takes_are_the_declared_options(text_file, tmp_path):
    every = {o.name: o.default for o in options(RunConfig)}
    plan = api.plan_training(text_file, tmp_path / "run", **every)
    assert plan.config.model.units == every["units"]
    sampling = {o.name: o.default for o in options(SamplingConfig)}
    assert api.sampling_config(**sampling) == SamplingConfig()
    with pytest.raises(CharlstmError, match="unknown option"):
        api.plan_training(text_file, tmp_path / "run", unit=3)
    with pytest.raises(CharlstmError, match="unknown key"):
        api.sampling_config(heat=3)


def test_the_faces_import_only_the_front_door_config_and_errors():
    """cli.py and serve.py import from charlstm only api, config and errors; the one more is
    the serve command starting the other face."""
    allowed = {"charlstm.api", "charlstm.config", "charlstm.errors"}
    for face, more in (("cli.py", {"charlstm.serve"}), ("serve.py", set())):
        tree = ast.parse((Path(charlstm.__file__).parent / face).read_text(encoding="utf-8"))
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "charlstm":
                found |= {f"charlstm.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("charlstm"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("charlstm")}
        assert found <= allowed | more, (face, found - allowed - more)


def test_the_inference_precision_default_is_one_for_every_face():
    default = InferenceConfig().precision
    assert default == "float32"
    for path in (("generate",), ("evaluate",), ("serve",)):
        (param,) = [p for p in COMMANDS[path].params if p.name == "precision"]
        assert param.declared == options(InferenceConfig)[0]
    for f in (api.load, charlstm.load, api.evaluate):
        assert inspect.signature(f).parameters["precision"].default is None  # InferenceConfig's
    for f in (api.LanguageModel.generate, api.LanguageModel.stream):
        assert inspect.signature(f).parameters["length"].default == GENERATE_LENGTH


# the same bad input through both faces: (id, the command's arguments, the API call, the
# command's exit status); {run} is a trained run, {text} a text file, {tmp} an empty folder
BAD = [
    (
        "resume-with-changed-units",
        ["train", "--out", "{run}", "--resume", "--units", "32"],
        lambda d: api.train(out=d["run"], resume=True, units=32),
        1,
    ),
    (
        "seq-len-0",
        ["train", "{text}", "--out", "{tmp}/out", "--seq-len", "0"],
        lambda d: api.train(d["text"], d["tmp"] / "out", seq_len=0),
        2,
    ),
    (
        "temperature-negative",
        ["generate", "{run}", "--temperature", "-1"],
        lambda d: d["lm"].generate("", 10, temperature=-1),
        2,
    ),
    (
        "precision-float16",
        ["evaluate", "{run}", "{text}", "--precision", "float16"],
        lambda d: api.evaluate(d["run"], d["text"], precision="float16"),
        2,
    ),
    (
        "length-0",
        ["generate", "{run}", "--length", "0"],
        lambda d: d["lm"].generate("", 0),
        1,
    ),
    ("info-not-a-run", ["info", "{tmp}"], lambda d: api.info(d["tmp"]), 1),
    ("generate-missing-run", ["generate", "{tmp}/nope"], lambda d: api.load(d["tmp"] / "nope"), 1),
    (
        "settings-file-with-an-unknown-name",
        ["train", "{text}", "--out", "{tmp}/out", "--config", "{bad}"],
        lambda d: api.train(d["text"], d["tmp"] / "out", config_file=d["bad"]),
        1,
    ),
]


@pytest.fixture(scope="module")
def lm(trained_run):
    return api.load(trained_run)


@pytest.mark.parametrize("args, call, status", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_the_same_bad_input_gets_the_same_words_from_the_api_and_the_command_line(
    trained_run, text_file, lm, tmp_path, args, call, status
):
    bad = tmp_path / "bad.json"
    bad.write_text('{"unitz": 3}')
    empty = tmp_path / "empty"
    empty.mkdir()
    given = {"run": trained_run, "text": text_file, "tmp": empty, "lm": lm, "bad": bad}
    with pytest.raises(CharlstmError) as refused:
        call(given)
    words = str(refused.value)
    args = [a.format(run=trained_run, text=text_file, tmp=empty, bad=bad) for a in args]
    done = run_charlstm(*args, cwd=empty)
    assert done.returncode == status and done.stdout == "", done.stderr
    if status == 1:
        assert done.stderr == f"Error: {words}\n"
    else:  # a usage error: click names the option (the case's last but one argument)
        assert done.stderr.startswith(f"Error: Invalid value for '{args[-2]}': {words} (see ")
        assert done.stderr.count("\n") == 1
    assert list(empty.iterdir()) == []  # nothing created for a refused input


def test_an_unknown_option_is_refused_by_both_naming_it(tmp_path, text_file):
    """click words the command line's usage errors; the API names the keyword."""
    with pytest.raises(CharlstmError, match="unknown option\\(s\\): unit$"):
        api.train(text_file, tmp_path / "run", unit=3)
    done = run_charlstm("train", text_file, "--out", tmp_path / "run", "--unit", "3")
    assert done.returncode == 2 and re.match(r"Error: No such option\W+--unit\b", done.stderr)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("face", ["api", "cli"])
def test_a_resume_with_minutes_trains_that_many_minutes_more(tmp_path, text_file, face):
    """`charlstm.train(out=..., resume=True, minutes=m)` as `charlstm train --out ... --resume
    --minutes m`: the run's budget becomes the time spent so far plus m, and it trains on."""
    out = tmp_path / "run"
    budget = {k: v for k, v in TINY.items() if k != "epochs"}  # minutes only
    first = api.plan_training(text_file, out, **budget, minutes=0.02).run()
    assert str(first.stopped_by) == "minutes"
    spent = api.info(out).last.elapsed_s
    if face == "api":
        lm = api.train(out=out, resume=True, minutes=0.02)
        step = max(lm.info.checkpoints)
    else:
        args = ["train", "--out", str(out), "--resume", "--minutes", "0.02"]
        done = CliRunner().invoke(cli, args)
        assert done.exit_code == 0, done.output
        assert "done (minutes)" in done.stderr
        step = max(api.info(out).checkpoints)
    saved = json.loads((out / "config.json").read_text())["train"]
    assert saved["minutes"] == pytest.approx(spent / 60 + 0.02, abs=0.01)
    assert step > first.step


def test_a_resume_that_would_change_the_run_leaves_it_as_it_was(trained_run):
    config = (trained_run / "config.json").read_text()
    with pytest.raises(CharlstmError, match="--units, --seq-len differ"):
        api.plan_training(out=trained_run, resume=True, units=32, seq_len=8)
    assert (trained_run / "config.json").read_text() == config
