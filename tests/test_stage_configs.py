"""Every YAML config the project ships for the datagen and eval stages parses with its stage's own parser.

A renamed or mistyped key in a shipped config would otherwise only show when a user runs the documented command.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from evoalign.build.config import BuildConfig
from evoalign.config import parse_config
from evoalign.eval.runner import EvalConfig
from evoalign.evolve.config import EvolveConfig
from evoalign.generators.config import ORBenchConfig, PHTestConfig

ROOT = Path(__file__).resolve().parents[1]


def _stage_config_class(path: Path) -> type:
    if path.parent.parent.name == "eval":
        return EvalConfig
    prefixes = {"build": BuildConfig, "orbench": ORBenchConfig, "phtest": PHTestConfig}
    return next((cls for prefix, cls in prefixes.items() if path.name.startswith(prefix)), EvolveConfig)


SHIPPED = sorted([*(ROOT / "datagen" / "configs").glob("*.yaml"), *(ROOT / "eval" / "configs").glob("*.yaml")])


def test_the_project_ships_stage_configs():
    assert {p.parent.parent.name for p in SHIPPED} == {"datagen", "eval"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_shipped_stage_config_parses(path):
    config = parse_config(_stage_config_class(path), ["--config", str(path)])
    assert config.output_dir
