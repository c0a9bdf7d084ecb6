"""RunConfig <-> JSON: a round trip, and refusal of unknown keys, wrong types and bad values."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charlstm.config import (
    PRESETS,
    ModelConfig,
    Range,
    RunConfig,
    TrainConfig,
    choose_preset,
    options,
)
from charlstm.errors import CharlstmError

SOURCE = "runs/a/config.json"


def parse(data) -> RunConfig:
    return RunConfig.from_json(json.dumps(data), source=SOURCE)


def refused(*parts: str):
    """pytest.raises for a CharlstmError naming the file, then each part, in order."""
    return pytest.raises(
        CharlstmError, match="^" + re.escape(SOURCE) + ".*" + ".*".join(map(re.escape, parts))
    )


def test_default_config_round_trips_through_json():
    assert RunConfig.from_json(RunConfig().to_json()) == RunConfig()


def test_every_field_round_trips_through_json():
    config = RunConfig(
        model=ModelConfig(vocab_size=67, embedding_dim=5, units=7, num_layers=3, dropout=0.25),
        train=TrainConfig(batch_size=2, seq_len=3, learning_rate=1e-3, minutes=1.5, seed=9),
        corpus="data/input.txt",
    )
    text = config.to_json()
    assert RunConfig.from_json(text) == config
    assert json.loads(text)["model"]["units"] == 7 and json.loads(text)["train"]["minutes"] == 1.5


@settings(deadline=None)
@given(
    model=st.builds(
        ModelConfig,
        vocab_size=st.integers(0, 10_000),
        units=st.integers(1, 4096),
        num_layers=st.integers(1, 16),
        dropout=st.floats(0.0, 1.0, exclude_max=True),
    ),
    train=st.builds(
        TrainConfig,
        seq_len=st.integers(1, 10_000),
        learning_rate=st.floats(1e-9, 10.0),
        minutes=st.none() | st.floats(0.01, 1e6),
        test_fraction=st.floats(0.0, 0.5, exclude_max=True),
        seed=st.integers(0, 2**32),
    ),
    corpus=st.text(),
)
def test_any_valid_config_round_trips_through_json(model, train, corpus):
    config = RunConfig(model=model, train=train, corpus=corpus)
    assert RunConfig.from_json(config.to_json()) == config


def test_missing_keys_take_the_defaults():
    assert parse({"train": {"seq_len": 7}}) == RunConfig(train=TrainConfig(seq_len=7))


def test_unknown_top_level_key_is_refused():
    with refused("unknown key(s) optimizer in RunConfig"):
        parse({"optimizer": "sgd"})


def test_unknown_nested_key_is_refused():
    with refused("RunConfig.model", "unknown key(s) colour in ModelConfig"):
        parse({"model": {"units": 8, "colour": "red"}})


@pytest.mark.parametrize(
    ("section", "field", "value", "type_name"),
    [
        ("train", "seq_len", "100", "int"),  # a string for an int
        ("train", "seq_len", True, "int"),  # bool is an int subclass in Python
        ("train", "batch_size", 64.0, "int"),
        ("train", "minutes", "5", "float"),
        ("model", "dropout", False, "float"),
        ("model", "units", None, "int"),
        ("model", "num_layers", [2], "int"),
    ],
)
def test_wrong_types_are_refused_naming_the_field(section, field, value, type_name):
    owner = {"model": "ModelConfig", "train": "TrainConfig"}[section]
    with refused(f"{owner}.{field} must be {type_name}, got {json.dumps(value)}"):
        parse({section: {field: value}})


def test_string_field_refuses_a_number():
    with refused("RunConfig.corpus must be str, got 3"):
        parse({"corpus": 3})


def test_nested_section_must_be_an_object():
    with refused("RunConfig.model", "expected a JSON object for ModelConfig"):
        parse({"model": [64, 256]})


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("train", "seq_len", 0),
        ("train", "batch_size", -1),
        ("train", "val_fraction", 0.5),
        ("train", "minutes", 0),
        ("model", "dropout", 1.0),
        ("model", "num_layers", 17),
    ],
)
def test_out_of_range_values_are_refused_naming_the_field(section, field, value):
    with refused(f"RunConfig.{section}", f"{field} must be", f"got {value}"):
        parse({section: {field: value}})


@pytest.mark.parametrize("text", ["", "{model: 1}", "{'model': {}}", '{"model": {}', "garbage"])
def test_text_that_is_not_json_is_refused(text):
    with refused("is not valid JSON"):
        RunConfig.from_json(text, source=SOURCE)


@pytest.mark.parametrize("text", ["[]", "null", "42", '"model"'])
def test_json_that_is_not_an_object_is_refused(text):
    with refused("expected a JSON object for RunConfig"):
        RunConfig.from_json(text, source=SOURCE)


def test_ints_are_accepted_for_float_fields():
    config = parse({"model": {"dropout": 0}, "train": {"learning_rate": 1, "minutes": 2}})
    assert config.model.dropout == 0.0 and type(config.model.dropout) is float
    assert config.train.learning_rate == 1.0 and type(config.train.learning_rate) is float
    assert config.train.minutes == 2.0 and type(config.train.minutes) is float


def test_null_is_accepted_only_where_the_field_is_optional():
    assert parse({"train": {"minutes": None}}).train.minutes is None
    with refused("TrainConfig.learning_rate must be float, got null"):
        parse({"train": {"learning_rate": None}})


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(CharlstmError, match="learning_rate must be a finite number"):
        RunConfig.from_json(f'{{"train": {{"learning_rate": {value}}}}}', source=SOURCE)


def test_flat_options_build_the_nested_config_and_read_back():
    config = RunConfig.from_options("a.txt", units=32, seq_len=7, errors="replace", minutes=None)
    assert config == RunConfig(
        model=ModelConfig(units=32),
        train=TrainConfig(seq_len=7, weight_decay=0.2, lr_floor=0.0),
        corpus="a.txt", errors="replace", preset="small",
    )  # fmt: skip
    values = config.option_values()
    assert values["units"] == 32 and values["seq_len"] == 7 and values["errors"] == "replace"
    assert set(values) == {o.name for o in options(RunConfig)}
    assert RunConfig.from_options("a.txt", **values) == config


def test_presets_follow_the_budget_and_the_corpus_and_given_options_win():
    assert [choose_preset(m) for m in (1, 3, 9, 60, 600)] == [
        "tiny", "small", "medium", "large", "large",
    ]  # fmt: skip
    assert [choose_preset(None, n) for n in (100_000, 10**6, None)] == ["tiny", "small", "small"]
    # float32 products on a CPU: small runs on the compiled kernel, and keeps more budgets
    assert [choose_preset(m, float32_cpu=True) for m in (1, 3, 9, 10, 11, 15, 60)] == [
        "tiny", "small", "small", "small", "medium", "medium", "large",
    ]  # fmt: skip
    assert choose_preset(None, 10**6, float32_cpu=True) == "small"
    config = RunConfig.from_options("a.txt", corpus_chars=10**8, minutes=60, dropout=0.5)
    assert (config.preset, config.model.units, config.model.dropout) == ("large", 512, 0.5)
    medium = RunConfig.from_options("a.txt", minutes=9)
    assert (medium.preset, medium.train.weight_decay, medium.model.dropout) == ("medium", 0.2, 0.2)
    # large: medium's recipe, four members side by side; medium and large read small's windows
    # of 50, in 32 streams
    assert (config.model.members, medium.model.members) == (4, 1)
    assert dataclasses.replace(config.model, members=1, dropout=0.2) == medium.model
    assert config.train == dataclasses.replace(medium.train, minutes=60)
    assert (medium.model.units, medium.train.seq_len, medium.train.batch_size) == (512, 50, 32)
    assert RunConfig.from_options("a.txt", minutes=60, members=2).model.members == 2
    # small's, medium's and large's learning rates fall to 0 at the end of the budget; tiny's
    # to 0.1 x the peak, the dataclass default
    small_run, tiny_run = (RunConfig.from_options("a.txt", minutes=m) for m in (4, 1))
    floors = [c.train.lr_floor for c in (small_run, medium, config, tiny_run)]
    assert floors == [0.0, 0.0, 0.0, 0.1] and TrainConfig().lr_floor == 0.1
    assert RunConfig.from_options("a.txt", minutes=9, weight_decay=0.0).train.weight_decay == 0.0
    assert config.train.minutes == 60 and config.train.epochs is None  # the minutes decide
    assert RunConfig.from_options("a.txt", minutes=60, epochs=3).train.epochs == 3
    with pytest.raises(CharlstmError, match="needs minutes"):
        TrainConfig(epochs=None)
    assert RunConfig.from_options("a.txt", preset="tiny", minutes=60).model.units == 128
    small = RunConfig.from_options("", preset="small")
    # the defaults are small's but for its AdamW decay and the end of its schedule: a config
    # built in code keeps plain Adam and a cosine to 0.1 x the peak
    assert (small.model, small.train) == (
        ModelConfig(), TrainConfig(weight_decay=0.2, lr_floor=0.0)
    )  # fmt: skip
    names = {o.name for o in options(RunConfig)}
    for name, values in PRESETS.items():
        assert set(values) <= names
        assert RunConfig.from_options("", preset=name).option_values() | values == (
            RunConfig.from_options("", preset=name).option_values()
        )


def test_the_description_names_every_choice_of_the_recipe():
    config = RunConfig.from_options(
        "", minutes=4, weight_decay=0.1, recurrent_dropout=0.25, lr_floor=0.1
    )  # fmt: skip
    text = "\n".join(config.describe())
    for shown in ("2 x 256", "embedding 64", "dropout 0.2 per window", "recurrent 0.25",
                  "preset small", "batch 64 x seq_len 50", "AdamW (decay 0.1)", "lr 0.015",
                  "50 warm-up", "cosine to 0.1 x it", "clip 5", "budget: 4 minutes,"):  # fmt: skip
        assert shown in text, shown
    assert "cosine to 0, clip" in "\n".join(RunConfig.from_options("", minutes=9).describe())


def test_every_option_has_help_and_a_valid_default():
    for option in options(RunConfig):
        assert option.help and option.type in (int, float, str, bool)
        if option.range is not None and option.default is not None:
            assert option.default in option.range
        if option.choices:
            assert option.default in option.choices


@pytest.mark.parametrize(
    ("allowed", "inside", "outside", "text"),
    [
        (Range(min=1), [1, 10**9], [0, -1], "at least 1"),
        (Range(min=0, min_open=True), [1e-9], [0, -1], "> 0"),
        (Range(min=0, max=1, max_open=True), [0, 0.5], [1, -0.1], "in [0, 1)"),
        (Range(min=0, max=0.5, min_open=True, max_open=True), [0.25], [0, 0.5], "in (0, 0.5)"),
    ],
)
def test_range_bounds_and_description(allowed, inside, outside, text):
    assert all(v in allowed for v in inside)
    assert not any(v in allowed for v in outside)
    assert str(allowed) == text
