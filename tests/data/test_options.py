"""parse_options: conversions, the accepted values of each type, and its messages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

import pytest

from jmds_pipeline.data.options import check_at_least, check_fraction, parse_options


@dataclass(frozen=True)
class Opts:
    flag: bool = False
    count: int = 1
    rate: float = 0.5
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = (1,)
    anything: tuple[Any, ...] = ()
    maybe: int | None = 0
    legacy: Optional[int] = 0  # noqa: UP045 -- typing.Union, not types.UnionType
    either: Union[float, str] = 1.0  # noqa: UP007
    raw: Any = None

    def __post_init__(self) -> None:
        if self.count > 100:
            raise ValueError(f"option 'count' = {self.count}; accepted: at most 100")


@dataclass(frozen=True)
class Empty:
    pass


def _error(options: Any, cls: type = Opts) -> str:
    with pytest.raises(ValueError) as error:
        parse_options(cls, options, owner="ds")
    return str(error.value)


def test_no_options_give_the_defaults() -> None:
    assert parse_options(Opts, None, owner="ds") == Opts()
    assert parse_options(Opts, {}, owner="ds") == Opts()


def test_values_are_checked_and_converted_losslessly() -> None:
    got = parse_options(
        Opts,
        {
            "flag": True,
            "count": 3,
            "rate": 2,
            "name": Path("a/b"),
            "mode": "b",
            "sizes": [4, 5],
            "anything": ["q", 1],
            "maybe": None,
            "legacy": None,
            "either": "text",
            "raw": {"k": 1},
        },
        owner="ds",
    )
    assert got == Opts(
        flag=True,
        count=3,
        rate=2.0,
        name="a/b",
        mode="b",
        sizes=(4, 5),
        anything=("q", 1),
        maybe=None,
        legacy=None,
        either="text",
        raw={"k": 1},
    )
    assert type(got.rate) is float and type(got.name) is str and type(got.sizes) is tuple
    assert parse_options(Opts, {"maybe": 7, "legacy": 8}, owner="ds").legacy == 8
    number = parse_options(Opts, {"either": 3}, owner="ds").either
    assert number == 3.0 and type(number) is float  # the first type that accepts it


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"flag": 1}, "ds: option 'flag' = 1; expected true or false"),
        ({"count": True}, "ds: option 'count' = True; expected an integer"),
        ({"count": 2.0}, "ds: option 'count' = 2.0; expected an integer"),
        ({"rate": True}, "ds: option 'rate' = True; expected a number"),
        ({"rate": "1"}, "ds: option 'rate' = '1'; expected a number"),
        ({"name": 3}, "ds: option 'name' = 3; expected a string"),
        ({"mode": "c"}, "ds: option 'mode' = 'c'; accepted values: ['a', 'b']"),
        ({"sizes": "12"}, "ds: option 'sizes' = '12'; expected a list"),
        ({"sizes": [1, "x"]}, "ds: option 'sizes' = 'x'; expected an integer"),
        ({"maybe": "x"}, "ds: option 'maybe' = 'x'; expected an integer"),
        ({"legacy": 1.5}, "ds: option 'legacy' = 1.5; expected an integer"),
        ({"either": [1]}, "ds: option 'either' = [1]; expected a number"),  # the first error
        ({"count": 101}, "ds: option 'count' = 101; accepted: at most 100"),  # __post_init__
    ],
)
def test_wrong_values_are_refused_naming_owner_key_value_and_what_is_accepted(
    options, message
) -> None:
    assert _error(options) == message


def test_unknown_keys_and_non_mappings_are_refused() -> None:
    assert _error({"zz": 1, "aa": 2}) == (
        "ds: unknown option 'aa'; accepted options: ['flag', 'count', 'rate', 'name', "
        "'mode', 'sizes', 'anything', 'maybe', 'legacy', 'either', 'raw']"
    )
    assert _error({"x": 1}, Empty) == "ds: unknown option 'x'; accepted options: none"
    assert _error([("count", 1)]) == "ds: options must be a mapping, got list"


def test_fractions_and_minimums() -> None:
    check_fraction(0.0, "f")
    check_fraction(0.999, "f")
    check_fraction(0.5, "f", allow_zero=False)
    cases = [
        (1.0, True, "[0, 1)"),
        (-0.1, True, "[0, 1)"),
        (0.0, False, "(0, 1)"),
        (1.0, False, "(0, 1)"),
    ]
    for value, allow_zero, bound in cases:
        message = f"option 'f' = {value!r}; accepted: a number in {bound}"
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            check_fraction(value, "f", allow_zero=allow_zero)
    check_at_least(3, 3, "n")
    with pytest.raises(ValueError, match=r"^option 'n' = 2; accepted: an integer >= 3$"):
        check_at_least(2, 3, "n")
