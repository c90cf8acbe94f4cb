"""Training and validating the `evoalign` judge on human-labelled (prompt, response, label) rows.

- `load_xstest_completions(folder)` reads XSTest v2 model-completion CSVs (`prompt`, `completion`, `final_label`);
  `load_labelled_rows(path)` reads JSONL rows with `prompt`, `response`, `label` (the project's labelled and
  pattern sets).
- `fit(rows, settings)` chooses the L2 strength `C` by grouped cross-validation *inside* `rows` (folds by prompt,
  so every response to a prompt is on the same side; lowest held-out log-loss), fits a temperature on those
  held-out predictions, then fits the logistic regression on all of `rows`.
- `cross_validate(rows, settings)` measures that whole procedure: grouped outer folds, `fit` on each training
  side, probabilities for each held-out side.

Everything is seeded, and scikit-learn runs single-threaded here (`threadpool_limits(1)`), so the same rows give the
same weights; threads also only slow these small fits down on a busy machine. scikit-learn and scipy are imported
when a function here runs, never by the judge itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evoalign.errors import DataError
from evoalign.io import iter_records
from evoalign.judges.base import COMPLIANCE, PARTIAL, REFUSAL, JudgeItem
from evoalign.judges.lexical import FeatureSpace, extract
from evoalign.judges.trained import CLASSES, LexicalModel

XSTEST_LABELS = {"1_full_compliance": COMPLIANCE, "2_full_refusal": REFUSAL, "3_partial_refusal": PARTIAL}
XSTEST_PREFIX = "xstest_v2_completions_"
LABELLED_SOURCE = "labelled"
PATTERN_SOURCE = "patterns"


@dataclass
class FitSettings:
    """How `fit` chooses and fits the model."""

    c_grid: list[float] = field(default_factory=lambda: [0.3, 1.0, 3.0, 10.0])
    source_weights: dict[str, float] = field(default_factory=dict)  # sample weight per row `source` (default 1)
    folds: int = 5
    seed: int = 0
    max_iter: int = 5000


def load_xstest_completions(folder: str | Path) -> list[dict[str, Any]]:
    """Rows of every `xstest_v2_completions_<model>.csv` in `folder`, with `source` = the model's name."""
    folder = Path(folder)
    files = sorted(folder.glob(f"{XSTEST_PREFIX}*.csv"))
    if not files:
        raise DataError(f"{folder}: no {XSTEST_PREFIX}<model>.csv files (the XSTest v2 model completions)")
    rows = []
    for path in files:
        source = path.stem[len(XSTEST_PREFIX) :]
        for line, record in iter_records(path):
            for column in ("prompt", "completion", "final_label"):
                if not isinstance(record.get(column), str):
                    raise DataError(f"{path}:{line}: missing '{column}' column")
            if record["final_label"] not in XSTEST_LABELS:
                raise DataError(f"{path}:{line}: unknown final_label {record['final_label']!r}")
            rows.append(
                {
                    "prompt": record["prompt"],
                    "response": record["completion"],
                    "label": XSTEST_LABELS[record["final_label"]],
                    "source": source,
                    "type": record.get("type"),
                }
            )
    return rows


def load_labelled_rows(path: str | Path, source: str = LABELLED_SOURCE) -> list[dict[str, Any]]:
    """Rows of a JSONL file with string `prompt` and `response` and a `label` in compliance/refusal/partial."""
    rows = []
    for line, record in iter_records(path):
        for key in ("prompt", "response"):
            if not isinstance(record.get(key), str):
                raise DataError(f"{path}:{line}: '{key}' must be a string")
        if record.get("label") not in CLASSES:
            raise DataError(f"{path}:{line}: label must be one of {', '.join(CLASSES)}, got {record.get('label')!r}")
        rows.append({**record, "source": source})
    return rows


def prompt_group(prompt: str) -> str:
    """The fold group of a row: its prompt, lower-cased with whitespace collapsed."""
    return " ".join(prompt.lower().split())


def grouped_folds(rows: Sequence[dict[str, Any]], folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) index arrays: `folds` folds by prompt, stratified by label, shuffled with `seed`."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = [row["label"] for row in rows]
    groups = [prompt_group(row["prompt"]) for row in rows]
    if len(set(groups)) < folds:
        raise DataError(f"{len(set(groups))} distinct prompts cannot make {folds} folds")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(rows)), labels, groups))


