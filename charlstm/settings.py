"""Declaring an option once: its help, range or choices, and everything derived from that.

A config dataclass (`charlstm.config`) declares each option as a field made by `setting`; from
that one declaration come the checks (`check_settings`, run by every instance of a `Settings`
subclass), the command-line options (`options`, which `charlstm.cli` turns into click options)
and the reading of JSON (`from_dict`: unknown keys, wrong types and values out of range are
refused, so a config file can never name code to run).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field

from charlstm.errors import CharlstmError


@dataclass(frozen=True)
class Range:
    """The values a number may take: min and max (None: unbounded), each closed or open."""

    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.min is not None and (value <= self.min if self.min_open else value < self.min):
            return False
        return self.max is None or (value < self.max if self.max_open else value <= self.max)

    def __str__(self) -> str:
        if self.max is None:
            return f"> {self.min}" if self.min_open else f"at least {self.min}"
        if self.min is None:
            return f"< {self.max}" if self.max_open else f"at most {self.max}"
        return (
            f"in {'(' if self.min_open else '['}{self.min}, {self.max}"
            f"{')' if self.max_open else ']'}"
        )


def setting(default, help: str, *, choices: tuple[str, ...] = (), **bounds):
    """A field that is also a command-line option, with its help and its allowed values.

    bounds: Range's min, max, min_open, max_open. A field declared with plain `field` (or a
    bare default) is not an option: vocab_size and corpus are set by the run itself.
    """
    allowed = Range(**bounds) if bounds else None
    return field(default=default, metadata={"help": help, "range": allowed, "choices": choices})


def check_settings(config) -> None:
    """Refuse values outside a dataclass' declared ranges and choices, and non-finite floats.

    Raises:
        CharlstmError: naming the field, what it must be and the value given.
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is None or dataclasses.is_dataclass(value):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise CharlstmError(f"{f.name} must be a finite number, got {value}")
        check_value(f.name, value, f.metadata.get("range"), f.metadata.get("choices", ()))


def check_value(name: str, value, allowed: Range | None, choices: tuple[str, ...] = ()) -> None:
    """Refuse one value outside its range or choices, in the words of every such refusal (the
    command line's too: `charlstm.cli` words its range errors with it).

    Raises:
        CharlstmError: naming the setting, what it must be and the value given.
    """
    if allowed is not None and value not in allowed:
        raise CharlstmError(f"{name} must be {allowed}, got {value}")
    if choices and value not in choices:
        raise CharlstmError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


class Settings:
    """Base of the config dataclasses: every instance is checked against its declarations."""

    def __post_init__(self) -> None:
        check_settings(self)


class Option(typing.NamedTuple):
    """A config field that is a command-line option, as `setting` declared it."""

    name: str
    type: type  # int, float or str
    default: object
    help: str
    range: Range | None
    choices: tuple[str, ...]

    def check(self, value) -> None:
        """Refuse a value outside this option's range or choices (`check_value`)."""
        check_value(self.name, value, self.range, self.choices)


def options(cls: type, nested: bool = True) -> list[Option]:
    """The command-line options of config dataclass `cls` (and, if nested, of its sections)."""
    hints = typing.get_type_hints(cls)
    found = [
        Option(f.name, field_type(hints[f.name]), f.default, f.metadata["help"],
               f.metadata["range"], f.metadata["choices"])
        for f in dataclasses.fields(cls)
        if "help" in f.metadata
    ]  # fmt: skip
    if nested:
        for section in option_sections(cls).values():
            found += options(section)
    return found


def option_sections(cls: type) -> dict[str, type]:
    """The fields of `cls` that are config dataclasses themselves: name -> dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if _is_section(hints[f.name])}


def _is_section(hint) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def from_dict(cls: type, data: object, where: str = ""):
    """Build dataclass `cls` from plain JSON data (a config file, a request's body, an API
    call's keywords), refusing anything the dataclass does not say: unknown keys, wrong types
    (ints are accepted for floats), out-of-range values.

    where: what holds the data (a file's name), put before every message; "" for none, when
    the fields' own names say enough.

    Raises:
        CharlstmError: one line naming `where` and the field.
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(data, dict):
        raise CharlstmError(f"{prefix}expected a JSON object for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise CharlstmError(f"{prefix}unknown key(s) {', '.join(unknown)} in {cls.__name__}")
    values = {}
    for name, value in data.items():
        named = f"{prefix}{cls.__name__}.{name}" if where else name
        values[name] = coerce(hints[name], value, named)
    try:
        return cls(**values)
    except CharlstmError as err:  # a range check, which cannot name the file
        if not where:
            raise
        raise CharlstmError(f"{where}: {err}") from err


def field_type(hint) -> type:
    """The plain type of a field's hint: `float | None` -> float."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    return hint


def coerce(hint, value, where: str):
    """Check one JSON value against a field's type hint; ints are accepted for floats.
    where: the value's name in the message."""
    if _is_section(hint):
        return from_dict(hint, value, where)
    if value is None and type(None) in typing.get_args(hint):
        return None
    hint = field_type(hint)
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    else:  # a field type this reader does not know is a bug, not bad input
        raise TypeError(f"unsupported config field type {hint!r}")
    if not ok:
        raise CharlstmError(f"{where} must be {hint.__name__}, got {json.dumps(value)}")
    return value
