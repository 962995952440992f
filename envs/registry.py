"""Task registry: names users type, mapped to environment classes, and registered with Gymnasium.

Besides our own tasks, ``neurogym:<EnvId>`` builds any NeuroGym 2.3.1
environment that can be trained supervised (a discrete action space and a
ground truth per step, with a ``decision`` epoch for decision accuracy).

Every task of our own is also a Gymnasium environment,
``gymnasium.make("neuroalrnn/<Name>-v0")`` (:func:`gymnasium_id` gives the
id; importing :mod:`neuroalrnn.envs` registers them, or
``gymnasium.make("neuroalrnn.envs:neuroalrnn/<Name>-v0")`` imports it first).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import gymnasium

from .adding import AddingProblem
from .copy_memory import CopyMemory
from .flipflop import FlipFlop
from .sequential_digits import SequentialDigits
from .stimulus_selection import StimulusSelection
from .yang.suite import yang19_faithful_suite
from .yang19 import YANG19_TASK_DESCRIPTIONS, yang19_suite

__all__ = [
    "GYMNASIUM_NAMESPACE", "NEUROGYM_PREFIX", "describe_subtasks", "gymnasium_id", "held_out_options",
    "list_tasks", "make", "register_gymnasium_envs",
]  # fmt: skip

NEUROGYM_PREFIX = "neurogym:"
GYMNASIUM_NAMESPACE = "neuroalrnn"


@dataclass(frozen=True)
class _Task:
    """One entry of the registry.

    ``factory(**options, **user options)`` builds the env; ``gymnasium_name``
    is its Gymnasium name (``neuroalrnn/<gymnasium_name>-v0``); ``held_out``:
    the options that turn it into its held-out version (unseen items);
    ``subtasks``: sub-task name -> one-line description, for suites.
    """

    factory: Callable
    description: str
    gymnasium_name: str
    options: Mapping = field(default_factory=dict)
    held_out: Mapping = field(default_factory=dict)
    subtasks: Mapping[str, str] = field(default_factory=dict)


_TASKS: dict[str, _Task] = {
    "stimulus-selection": _Task(
        StimulusSelection,
        "context-dependent selection of motion or colour evidence, with delay and go cue (Mante et al. 2013)",
        "StimulusSelection",
    ),
    "yang19": _Task(
        yang19_suite,
        "the 20 tasks of Yang et al. 2019 as one suite with rule inputs (NeuroGym defaults: dt 100 ms, "
        "16-unit rings); subset with --task-option tasks='[\"go\",\"dm1\"]'",
        "Yang19",
        subtasks=YANG19_TASK_DESCRIPTIONS,
    ),
    "yang19-faithful": _Task(
        yang19_faithful_suite,
        "the 20 tasks of Yang et al. 2019 re-implemented from his code: his timing, stimuli, input noise, "
        "least-squares targets and read-out (dt 20 ms, 32-unit rings: 85 inputs, 33 outputs)",
        "Yang19Faithful",
        held_out={"trials_per_draw": 1},  # test trials: every trial its own task and timing (Yang's test batches)
        subtasks=YANG19_TASK_DESCRIPTIONS,
    ),
    "adding": _Task(AddingProblem, "adding problem: report the sum of two marked values (regression)", "Adding"),
    "copy-memory": _Task(CopyMemory, "copy memory: reproduce a symbol sequence after a delay", "CopyMemory"),
    "flipflop": _Task(
        FlipFlop, "n-bit flip-flop: hold the sign of each channel's last pulse (Sussillo & Barak 2013)", "FlipFlop"
    ),
    "sequential-digits": _Task(
        SequentialDigits,
        "8x8 digits read row by row (or pixel by pixel), classified at the end",
        "SequentialDigits",
        held_out={"split": "test"},
    ),
}


def list_tasks() -> dict[str, str]:
    """Task names and a one-line description of each."""
    tasks = {name: task.description for name, task in _TASKS.items()}
    tasks[f"{NEUROGYM_PREFIX}<EnvId>"] = (
        "any supervised NeuroGym environment, e.g. neurogym:PerceptualDecisionMaking-v0"
    )
    return tasks


def _task(name: str) -> _Task:
    """The registry entry of ``name``; ``ValueError`` listing the valid names if there is none."""
    if name not in _TASKS:
        raise ValueError(
            f"unknown task {name!r}; valid tasks: {', '.join(sorted(_TASKS))}, or {NEUROGYM_PREFIX}<EnvId>"
        )
    return _TASKS[name]


def held_out_options(name: str) -> dict:
    """Constructor options of ``name``'s held-out version (e.g. the test images); {} if all trials are fresh."""
    return dict(_TASKS[name].held_out) if name in _TASKS else {}


def describe_subtasks(name: str) -> dict[str, str]:
    """Sub-task name -> one-line description for a suite (``yang19``, ``yang19-faithful``); {} for one task.

    Raises ``ValueError`` listing the valid task names when ``name`` is
    unknown (a ``neurogym:<EnvId>`` name must name a NeuroGym environment).
    """
    if name.startswith(NEUROGYM_PREFIX):
        _neurogym_entry_point(name.removeprefix(NEUROGYM_PREFIX))
        return {}
    return dict(_task(name).subtasks)


def gymnasium_id(name: str) -> str:
    """The Gymnasium id of our task ``name``, e.g. ``neuroalrnn/StimulusSelection-v0``."""
    return f"{GYMNASIUM_NAMESPACE}/{_task(name).gymnasium_name}-v0"


def register_gymnasium_envs() -> None:
    """Register every task of ours with Gymnasium, once: ids already registered are left as they are."""
    for name, task in _TASKS.items():
        env_id = gymnasium_id(name)
        if env_id not in gymnasium.registry:
            gymnasium.register(
                id=env_id,
                entry_point=f"{task.factory.__module__}:{task.factory.__qualname__}",
                kwargs=dict(task.options),
            )


def make(name: str, **kwargs):
    """Build the task ``name`` with keyword arguments passed to its constructor.

    Raises ``ValueError`` listing the valid names when ``name`` is unknown, and
    for a NeuroGym environment that cannot be trained supervised.
    """
    if name.startswith(NEUROGYM_PREFIX):
        return _make_neurogym(name.removeprefix(NEUROGYM_PREFIX), kwargs)
    task = _task(name)
    try:
        return task.factory(**{**task.options, **kwargs})
    except TypeError as error:
        raise ValueError(f"bad options for task {name!r}: {error}") from None


def _neurogym_entry_point(env_id: str) -> str:
    """The Gymnasium entry point of NeuroGym environment ``env_id``; ``ValueError`` listing the valid ids."""
    from neurogym.envs.registration import all_envs

    valid = all_envs()
    if env_id not in valid:
        raise ValueError(f"unknown NeuroGym environment {env_id!r}; valid: {', '.join(valid)}")
    return gymnasium.envs.registry[env_id].entry_point


def _make_neurogym(env_id: str, kwargs: dict):
    """Instantiate the NeuroGym class itself (no gymnasium wrappers: we sample whole trials)."""
    from gymnasium.spaces import Discrete

    creator = gymnasium.envs.registration.load_env_creator(_neurogym_entry_point(env_id))
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
