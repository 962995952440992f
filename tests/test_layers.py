"""The layers' dependency direction, read from the source with ``ast``, and every module importable on its own.

Layers, each importing only those before it: envs -> models -> training ->
evaluation -> workflows; analyses use models and the data contracts
(formats, storage, system, envs), never training, evaluation or workflows;
nothing outside workflows imports workflows.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"neuroalrnn": "neuroalrnn", "envs": "neuroalrnn.envs", "analyses": "neuroalrnn.analyses"}
SHARED = ("neuroalrnn.formats", "neuroalrnn.storage", "neuroalrnn.system")


def _source_files() -> dict[str, Path]:
    """Module name (as installed) -> source file, for every module of the three card folders."""
    modules = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if "__pycache__" not in parts:
                modules[".".join((package, *parts)).removesuffix(".__init__")] = path
    return modules


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every ``neuroalrnn`` module that ``source`` (the text of ``module``) imports, anywhere in it, as dotted names.

    Relative imports are resolved against ``module``'s package; ``from X import name`` counts as importing
    ``X.name`` (``name`` may be a submodule), so a rule on ``X.name`` or on ``X`` both see it.
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            origin = ".".join(base + ([node.module] if node.module else []))
            found.update(f"{origin}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "neuroalrnn" or name.startswith("neuroalrnn.")}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def layer_violations(module: str, imports: set[str]) -> list[str]:
    """The imports of ``module`` that break the layering rules, each as 'module imports target'."""
    forbidden: tuple[str, ...] = ()
    allowed: tuple[str, ...] | None = None
    if _within(module, ("neuroalrnn.envs",)):
        allowed = ("neuroalrnn.envs",)
    elif _within(module, ("neuroalrnn.analyses",)):
        allowed = ("neuroalrnn.analyses", "neuroalrnn.models", "neuroalrnn.envs", *SHARED)
    elif _within(module, ("neuroalrnn.models",)):
        forbidden = ("neuroalrnn.training", "neuroalrnn.evaluation", "neuroalrnn.workflows", "neuroalrnn.analyses")
    elif _within(module, ("neuroalrnn.training",)):
        forbidden = ("neuroalrnn.evaluation", "neuroalrnn.workflows")
    if not _within(module, ("neuroalrnn.workflows",)):
        forbidden = (*forbidden, "neuroalrnn.workflows")
    broken = [
        target for target in sorted(imports)
        if _within(target, forbidden) or (allowed is not None and not _within(target, allowed))
    ]
    return [f"{module} imports {target}" for target in broken]


def test_the_checker_sees_relative_lazy_and_absolute_imports():
    source = (
        "from ..training import Trainer\n"
        "def f():\n    from .. import workflows\n"
        "import neuroalrnn.evaluation.simulate\n"
        "from . import core\n"
    )
    imports = imported_modules(source, "neuroalrnn.analyses.sharing", is_package=False)
    assert imports == {
        "neuroalrnn.training.Trainer", "neuroalrnn.workflows", "neuroalrnn.evaluation.simulate",
        "neuroalrnn.analyses.core",
    }
    assert layer_violations("neuroalrnn.analyses.sharing", imports) == [
        "neuroalrnn.analyses.sharing imports neuroalrnn.evaluation.simulate",
        "neuroalrnn.analyses.sharing imports neuroalrnn.training.Trainer",
        "neuroalrnn.analyses.sharing imports neuroalrnn.workflows",
    ]
    package_imports = imported_modules("from .trainer import Trainer\nfrom .. import envs\n", "neuroalrnn.training",
                                       is_package=True)
    assert package_imports == {"neuroalrnn.training.trainer.Trainer", "neuroalrnn.envs"}
    assert layer_violations("neuroalrnn.envs.base", {"neuroalrnn.formats"}) == [
        "neuroalrnn.envs.base imports neuroalrnn.formats"
    ]
    assert layer_violations("neuroalrnn.training.trainer", {"neuroalrnn.evaluation.evaluate_run"})
    assert layer_violations("neuroalrnn.models.fast", {"neuroalrnn.analyses.core"})
    assert layer_violations("neuroalrnn.formats", {"neuroalrnn.workflows.cli"})
    assert not layer_violations("neuroalrnn.workflows.cli", {"neuroalrnn.workflows.sweeps.run_sweep"})
    assert not layer_violations("neuroalrnn.evaluation.evaluate", {"neuroalrnn.analyses.regimes"})


def test_every_layer_imports_only_the_layers_below_it():
    violations = []
    for module, path in _source_files().items():
        imports = imported_modules(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
        violations += layer_violations(module, imports)
    assert not violations, "layering broken:\n" + "\n".join(violations)


def test_the_layer_packages_exist_where_the_rules_expect_them():
    modules = _source_files()
    for package in ("neuroalrnn.models", "neuroalrnn.training", "neuroalrnn.evaluation", "neuroalrnn.workflows",
                    "neuroalrnn.workflows.sweeps", "neuroalrnn.envs", "neuroalrnn.analyses"):
        assert modules[package].name == "__init__.py", package
    for old in ("training", "evaluation", "simulate", "config", "rundir", "fast", "cli", "analyze", "bench"):
        assert not (ROOT / "neuroalrnn" / f"{old}.py").exists(), f"neuroalrnn/{old}.py is back at the top level"


IMPORT_EACH_FRESH = """
import importlib, json, sys
failed = {}
for name in json.loads(sys.argv[1]):
    for loaded in [key for key in sys.modules if key == "neuroalrnn" or key.startswith("neuroalrnn.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as error:
        failed[name] = f"{type(error).__name__}: {error}"
print(json.dumps(failed))
"""


def test_every_module_imports_first_on_its_own():
    """Each module is imported with no other neuroalrnn module loaded before it (an import cycle shows here)."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH_FRESH, json.dumps(sorted(_source_files()))],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == {}


@pytest.mark.parametrize(("module", "names"), [
    ("neuroalrnn.models", ["ALRNN", "ALRNNParams", "MODEL_KINDS", "TanhRNN", "GRUBaseline", "LSTMBaseline",
                           "build_model", "regime_codes", "bits_to_codes", "codes_to_bits"]),
    ("neuroalrnn.training", ["Trainer", "TrainConfig", "load_model", "make_task", "TrainingDiverged", "TrainingInterrupted"]),
    ("neuroalrnn.evaluation", ["accuracy_by", "evaluate_run", "current_trials", "simulate", "read_trials"]),
])
def test_the_layer_packages_export_their_public_names(module, names):
    package = __import__(module, fromlist=names)
    assert all(hasattr(package, name) for name in names)
    assert set(names) <= set(package.__all__)
