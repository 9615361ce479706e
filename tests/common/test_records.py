"""The contract records: plain form in field order, flattened and omitted fields, checks on the way in."""
from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass

import pytest

from common.errors import AnalogEdgeError, ContractError
from common.records import Record, flatten, omit_none


@dataclass(frozen=True)
class Inner(Record):
    WHAT = "inner"
    rows: int
    share: float


@dataclass(frozen=True)
class Outer(Record):
    WHAT = "outer"
    name: str
    inner: Inner = flatten()
    codes: tuple[str, ...] = ()
    per_class: dict[int, float] | None = omit_none()
    nested: Inner | None = None


def test_plain_form_flattens_omits_and_reads_back():
    rec = Outer("a", Inner(3, 0.5), ("x", "y"), {1: 0.25}, Inner(1, 2.0))
    plain = rec.to_dict()
    assert list(plain) == ["name", "rows", "share", "codes", "per_class", "nested"]
    assert plain["codes"] == ["x", "y"] and plain["nested"] == {"rows": 1, "share": 2.0}
    assert Outer.from_json(rec.to_json()) == rec                       # JSON's "1" key is an int again
    assert "per_class" not in Outer("b", Inner(0, 1.0)).to_dict()
    with pytest.raises(FrozenInstanceError):
        rec.name = "c"  # type: ignore[misc]


@pytest.mark.parametrize("plain, message", [
    ({"name": "a", "share": 1.0}, "outer.rows: missing"),
    ({"name": "a", "rows": "3", "share": 1.0}, "outer.rows: got '3', must be an integer"),
    ({"name": "a", "rows": True, "share": 1.0}, "outer.rows: got True, must be an integer"),
    ({"name": 1, "rows": 3, "share": 1.0}, "outer.name: got 1, must be a string"),
    ({"name": "a", "rows": 3, "share": 1.0, "codes": ["x", 2]}, "outer.codes[1]: got 2, must be a string"),
    ({"name": "a", "rows": 3, "share": 1.0, "per_class": {"one": 1.0}}, "outer.per_class: key 'one', must be an integer"),
    ({"name": "a", "rows": 3, "share": 1.0, "nested": {"rows": 1}}, "outer.nested.share: missing"),
    ([1, 2], "outer: got list, must be a JSON object"),
])
def test_a_garbled_record_fails_with_one_line_naming_the_field(plain, message):
    with pytest.raises(ContractError) as err:
        Outer.from_dict(plain)
    assert str(err.value) == message
    assert isinstance(err.value, AnalogEdgeError) and isinstance(err.value, ValueError)


def test_text_that_is_not_json_is_named():
    with pytest.raises(ContractError, match=r"^outer: not JSON"):
        Outer.from_json("{oops")
