"""Task registry: names users type, mapped to environment classes.

Besides our own tasks, ``neurogym:<EnvId>`` builds any NeuroGym 2.3.1
environment that can be trained supervised (a discrete action space and a
ground truth per step, with a ``decision`` epoch for decision accuracy).
"""

from __future__ import annotations

from collections.abc import Callable

from .adding import AddingProblem
from .copy_memory import CopyMemory
from .flipflop import FlipFlop
from .sequential_digits import SequentialDigits
from .stimulus_selection import StimulusSelection
from .yang19 import yang19_suite

NEUROGYM_PREFIX = "neurogym:"

_TASKS: dict[str, tuple[Callable, str]] = {
    "stimulus-selection": (
        StimulusSelection,
        "context-dependent selection of motion or colour evidence, with delay and go cue "
        "(Mante et al. 2013)",
    ),
    "yang19": (
        yang19_suite,
        "the 20 tasks of Yang et al. 2019 as one suite with rule inputs (NeuroGym defaults: dt 100 ms, "
        "16-unit rings); subset with --task-option tasks='[\"go\",\"dm1\"]'",
    ),
    "yang19-faithful": (
        lambda **options: yang19_suite(preset="faithful", **options),
        "the Yang et al. 2019 suite in Yang's layout (dt 20 ms, 32-unit rings: 85 inputs, 33 outputs)",
    ),
    "adding": (AddingProblem, "adding problem: report the sum of two marked values (regression)"),
    "copy-memory": (CopyMemory, "copy memory: reproduce a symbol sequence after a delay"),
    "flipflop": (FlipFlop, "n-bit flip-flop: hold the sign of each channel's last pulse (Sussillo & Barak 2013)"),
    "sequential-digits": (
        SequentialDigits, "8x8 digits read row by row (or pixel by pixel), classified at the end",
    ),
}


def list_tasks() -> dict[str, str]:
    """Task names and a one-line description of each."""
    tasks = {name: description for name, (_, description) in _TASKS.items()}
    tasks[f"{NEUROGYM_PREFIX}<EnvId>"] = (
        "any supervised NeuroGym environment, e.g. neurogym:PerceptualDecisionMaking-v0"
    )
    return tasks


# Options that turn a task into its held-out version (unseen items), where it has one.
_HELD_OUT: dict[str, dict] = {"sequential-digits": {"split": "test"}}


def held_out_options(name: str) -> dict:
    """Constructor options of ``name``'s held-out version (e.g. the test images); {} if all trials are fresh."""
    return dict(_HELD_OUT.get(name, {}))


def make(name: str, **kwargs):
    """Build the task ``name`` with keyword arguments passed to its constructor.

    Raises ``ValueError`` listing the valid names when ``name`` is unknown, and
    for a NeuroGym environment that cannot be trained supervised.
    """
    if name.startswith(NEUROGYM_PREFIX):
        return _make_neurogym(name.removeprefix(NEUROGYM_PREFIX), kwargs)
    if name not in _TASKS:
        raise ValueError(
            f"unknown task {name!r}; valid tasks: {', '.join(sorted(_TASKS))}, or {NEUROGYM_PREFIX}<EnvId>"
        )
    factory, _ = _TASKS[name]
    try:
        return factory(**kwargs)
    except TypeError as error:
        raise ValueError(f"bad options for task {name!r}: {error}") from None


def _make_neurogym(env_id: str, kwargs: dict):
    """Instantiate the NeuroGym class itself (no gymnasium wrappers: we sample whole trials)."""
    import gymnasium
    from gymnasium.spaces import Discrete
    from neurogym.envs.registration import all_envs

    valid = all_envs()
    if env_id not in valid:
        raise ValueError(f"unknown NeuroGym environment {env_id!r}; valid: {', '.join(valid)}")
    creator = gymnasium.envs.registration.load_env_creator(gymnasium.envs.registry[env_id].entry_point)
    try:
        env = creator(**{**gymnasium.envs.registry[env_id].kwargs, **kwargs})
    except TypeError as error:
        raise ValueError(f"bad options for {NEUROGYM_PREFIX}{env_id}: {error}") from None
    if not isinstance(env.action_space, Discrete):
        raise ValueError(f"{NEUROGYM_PREFIX}{env_id} has a continuous action space; only class targets train so far")
    if not hasattr(env, "new_trial"):
        raise ValueError(f"{NEUROGYM_PREFIX}{env_id} is not a trial-based environment")
    env.new_trial()
    if not getattr(env, "_gt_built", False):
        raise ValueError(f"{NEUROGYM_PREFIX}{env_id} defines no ground truth, so it cannot be trained supervised")
    if "decision" not in env.start_ind:
        raise ValueError(
            f"{NEUROGYM_PREFIX}{env_id} has no 'decision' epoch (epochs: {list(env.start_ind)}); "
            "decision accuracy needs one"
        )
    return env
