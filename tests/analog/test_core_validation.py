"""The shared analog checks: accept what is allowed, reject the rest with the one-line 'field: got X, must be ...' form."""

import math

import pytest

from dataclasses import dataclass

from analog.validation import (boolean, choice, fields_table, finite_number, in_range, instance, integer, known_keys,
                               number, positive_int, real)


def test_real_accepts_numbers_and_rejects_bool_nan_and_strings() -> None:
    assert real("w", 3) == 3.0 and isinstance(real("w", 3), float)
    assert real("w", -math.inf) == -math.inf
    for bad in (True, math.nan, "1"):
        with pytest.raises(ValueError, match=r"^w: got .*, must be a number$"):
            real("w", bad)


def test_finite_number_bounds() -> None:
    assert finite_number("eta", 0, 0.0) == 0.0
    assert finite_number("p", 1.0, 0.0, high=1.0) == 1.0
    with pytest.raises(ValueError, match=r"^eta: got 0, must be a finite number > 0.0$"):
        finite_number("eta", 0, 0.0, strict=True)
    with pytest.raises(ValueError, match=r"^p: got 1.5, must be a finite number in \[0.0, 1.0\]$"):
        finite_number("p", 1.5, 0.0, high=1.0)
    for bad in (math.inf, math.nan, False, None):
        with pytest.raises(ValueError, match=r"^x: got "):
            finite_number("x", bad, -math.inf)


def test_positive_int() -> None:
    assert positive_int("n", 1) == 1
    for bad in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match=rf"^n: got {bad!r}, must be an integer >= 1$"):
            positive_int("n", bad)


def test_choice_lists_allowed_names_sorted() -> None:
    assert choice("kind", "b", {"b": 1, "a": 2}) == "b"
    with pytest.raises(ValueError, match=r"^kind: got 'c', must be one of a, b$"):
        choice("kind", "c", ["b", "a"])
    with pytest.raises(ValueError, match=r"^kind: got None, must be one of a, b$"):
        choice("kind", None, ["b", "a"])


def test_real_finite_and_note() -> None:
    with pytest.raises(ValueError, match=r"^w: got inf, must be a finite number$"):
        real("w", math.inf, finite=True)
    with pytest.raises(ValueError, match=r"^w: got 'x', must be a number >= 0$"):
        real("w", "x", what="a number >= 0")


def test_number_may_allow_infinity_and_appends_note() -> None:
    assert number("lr", math.inf, 0, finite=False) == math.inf
    for bad in (-1, math.nan, True):
        with pytest.raises(ValueError, match=rf"^lr: got {bad!r}, must be a number >= 0$"):
            number("lr", bad, 0, finite=False)
    with pytest.raises(ValueError, match=r"^t: got -1, must be a finite number >= 0 \(seconds\)$"):
        finite_number("t", -1, 0, note=" (seconds)")


def test_in_range_states_only_the_bounds() -> None:
    assert in_range("b", 32, 1, high=32) == 32
    with pytest.raises(ValueError, match=r"^b: got 33, must be in \[1, 32\] \(or 'off'\)$"):
        in_range("b", 33, 1, high=32, note=" (or 'off')")
    with pytest.raises(ValueError, match=r"^g: got 1.0, must be in \(0, 1\)$"):
        in_range("g", 1.0, 0, strict=True, high=1, high_strict=True)
    with pytest.raises(ValueError, match=r"^n: got 10001, must be <= 10000$"):
        in_range("n", 10001, high=10000)
    assert in_range("g", 0.5, 0, strict=True, high=1, high_strict=True) == 0.5


def test_integer_bounds_and_wording() -> None:
    assert integer("seed", 0, 0) == 0 and integer("k", -5) == -5
    with pytest.raises(ValueError, match=r"^seed: got -1, must be an integer >= 0 or omitted$"):
        integer("seed", -1, 0, note=" or omitted")
    with pytest.raises(ValueError, match=r"^p: got 4097, must be an integer in \[1, 4096\]$"):
        integer("p", 4097, 1, high=4096)
    with pytest.raises(ValueError, match=r"^b: got 2.0, must be an integer number of bits$"):
        integer("b", 2.0, note=" number of bits")
    with pytest.raises(ValueError, match=r"^k: got False, must be an integer$"):
        integer("k", False)


def test_boolean_and_instance() -> None:
    assert boolean("on", False) is False
    for bad in (0, 1, "true", None):
        with pytest.raises(ValueError, match=rf"^on: got {bad!r}, must be true or false$"):
            boolean("on", bad)
    assert instance("x", 3, int, "an int") == 3
    with pytest.raises(ValueError, match=r"^x: got str, must be an int$"):
        instance("x", "3", int, "an int")


def test_choice_can_keep_order_and_quote() -> None:
    with pytest.raises(ValueError, match=r"^mode: got 'x', must be one of 'stochastic', 'nearest'$"):
        choice("mode", "x", ("stochastic", "nearest"), sort=False, quote=True)


@dataclass
class _Point:
    x: int = 0
    y: int = 0


def test_known_keys_names_the_first_unknown_and_the_allowed() -> None:
    known_keys({"x": 1}, ("x", "y"), "Point")
    with pytest.raises(ValueError, match=r"^p\.b: unknown key for Point; allowed: x, y$"):
        known_keys({"x": 1, "c": 2, "b": 3}, ("y", "x"), "Point", prefix="p.")
    with pytest.raises(ValueError, match=r"^a: unknown key for Empty; allowed: none$"):
        known_keys({"a": 1}, (), "Empty", none="none")


def test_fields_table_checks_type_and_keys_of_a_dataclass_table() -> None:
    assert fields_table(_Point, {"y": 2}) == {"y": 2}
    with pytest.raises(ValueError, match=r"^_Point: got list, must be a table$"):
        fields_table(_Point, [1])
    with pytest.raises(ValueError, match=r"^pt\.: got int, must be a table/dict$"):
        fields_table(_Point, 3, prefix="pt.", what="a table/dict")
    with pytest.raises(ValueError, match=r"^pt\.z: unknown key for _Point; allowed: x, y$"):
        fields_table(_Point, {"z": 1}, prefix="pt.")
