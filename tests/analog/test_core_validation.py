"""The shared analog checks: accept what is allowed, reject the rest with the one-line 'field: got X, must be ...' form.

(tests/common/test_validation.py holds these to common/validation.py's copy: same names, signatures, messages.)"""

import math
from dataclasses import dataclass

import pytest

from analog.validation import check_bool, check_choice, check_fields, check_instance, check_int, check_keys, check_number


def test_check_number_accepts_numbers_and_rejects_bool_nan_and_strings() -> None:
    assert check_number("w", 3, finite=False) == 3.0 and isinstance(check_number("w", 3), float)
    assert check_number("w", -math.inf, finite=False) == -math.inf
    for bad in (True, math.nan, "1"):
        with pytest.raises(ValueError, match=r"^w: got .*, must be a number$"):
            check_number("w", bad, finite=False)
    with pytest.raises(ValueError, match=r"^w: got inf, must be a finite number$"):
        check_number("w", math.inf)


def test_check_number_bounds() -> None:
    assert check_number("eta", 0, 0.0) == 0.0
    assert check_number("p", 1.0, 0.0, 1.0) == 1.0
    with pytest.raises(ValueError, match=r"^eta: got 0.0, must be > 0.0$"):
        check_number("eta", 0, 0.0, lo_open=True)
    with pytest.raises(ValueError, match=r"^p: got 1.5, must be in \[0.0, 1.0\]$"):
        check_number("p", 1.5, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"^p: got 'x', must be a finite number in \[0.0, 1.0\]$"):
        check_number("p", "x", 0.0, 1.0)
    with pytest.raises(ValueError, match=r"^g: got 1.0, must be in \(0, 1\)$"):
        check_number("g", 1.0, 0, 1, lo_open=True, hi_open=True)
    with pytest.raises(ValueError, match=r"^n: got 10001.0, must be <= 10000$"):
        check_number("n", 10001, hi=10000)
    for bad in (math.inf, math.nan, False, None):
        with pytest.raises(ValueError, match=r"^x: got "):
            check_number("x", bad)


def test_check_number_may_allow_infinity_and_appends_note() -> None:
    assert check_number("lr", math.inf, 0, finite=False) == math.inf
    with pytest.raises(ValueError, match=r"^lr: got -1.0, must be >= 0$"):
        check_number("lr", -1, 0, finite=False)
    for bad in (math.nan, True):
        with pytest.raises(ValueError, match=rf"^lr: got {bad!r}, must be a number >= 0$"):
            check_number("lr", bad, 0, finite=False)
    with pytest.raises(ValueError, match=r"^t: got -1.0, must be >= 0 \(seconds\)$"):
        check_number("t", -1, 0, note=" (seconds)")


def test_check_int_bounds_and_wording() -> None:
    assert check_int("seed", 0, 0) == 0 and check_int("k", -5) == -5 and check_int("n", 1, 1) == 1
    with pytest.raises(ValueError, match=r"^seed: got -1, must be >= 0 or omitted$"):
        check_int("seed", -1, 0, note=" or omitted")
    with pytest.raises(ValueError, match=r"^p: got 4097, must be in \[1, 4096\]$"):
        check_int("p", 4097, 1, 4096)
    with pytest.raises(ValueError, match=r"^b: got 2.0, must be an integer in \[1, 32\] or 'off'$"):
        check_int("b", 2.0, 1, 32, note=" or 'off'")
    for bad in (False, "3", 2.0):
        with pytest.raises(ValueError, match=rf"^k: got {bad!r}, must be an integer$"):
            check_int("k", bad)
    for bad in (0, -3):
        with pytest.raises(ValueError, match=rf"^n: got {bad}, must be >= 1$"):
            check_int("n", bad, 1)


def test_check_choice_keeps_order_and_may_quote() -> None:
    assert check_choice("kind", "b", sorted({"b": 1, "a": 2})) == "b"
    with pytest.raises(ValueError, match=r"^kind: got None, must be one of b, a$"):
        check_choice("kind", None, ["b", "a"])
    with pytest.raises(ValueError, match=r"^mode: got 'x', must be one of 'stochastic', 'nearest'$"):
        check_choice("mode", "x", ("stochastic", "nearest"), quote=True)


def test_check_bool_and_instance() -> None:
    assert check_bool("on", False) is False
    for bad in (0, 1, "true", None):
        with pytest.raises(ValueError, match=rf"^on: got {bad!r}, must be true or false$"):
            check_bool("on", bad)
    assert check_instance("x", 3, int, "an int") == 3
    with pytest.raises(ValueError, match=r"^x: got str, must be an int$"):
        check_instance("x", "3", int, "an int")


@dataclass
class _Point:
    x: int = 0
    y: int = 0


def test_check_keys_names_the_first_unknown_and_the_allowed() -> None:
    assert check_keys("p", {"x": 1}, ("x", "y")) == {"x": 1}
    with pytest.raises(ValueError, match=r"^p\.b: unknown key; allowed keys are x, y$"):
        check_keys("p", {"x": 1, "c": 2, "b": 3}, ("y", "x"))
    with pytest.raises(ValueError, match=r"^a: unknown key; allowed keys are none$"):
        check_keys("", {"a": 1}, ())


def test_check_fields_checks_type_and_keys_of_a_dataclass_table() -> None:
    assert check_fields("", {"y": 2}, _Point) == {"y": 2}
    with pytest.raises(ValueError, match=r"^_Point: got list, must be a table$"):
        check_fields("", [1], _Point)
    with pytest.raises(ValueError, match=r"^pt: got int, must be a table$"):
        check_fields("pt", 3, _Point)
    with pytest.raises(ValueError, match=r"^pt\.z: unknown key; allowed keys are x, y$"):
        check_fields("pt", {"z": 1}, _Point)
