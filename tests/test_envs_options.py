"""Bad task options: one clear ``ValueError`` when the task is built, naming the option, its value and the rule.

Every task goes through the same checks (``neuroalrnn.envs.options``), so
the message has one shape: ``"<option> must be <rule>, got <value>"``.
"""

from __future__ import annotations

import math
import re

import pytest

from neuroalrnn.envs import list_tasks, make
from neuroalrnn.envs.options import check_integer, check_number, check_timing
from neuroalrnn.envs.registry import NEUROGYM_PREFIX

OUR_TASKS = [name for name in list_tasks() if not name.startswith(NEUROGYM_PREFIX)]
BAD_DT = ["abc", 0, -50, math.nan, math.inf, True, None]


def assert_one_line_error(name: str, options: dict, option: str, rule: str = ".*") -> None:
    pattern = rf"^{re.escape(option)} must {rule}, got {re.escape(repr(options[option.split('[')[0]]))}"
    with pytest.raises(ValueError, match=pattern) as error:
        make(name, **options)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("dt", BAD_DT, ids=repr)
@pytest.mark.parametrize("name", OUR_TASKS)
def test_bad_dt_is_named_for_every_task(name, dt):
    assert_one_line_error(name, {"dt": dt}, "dt", r"be a (finite|whole) number.* > 0")


@pytest.mark.parametrize(
    ("name", "options", "option"),
    [
        ("stimulus-selection", {"sigma": "abc"}, "sigma"),
        ("stimulus-selection", {"sigma": -0.1}, "sigma"),
        ("stimulus-selection", {"sigma": math.nan}, "sigma"),
        ("stimulus-selection", {"cohs": 0.5}, "cohs"),
        ("stimulus-selection", {"cohs": ()}, "cohs"),
        ("stimulus-selection", {"cohs": "0.5"}, "cohs"),
        ("yang19", {"sigma": "abc"}, "sigma"),
        ("yang19", {"sigma": -1}, "sigma"),
        ("yang19", {"dim_ring": 16.0}, "dim_ring"),
        ("yang19", {"dim_ring": 7}, "dim_ring"),
        ("yang19-faithful", {"dim_ring": "32"}, "dim_ring"),
        ("adding", {"seq_len": "30"}, "seq_len"),
        ("adding", {"decision_steps": 0}, "decision_steps"),
        ("adding", {"tolerance": math.inf}, "tolerance"),
        ("copy-memory", {"seq_len": 2.0}, "seq_len"),
        ("copy-memory", {"n_symbols": 1}, "n_symbols"),
        ("copy-memory", {"delay": -1}, "delay"),
        ("flipflop", {"n_bits": "3"}, "n_bits"),
        ("flipflop", {"seq_len": 0}, "seq_len"),
        ("flipflop", {"pulse_prob": 2}, "pulse_prob"),
        ("flipflop", {"tolerance": 0}, "tolerance"),
        ("sequential-digits", {"decision_steps": None}, "decision_steps"),
    ],
)
def test_bad_numeric_options_are_named(name, options, option):
    assert_one_line_error(name, options, option)


def test_bad_coherence_in_the_list_is_named():
    with pytest.raises(ValueError, match=r"^cohs must be a finite number > 0, got 0.0$"):
        make("stimulus-selection", cohs=(0.1, 0.0))


def test_bad_task_weight_is_named():
    with pytest.raises(ValueError, match=r"^weights\['go'\] must be a finite number >= 0, got 'heavy'$"):
        make("yang19", tasks=["go", "dm1"], weights={"go": "heavy"})


# -------------------------------------------------------------------- timing


@pytest.mark.parametrize(
    ("timing", "message"),
    [
        ({"delay": -5}, r"^timing\['delay'\] must be a finite number >= 0, got -5$"),
        ({"delay": "abc"}, r"^timing\['delay'\] must be a duration in ms, .* got 'abc'$"),
        ({"delay": ("choice", [])}, r"^timing\['delay'\] must be a non-empty list of durations"),
        ({"delay": ("choice", [300, "x"])}, r"^timing\['delay'\] must be a finite number >= 0, got 'x'$"),
        ({"delay": [300, -1]}, r"^timing\['delay'\] must be a finite number >= 0, got -1$"),
        ({"delay": ("uniform", (600, 300))}, r"^timing\['delay'\] must be \('uniform', \(low, high\)\)"),
        ({"delay": ("uniform", 300)}, r"^timing\['delay'\] must be a non-empty list of durations"),
        ({"delay": ("truncated_exponential", (0,))}, r"^timing\['delay'\] must be \('truncated_exponential'"),
        ({"delay": ("gamma", (2, 3))}, r"^timing\['delay'\] has unknown distribution 'gamma'; valid: \["),
        ({"decision": 20}, r"^timing\['decision'\] must always last at least one step of dt = 50 ms, got 20"),
        ({"decision": ("uniform", (0, 500))}, r"^timing\['decision'\] must always last at least one step"),
        ({"response": 100}, r"^timing names unknown epochs \['response'\]; valid epochs: \['fixation', "),
        ([("delay", 300)], r"^timing must be a dict epoch -> duration in ms"),
    ],
)
def test_bad_timing_is_named(timing, message):
    with pytest.raises(ValueError, match=message):
        make("stimulus-selection", timing=timing)


def test_a_dt_coarser_than_the_decision_epoch_is_an_error_not_an_empty_epoch():
    with pytest.raises(ValueError, match=r"^timing\['decision'\] must always last at least one step of dt = 300"):
        make("stimulus-selection", dt=300)
    with pytest.raises(ValueError, match=r"^task 'dm1': timing\['stimulus'\] must always last at least one step"):
        make("yang19", dt=300)


@pytest.mark.parametrize(
    "spec",
    [
        400,
        400.0,
        [300, 600],
        ("choice", [300, 450]),
        ("uniform", (100, 500)),
        ("truncated_exponential", (300,)),
        ("truncated_exponential", (300, 100, 900)),
        ("constant", 250),
        ("until", 2000),
        lambda: 300,
    ],
    ids=repr,
)
def test_every_neurogym_timing_spec_is_accepted_and_draws(spec):
    env = make("stimulus-selection", timing={"delay": spec})
    env.reset(seed=0)
    assert env.end_ind["delay"] >= env.start_ind["delay"]


def test_timing_returns_the_defaults_updated():
    defaults = {"a": 100, "b": ("choice", [200, 300])}
    merged = check_timing({"a": 50}, defaults, dt=10, one_step_at_least=("b",))
    assert merged == {"a": 50, "b": ("choice", [200, 300])}
    assert defaults["a"] == 100


# -------------------------------------------------------------- the checks


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: check_integer("n", 2.0, 1), r"^n must be an integer >= 1, got 2.0$"),
        (lambda: check_integer("n", False, 0), r"^n must be an integer >= 0, got False$"),
        (lambda: check_number("x", 1.5, 0, 1), r"^x must be a finite number in \[0, 1\], got 1.5$"),
        (lambda: check_number("x", 0, 0, 1, low_open=True), r"^x must be a finite number in \(0, 1\], got 0$"),
        (lambda: check_number("x", -math.inf), r"^x must be a finite number >= -inf, got -inf$"),
    ],
)
def test_checks_say_the_rule(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_checks_return_the_value_in_its_python_type():
    assert check_integer("n", 3, 1) == 3 and type(check_integer("n", 3, 1)) is int
    assert type(check_number("x", 1, 0)) is float
