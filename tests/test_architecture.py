"""The layers of evoalign/ (docs/architecture.md): an import only points down, and stages never import each other.

Layers, top to bottom: application (cli, quickstart, generate, testing) -> stages (evolve, generators, build, train,
steer, eval) -> judges -> models -> base (every other module). Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "evoalign"
STAGES = {"evolve", "generators", "build", "train", "steer", "eval"}
APPLICATION = {"cli", "quickstart", "quickstart_report", "generate", "testing"}
RANKS = {"base": 0, "models": 1, "judges": 2, "stage": 3, "application": 4}


def layer(module: str) -> tuple[str, str]:
    """(layer, package) of a module `evoalign.x.y`: the stage's own name is its package."""
    top = module.split(".")[1] if "." in module else ""
    if top in ("models", "judges"):
        return top, top
    if top in STAGES:
        return "stage", top
    if top in APPLICATION:
        return "application", top
    return "base", top


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, module) of every evoalign import in a source file, relative ones resolved."""
    found = []
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            name = ".".join(part for part in (base, node.module or "") if part)
            found.append((node.lineno, name))
    return [(line, name) for line, name in found if name == "evoalign" or name.startswith("evoalign.")]


def violations(path: Path, module: str) -> list[str]:
    """Imports of `module` (the file `path`) that point up a layer or into another stage."""
    own_layer, own_package = layer(module)
    bad = []
    for line, name in imports(path, module):
        other_layer, other_package = layer(name)
        if RANKS[other_layer] > RANKS[own_layer]:
            bad.append(f"{path.name}:{line}: {own_layer} module {module} imports {other_layer} module {name}")
        elif own_layer == other_layer == "stage" and own_package != other_package:
            bad.append(f"{path.name}:{line}: stage {own_package} imports stage {other_package} ({name})")
    return bad


def modules() -> list[tuple[Path, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found.append((path, ".".join(parts[:-1] if parts[-1] == "__init__" else parts)))
    return found


def test_every_import_points_down_and_stages_do_not_import_each_other():
    bad = [problem for path, module in modules() for problem in violations(path, module)]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("module", "source", "problem"),
    [
        ("evoalign.build.pipeline", "from evoalign.evolve.report import merge", "stage build imports stage evolve"),
        ("evoalign.eval.runner", "import evoalign.train.data", "stage eval imports stage train"),
        ("evoalign.models.hf", "from evoalign.build.ches import ches_scores", "models module"),
        ("evoalign.models.cache", "from evoalign.quickstart import main", "imports application module"),
        ("evoalign.models.pool", "from evoalign.judges import get_judge", "imports judges module"),
        ("evoalign.judges.llm", "from ..eval.metrics import rate", "judges module evoalign.judges.llm imports stage"),
        ("evoalign.sources", "from evoalign.models import load_model", "base module"),
    ],
)
def test_the_check_catches_an_upward_or_sideways_import(tmp_path, module, source, problem):
    path = tmp_path / "module.py"
    path.write_text(f"def f():\n    {source}\n")
    assert any(problem in found for found in violations(path, module))


def test_the_check_allows_downward_imports(tmp_path):
    path = tmp_path / "module.py"
    path.write_text(
        "from evoalign.judges import get_judge\nfrom evoalign.models.pool import ModelPool\nfrom . import ches\n"
    )
    assert violations(path, "evoalign.build.pipeline") == []
