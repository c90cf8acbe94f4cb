"""Refusal directions by difference in means of residual-stream activations.

Activations come from `evoalign.models.steering.prompt_activations` (layer `l`: the residual stream entering block
`l`; positions from the end of the prompt, -1 being the last template token, where the answer starts). A direction
is mean(activations of set A) - mean(activations of set B).

The false-refusal direction (pseudo-harmful minus harmless prompts) shares a component with the true-refusal
direction (harmful minus harmless); `partially_orthogonalise` removes a fraction `strength` of that shared part,
the paper's knob between fewer false refusals (1: the full projection removed, the true refusal untouched) and
more (0: the raw false-refusal vector, which also weakens true refusals).
"""

from __future__ import annotations

from typing import Any


def mean_difference(first, second):
    """mean(first) - mean(second) over the prompt axis (-2) of two activation tensors."""
    return first.mean(dim=-2) - second.mean(dim=-2)


def partially_orthogonalise(direction, reference, strength: float):
    """`direction` minus `strength` times its projection on `reference` (last axis; any leading axes)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"the orthogonalisation strength must be in [0, 1], got {strength}")
    unit = reference / reference.norm(dim=-1, keepdim=True)
    return direction - strength * (direction * unit).sum(dim=-1, keepdim=True) * unit


def fit_probe(features, labels: list[int], *, seed: int = 0) -> tuple[Any, float]:
    """A logistic-regression probe (scikit-learn, standardised inputs, L2) folded back to raw activations:
    (weight [hidden], bias) with P(label 1) = sigmoid(x @ weight + bias)."""
    import torch
    from sklearn.linear_model import LogisticRegression

    x = features.double().numpy()
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    model = LogisticRegression(max_iter=5000, random_state=seed).fit((x - mean) / scale, labels)
    weight = model.coef_[0] / scale
    bias = float(model.intercept_[0] - (mean * weight).sum())
    return torch.tensor(weight, dtype=torch.float32), bias
