"""Typed option groups for datasets and models (OpenLTH style).

Each dataset or model declares a small frozen dataclass of its options with defaults;
:func:`parse_options` turns the user's plain mapping (from YAML or ``--params``) into it,
rejecting unknown keys and wrongly typed values with one message that names the key, the
value and what is accepted. The model registry uses the same parser.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def parse_options(cls: type[T], options: Mapping[str, Any] | None, *, owner: str) -> T:
    """Build the options dataclass ``cls`` from ``options``; ``owner`` names who owns them."""
    if options is not None and not isinstance(options, Mapping):
        raise ValueError(f"{owner}: options must be a mapping, got {type(options).__name__}")
    given = dict(options or {})
    accepted = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ValueError(
            f"{owner}: unknown option {unknown[0]!r}; accepted options: {accepted or 'none'}"
        )
    hints = typing.get_type_hints(cls)
    try:
        # Types are checked here, ranges and cross-field rules by the dataclass's
        # __post_init__; either way the message comes out prefixed with ``owner``.
        values = {
            key: _coerce(value, hints[key], f"option {key!r}") for key, value in given.items()
        }
        return cls(**values)
    except ValueError as error:
        raise ValueError(f"{owner}: {error}") from None


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """``value`` checked against (and where lossless, converted to) ``annotation``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [arg for arg in args if arg is not type(None)]
        errors = []
        for arg in non_none:
            try:
                return _coerce(value, arg, where)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(errors[0])
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{where} = {value!r}; accepted values: {list(args)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} = {value!r}; expected a list")
        item_type = args[0] if args else Any
        return tuple(_coerce(item, item_type, where) for item in value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} = {value!r}; expected true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} = {value!r}; expected an integer")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} = {value!r}; expected a number")
        return float(value)
    if annotation is str:
        if not isinstance(value, (str, Path)):
            raise ValueError(f"{where} = {value!r}; expected a string")
        return str(value)
    return value


def check_fraction(value: float, name: str, *, allow_zero: bool = True) -> None:
    """Raise unless ``0 <= value < 1`` (or ``0 < value < 1`` when zero is not allowed)."""
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value < 1):
        bound = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(f"option {name!r} = {value!r}; accepted: a number in {bound}")


def check_at_least(value: int, minimum: int, name: str) -> None:
    """Raise unless ``value >= minimum``."""
    if value < minimum:
        raise ValueError(f"option {name!r} = {value!r}; accepted: an integer >= {minimum}")
