"""The shared ConfigError and checks: one line naming the field, the value and what is allowed."""
import pytest

from common.validation import ConfigError, check_bool, check_choice, check_int, check_keys, check_number


@pytest.mark.parametrize("call, message", [
    (lambda: check_int("fleet.num_clients", 0, 1, 1024), "fleet.num_clients: got 0, must be in [1, 1024]"),
    (lambda: check_int("port", True, 0), "port: got True, must be an integer >= 0"),
    (lambda: check_int("seed", -1, 0), "seed: got -1, must be >= 0"),
    (lambda: check_number("lr", 0, 0.0, lo_open=True), "lr: got 0.0, must be > 0.0"),
    (lambda: check_number("f", 1.5, 0, 1, lo_open=True), "f: got 1.5, must be in (0, 1]"),
    (lambda: check_number("f", float("nan"), 0), "f: got nan, must be a finite number >= 0"),
    (lambda: check_number("f", "1", 0), "f: got '1', must be a finite number >= 0"),
    (lambda: check_number("f", float("nan")), "f: got nan, must be a finite number"),
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


# One vocabulary across the project: analog/ keeps its own copy of the checks (it is usable alone and
# imports nothing of the project; docs/design.md, Conventions), with the same names, signatures and
# messages as common's; only the exception class differs (ValueError there, ConfigError here).
def _checks(module):
    import inspect

    return {name: fn for name, fn in vars(module).items()
            if inspect.isfunction(fn) and fn.__module__ == module.__name__ and not name.startswith("_")}


def test_analog_and_common_export_one_vocabulary():
    import inspect

    import analog.validation as a
    import common.validation as v

    ours, theirs = _checks(v), _checks(a)
    assert set(ours) == {"check_int", "check_number", "check_choice", "check_bool", "check_keys"}
    assert set(ours) <= set(theirs), "every check of common/validation.py has its copy in analog/validation.py"
    for name in ours:
        assert inspect.signature(ours[name]) == inspect.signature(theirs[name]), name
    assert all(name.startswith("check_") for name in theirs), sorted(theirs)


_NAN, _INF = float("nan"), float("inf")

# (function, args, kwargs): each is called on both copies; good inputs return the same value (and
# type), bad ones raise with the identical message.
_SHARED_CALLS = [
    ("check_int", ("b", 33, 1, 32), {}), ("check_int", ("b", 32, 1, 32), {}), ("check_int", ("n", 0, 1), {}),
    ("check_int", ("n", -7), {}), ("check_int", ("k", "3"), {}), ("check_int", ("k", True, 0), {}),
    ("check_int", ("k", 2.0, 1, 32), {"note": " or 'off'"}), ("check_int", ("s", -1, 0), {"note": " or omitted"}),
    ("check_int", ("t", 11), {"hi": 10}),
    ("check_number", ("g", 1.0, 0, 1), {"lo_open": True, "hi_open": True}), ("check_number", ("g", 0.5, 0, 1), {}),
    ("check_number", ("lr", 0.0, 0), {"lo_open": True}), ("check_number", ("lr", 0, 0), {}),
    ("check_number", ("t", 2.0), {"hi": 1}), ("check_number", ("t", 3), {}), ("check_number", ("t", _NAN), {}),
    ("check_number", ("t", _INF, 0), {}), ("check_number", ("t", _INF, 0), {"finite": False}),
    ("check_number", ("t", _NAN, 0), {"finite": False}), ("check_number", ("t", "1", 0, 1), {"lo_open": True}),
    ("check_number", ("t", False), {}), ("check_number", ("t", -1, 0), {"note": " (seconds)"}),
    ("check_choice", ("mode", "x", ("latent", "fedavg")), {}), ("check_choice", ("mode", "latent", ["latent"]), {}),
    ("check_choice", ("bits", 6, (32, 16, 8, 4)), {}), ("check_choice", ("r", "up", ("nearest",)), {"quote": True}),
    ("check_bool", ("on", 1), {}), ("check_bool", ("on", "yes"), {}), ("check_bool", ("on", False), {}),
    ("check_keys", ("edge", {"bitz": 1}, {"bits", "lr"}), {}), ("check_keys", ("", {"bitz": 1}, ()), {}),
    ("check_keys", ("edge", [1], {"bits"}), {}), ("check_keys", ("edge", {"bits": 8}, {"bits"}), {}),
]


@pytest.mark.parametrize("name, args, kwargs", _SHARED_CALLS, ids=[f"{n}{a[1:]}{k or ''}" for n, a, k in _SHARED_CALLS])
def test_analog_and_common_return_and_word_alike(name, args, kwargs):
    import analog.validation as a
    import common.validation as v

    results = []
    for module, error in ((v, v.ConfigError), (a, ValueError)):
        try:
            results.append(("ok", getattr(module, name)(*args, **kwargs)))
        except error as exc:
            assert "\n" not in str(exc)
            results.append(("error", str(exc)))
    assert results[0] == results[1] and type(results[0][1]) is type(results[1][1])


def test_analog_raises_plain_value_errors():
    import analog.validation as a

    with pytest.raises(ValueError) as info:
        a.check_int("n", 0, 1)
    assert type(info.value) is ValueError