def raw_features(rows: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    """The raw lexical features of every row (computed once, reused by every fold)."""
    return [extract(JudgeItem(row["prompt"], row["response"])) for row in rows]


def _matrix(space: FeatureSpace, raws: Sequence[dict[str, float]]) -> Any:
    from scipy.sparse import csr_matrix

    data, columns, pointers = [], [], [0]
    for raw in raws:
        indices, values = space.encode(raw)
        columns.extend(indices)
        data.extend(values)
        pointers.append(len(columns))
    return csr_matrix((data, columns, pointers), shape=(len(raws), len(space.names)))


def _targets(rows: Sequence[dict[str, Any]]) -> np.ndarray:
    return np.array([CLASSES.index(row["label"]) for row in rows])


def _log_loss(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scaled).sum(axis=1))
    return float((log_norm - scaled[np.arange(len(targets)), targets]).mean())


def _fit_regression(matrix: Any, targets: np.ndarray, weights: np.ndarray, c: float, max_iter: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    if len(set(targets.tolist())) != len(CLASSES):
        raise DataError(f"training rows must have all of {', '.join(CLASSES)}")
    return LogisticRegression(C=c, max_iter=max_iter).fit(matrix, targets, sample_weight=weights)


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature that minimises the log-loss of held-out `logits` (searched on [0.25, 4])."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(
        lambda log_t: _log_loss(logits, targets, math.exp(log_t)),
        bounds=(math.log(0.25), math.log(4)),
        method="bounded",
    )
    return math.exp(result.x)


def fit(
    rows: Sequence[dict[str, Any]], settings: FitSettings, raws: Sequence[dict[str, float]] | None = None
) -> LexicalModel:
    """Choose C and the temperature by grouped cross-validation within `rows`, then fit on all of them."""
    from threadpoolctl import threadpool_limits

    raws = list(raws) if raws is not None else raw_features(rows)
    targets = _targets(rows)
    weights = np.array([settings.source_weights.get(row["source"], 1.0) for row in rows])
    held_out = {c: np.zeros((len(rows), len(CLASSES))) for c in settings.c_grid}
    with threadpool_limits(1):
        for train, test in grouped_folds(rows, settings.folds, settings.seed):
            space = FeatureSpace.fit([raws[i] for i in train])
            train_matrix = _matrix(space, [raws[i] for i in train])
            test_matrix = _matrix(space, [raws[i] for i in test])
            for c in settings.c_grid:
                regression = _fit_regression(train_matrix, targets[train], weights[train], c, settings.max_iter)
                held_out[c][test] = regression.decision_function(test_matrix)
        losses = {c: _log_loss(logits, targets) for c, logits in held_out.items()}
        best = min(settings.c_grid, key=lambda c: (losses[c], c))
        temperature = fit_temperature(held_out[best], targets)
        space = FeatureSpace.fit(raws)
        regression = _fit_regression(_matrix(space, raws), targets, weights, best, settings.max_iter)
    metadata = {
        "rows": len(rows),
        "C": best,
        "temperature_fitted_on": f"{settings.folds}-fold grouped held-out predictions",
        "cv_log_loss": {str(c): round(loss, 5) for c, loss in losses.items()},
        "cv_log_loss_calibrated": round(_log_loss(held_out[best], targets, temperature), 5),
    }
    return LexicalModel(space, regression.coef_.copy(), regression.intercept_.copy(), temperature, metadata)


def cross_validate(
    rows: Sequence[dict[str, Any]],
    settings: FitSettings,
    *,
    folds: int = 5,
    seed: int = 0,
    raws: Sequence[dict[str, float]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Held-out class probabilities for every row: `folds` grouped outer folds, `fit` on each training side."""
    raws = list(raws) if raws is not None else raw_features(rows)
    probabilities = np.zeros((len(rows), len(CLASSES)))
    splits = grouped_folds(rows, folds, seed)
    for done, (train, test) in enumerate(splits):
        model = fit([rows[i] for i in train], settings, [raws[i] for i in train])
        probabilities[test] = model.predict([raws[i] for i in test])
        if progress:
            progress(done + 1, len(splits))
    return probabilities
