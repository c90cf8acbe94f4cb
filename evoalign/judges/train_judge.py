"""Retrain the `evoalign` judge's weights from human-labelled responses.

    python -m evoalign.judges.train_judge --config evoalign/judges/data/evoalign_judge.yaml \\
        --xstest_completions /path/to/xstest_completions_dev --output evoalign/judges/data/evoalign_judge.json

The YAML sets defaults and flags override them (TRL's `TrlParser`). The data are read from the paths given: the
XSTest v2 model completions with their human labels (a folder of `xstest_v2_completions_<model>.csv`), and the
project's labelled and pattern sets (shipped in the package; `--use_labelled_set false` or
`--use_pattern_set false` leaves one out). With the shipped config
and the same data this reproduces the shipped weights: every step is seeded, fits run single-threaded, and
weights are stored to seven significant digits. The weights file records the config, the sha256 of every data
file, and the cross-validated choice of C and the temperature.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evoalign.config import parse_config
from evoalign.errors import ConfigError, run_main
from evoalign.judges.data import LABELLED_SET, PATTERN_SET
from evoalign.judges.trained import LexicalModel
from evoalign.judges.training import (
    LABELLED_SOURCE,
    PATTERN_SOURCE,
    XSTEST_PREFIX,
    FitSettings,
    fit,
    load_labelled_rows,
    load_xstest_completions,
)


@dataclass
class JudgeTrainingConfig:
    """Where the labelled data are, where the weights go, and how the model is chosen."""

    xstest_completions: str | None = field(
        default=None,
        metadata={
            "help": "Folder of XSTest v2 model completions with human labels (xstest_v2_completions_<model>.csv). "
            "Required."
        },
    )
    use_labelled_set: bool = field(
        default=True, metadata={"help": "Also train on the project's labelled set (evoalign/judges/data)."}
    )
    labelled_set: str = field(
        default=str(LABELLED_SET),
        metadata={"help": "JSONL of prompt/response/label rows used when use_labelled_set is true."},
    )
    use_pattern_set: bool = field(
        default=True, metadata={"help": "Also train on the project's pattern set (evoalign/judges/data)."}
    )
    pattern_set: str = field(
        default=str(PATTERN_SET),
        metadata={"help": "JSONL of prompt/response/label rows used when use_pattern_set is true."},
    )
    pattern_weight: float = field(
        default=3.0,
        metadata={
            "help": "Sample weight of each pattern-set row (1 for the others): the pattern set is small, and it is "
            "the only source of some refusal styles."
        },
    )
    output: str | None = field(default=None, metadata={"help": "Where to write the weights (JSON). Required."})
    c_grid: list[float] = field(
        default_factory=lambda: [0.3, 1.0, 3.0, 10.0],
        metadata={"help": "Inverse L2 strengths tried; the one with the lowest grouped held-out log-loss is used."},
    )
    folds: int = field(default=5, metadata={"help": "Grouped (by prompt) folds used to choose C and fit the temperature."})
    seed: int = field(default=0, metadata={"help": "Seed of the fold assignment."})
    max_iter: int = field(default=5000, metadata={"help": "L-BFGS iteration limit of each logistic-regression fit."})

    def validate(self, where: str) -> None:
        for name in ("xstest_completions", "output"):
            if not getattr(self, name):
                raise ConfigError(f"{where}: '{name}' is required")
        if not self.c_grid or min(self.c_grid) <= 0:
            raise ConfigError(f"{where}: 'c_grid' must be positive numbers, got {self.c_grid}")
        if self.pattern_weight <= 0:
            raise ConfigError(f"{where}: 'pattern_weight' must be positive, got {self.pattern_weight}")

    def settings(self) -> FitSettings:
        return FitSettings(
            c_grid=list(self.c_grid),
            source_weights={PATTERN_SOURCE: self.pattern_weight},
            folds=self.folds,
            seed=self.seed,
            max_iter=self.max_iter,
        )


def parse_training_config(argv: Sequence[str] | None) -> JudgeTrainingConfig:
    """`--config file.yaml` defaults, flags on top (the house parser); missing required paths are a ConfigError."""
    return parse_config(JudgeTrainingConfig, argv, prog="python -m evoalign.judges.train_judge")


SHIPPED_CONFIG = Path(__file__).with_name("data") / "evoalign_judge.yaml"


def shipped_settings() -> FitSettings:
    """The fit settings of the shipped weights, read from their YAML config (as `benchmarks/judges.py` uses)."""
    return parse_training_config(["--config", str(SHIPPED_CONFIG), "--xstest_completions", "-", "--output", "-"]).settings()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(config: JudgeTrainingConfig) -> LexicalModel:
    """Fit the judge on the configured data, write its weights to `config.output`, and return the model."""
    folder = Path(config.xstest_completions)
    rows = load_xstest_completions(folder)
    files = {path.name: _sha256(path) for path in sorted(folder.glob(f"{XSTEST_PREFIX}*.csv"))}
    for used, path, source in (
        (config.use_labelled_set, config.labelled_set, LABELLED_SOURCE),
        (config.use_pattern_set, config.pattern_set, PATTERN_SOURCE),
    ):
        if used:
            rows += load_labelled_rows(path, source)
            files[Path(path).name] = _sha256(Path(path))
    print(f"training on {len(rows)} labelled responses from {len(files)} files", file=sys.stderr)
    model = fit(rows, config.settings())
    settings = {key: value for key, value in asdict(config).items() if key not in ("xstest_completions", "output")}
    settings.update(labelled_set=Path(config.labelled_set).name, pattern_set=Path(config.pattern_set).name)
    model.metadata.update({"training_config": settings, "data_sha256": files})
    model.save(config.output)
    return model


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the config, retrain, write the weights and print what was chosen; raises EvoalignError."""
    config = parse_training_config(argv)
    model = train(config)
    chosen = model.metadata["C"]
    print(
        f"wrote {config.output}: {len(model.space.names)} features, C={chosen} (grouped held-out log-loss "
        f"{model.metadata['cv_log_loss'][str(chosen)]}), temperature {model.temperature:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
