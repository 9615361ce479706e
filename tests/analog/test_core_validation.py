"""The shared analog checks: accept what is allowed, reject the rest with the one-line 'field: got X, must be ...' form."""

import math

import pytest

from analog.validation import choice, finite_number, positive_int, real


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
    with pytest.raises(ValueError, match=r"^p: got 1.5, must be a finite number >= 0.0 and <= 1.0$"):
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
