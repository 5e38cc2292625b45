"""Declarative config schemas: key -> type, range, default.

A table's schema is a dict of :class:`Key`; :func:`check_table` checks a
given table against it (unknown keys, missing required keys, type, range,
choices) and raises :class:`~distnqs.errors.ConfigError` with one line that
names the key and the value, e.g.::

    [hamiltonian] G must be a number, got 'abc'

Types: ``"int"``, ``"number"`` (int or float, finite), ``"bool"``, ``"str"``,
``"list[int]"``, ``"list[number]"``; a tuple of types accepts any of them.
Used by the run config (:mod:`distnqs.config`) and by the generative CLIs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from distnqs.errors import ConfigError

REQUIRED = object()  # default of a key that must be given
UNSET = object()  # default of an optional key that is not filled in (its builder has a default)

_TYPE_NAMES = {
    "int": "an integer",
    "number": "a number",
    "bool": "true or false",
    "str": "a string",
    "list[int]": "a list of integers",
    "list[number]": "a list of numbers",
}


@dataclass(frozen=True)
class Key:
    """One config key: its type(s), allowed range or choices, and default.

    ``min``/``max`` bound numbers (and every element of a list); ``min_open``
    makes the lower bound exclusive (``> min``). ``choices`` lists the allowed
    strings; ``nonempty`` refuses an empty list.
    """

    type: str | tuple[str, ...]
    default: Any = UNSET
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    choices: tuple | None = None
    nonempty: bool = False


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _matches(kind: str, v) -> bool:
    if kind == "int":
        return _is_int(v)
    if kind == "number":
        return _is_number(v)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str)
    if kind == "list[int]":
        return isinstance(v, list) and all(_is_int(x) for x in v)
    if kind == "list[number]":
        return isinstance(v, list) and all(_is_number(x) for x in v)
    raise ValueError(f"unknown schema type {kind!r}")


def _range_words(key: Key) -> str:
    lo, hi = key.min, key.max
    if lo is not None and hi is not None:
        return f"between {lo} and {hi}" if not key.min_open else f"> {lo} and <= {hi}"
    if lo is not None:
        return f"{'>' if key.min_open else '>='} {lo}"
    return f"<= {hi}"


def _type_words(key: Key) -> str:
    return " or ".join(_TYPE_NAMES[k] for k in (key.type if isinstance(key.type, tuple) else (key.type,)))


def _low_words(key: Key) -> str | None:
    """'a positive integer' and the like, for a value below a lower bound of 0 or 1."""
    kinds = key.type if isinstance(key.type, tuple) else (key.type,)
    if kinds == ("int",) and not key.min_open and key.min in (0, 1):
        return "a positive integer" if key.min == 1 else "a non-negative integer"
    if kinds == ("number",) and key.min == 0:
        return "a positive number" if key.min_open else "a non-negative number"
    return None


def check_value(where: str, name: str, key: Key, value):
    """``value`` if it fits ``key`` (ints given for numbers stay ints), else ConfigError."""
    label = f"{where} {name}" if where else name
    kinds = key.type if isinstance(key.type, tuple) else (key.type,)
    if not any(_matches(k, value) for k in kinds):
        raise ConfigError(f"{label} must be {_type_words(key)}, got {value!r}")
    if key.choices is not None and value not in key.choices:
        raise ConfigError(f"unknown {where.strip('[]')} {name} {value!r}; choose one of: {', '.join(map(str, key.choices))}")
    items = value if isinstance(value, list) else [value] if (_is_number(value) and not isinstance(value, bool)) else []
    if key.nonempty and isinstance(value, list) and not value:
        raise ConfigError(f"{label} must not be empty")
    for x in items:
        too_low = key.min is not None and (x <= key.min if key.min_open else x < key.min)
        too_high = key.max is not None and x > key.max
        if too_low or too_high:
            what = (too_low and _low_words(key)) or _range_words(key)
            raise ConfigError(f"{label} must be {what}, got {value!r}")
    return value


def check_table(where: str, schema: dict[str, Key], given: dict, fill: bool = True, unknown: str | None = None) -> dict:
    """Check ``given`` against ``schema``; returns a new dict (defaults filled when ``fill``).

    ``where`` names the table in messages (``"[run]"``); ``unknown`` overrides
    the message prefix for unknown keys.
    """
    if not isinstance(given, dict):
        raise ConfigError(f"{where} must be a table")
    extra = sorted(set(given) - set(schema))
    if extra:
        prefix = unknown or f"{where} has no option"
        raise ConfigError(f"{prefix} {extra[0]!r} (options: {', '.join(sorted(schema))})")
    out = {}
    for name, key in schema.items():
        if name in given:
            out[name] = check_value(where, name, key, given[name])
        elif key.default is REQUIRED:
            raise ConfigError(f"{where} needs {name}")
        elif fill and key.default is not UNSET:
            out[name] = key.default
    return out


def defaults(schema: dict[str, Key]) -> dict:
    """The filled-in defaults of a schema (keys with a concrete default)."""
    return {name: key.default for name, key in schema.items() if key.default not in (REQUIRED, UNSET)}
