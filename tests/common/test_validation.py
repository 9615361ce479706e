"""The shared ConfigError and checks: one line naming the field, the value and what is allowed."""
import pytest

from common.validation import ConfigError, check_bool, check_choice, check_int, check_keys, check_number


@pytest.mark.parametrize("call, message", [
    (lambda: check_int("fleet.num_clients", 0, 1, 1024), "fleet.num_clients: got 0, must be in [1, 1024]"),
    (lambda: check_int("port", True, 0), "port: got True, must be an integer"),
    (lambda: check_int("seed", -1, 0), "seed: got -1, must be >= 0"),
    (lambda: check_number("lr", 0, 0.0, lo_open=True), "lr: got 0.0, must be > 0.0"),
    (lambda: check_number("f", 1.5, 0, 1, lo_open=True), "f: got 1.5, must be in (0, 1]"),
    (lambda: check_number("f", float("nan"), 0), "f: got nan, must be a finite number"),
    (lambda: check_number("f", "1", 0), "f: got '1', must be a finite number"),
    (lambda: check_choice("mode", "x", ("a", "b")), "mode: got 'x', must be one of a, b"),
    (lambda: check_bool("digital", "yes"), "digital: got 'yes', must be true or false"),
    (lambda: check_keys("edge", {"bitz": 1}, {"bits"}), "edge.bitz: unknown key; allowed keys are bits"),
    (lambda: check_keys("", {"bitz": 1}, {"bits"}), "bitz: unknown key; allowed keys are bits"),
    (lambda: check_keys("edge", [1], {"bits"}), "edge: got list, must be a table"),
])
def test_errors_are_one_line_naming_field_value_and_range(call, message):
    with pytest.raises(ConfigError) as info:
        call()
    assert str(info.value) == message and isinstance(info.value, ValueError)


def test_valid_values_pass_through():
    assert check_int("n", 3, 1, 3) == 3
    assert check_number("x", 1, 0, 1) == 1.0 and isinstance(check_number("x", 1, 0), float)
    assert check_choice("m", "a", ("a",)) == "a" and check_bool("b", False) is False
    assert check_keys("s", {"a": 1}, {"a", "b"}) == {"a": 1}


def test_every_package_raises_the_same_config_error():
    import edge_client.config
    import fleet.config
    import server.config

    assert edge_client.config.ConfigError is server.config.ConfigError is fleet.config.ConfigError is ConfigError


# One message format across the project: analog/ keeps its own checks (it is usable alone and
# imports nothing of the project; docs/design.md, Conventions), worded as common's are.
@pytest.mark.parametrize("common_call, analog_call", [
    (lambda v: v.check_int("b", 33, 1, 32), lambda a: a.in_range("b", 33, 1, high=32)),
    (lambda v: v.check_int("n", 0, 1), lambda a: a.in_range("n", 0, 1)),
    (lambda v: v.check_number("g", 1.0, 0, 1, lo_open=True, hi_open=True),
     lambda a: a.in_range("g", 1.0, 0, strict=True, high=1, high_strict=True)),
    (lambda v: v.check_number("lr", 0.0, 0, lo_open=True), lambda a: a.in_range("lr", 0.0, 0, strict=True)),
    (lambda v: v.check_number("t", 2.0, hi=1), lambda a: a.in_range("t", 2.0, high=1)),
    (lambda v: v.check_choice("mode", "x", ("latent", "fedavg")),
     lambda a: a.choice("mode", "x", ("latent", "fedavg"), sort=False)),
    (lambda v: v.check_bool("on", 1), lambda a: a.boolean("on", 1)),
    (lambda v: v.check_int("k", "3"), lambda a: a.integer("k", "3")),
])
def test_analog_and_common_word_a_rejected_value_alike(common_call, analog_call):
    import analog.validation as a
    import common.validation as v

    with pytest.raises(v.ConfigError) as ours:
        common_call(v)
    with pytest.raises(ValueError) as theirs:
        analog_call(a)
    assert str(ours.value) == str(theirs.value)
