"""Refusal directions by difference in means of residual-stream activations.

The activation of a prompt at layer `l` and position `p` is `hidden_states[l][p]` of a forward pass over the
prompt rendered with the chat template and its generation prompt: layer `l` is the residual stream entering
decoder block `l` (0: the embeddings; the last entry is the final norm's output, never a candidate); positions count from the end (-1 is the last template token, where the model
decides how its answer starts). A direction is mean(activations of set A) - mean(activations of set B).

The false-refusal direction (pseudo-harmful minus harmless prompts) shares a component with the true-refusal
direction (harmful minus harmless); `partially_orthogonalise` removes a fraction `strength` of that shared part,
the paper's knob between fewer false refusals (1: the full projection removed, the true refusal untouched) and
more (0: the raw false-refusal vector, which also weakens true refusals).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evoalign.progress import progress_bar


def prompt_activations(
    model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], positions: Sequence[int], *, batch_size: int = 16
):
    """Activations of token-id prompts: a float32 tensor [layers + 1, len(positions), len(prompts), hidden]."""
    import torch

    if not prompts:
        raise ValueError("no prompts to take activations from")
    if any(len(row) < -min(positions) for row in prompts):
        raise ValueError(f"a prompt is shorter than position {min(positions)}")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    chunks = []
    with torch.no_grad(), progress_bar(total=len(prompts), desc="activations") as bar:
        for start in range(0, len(prompts), batch_size):
            rows = [list(row) for row in prompts[start : start + batch_size]]
            width = max(len(row) for row in rows)
            ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)
            states = torch.stack(out.hidden_states)  # [layers + 1, batch, width, hidden], left-padded
            chunks.append(states[:, :, list(positions), :].permute(0, 2, 1, 3).float().cpu())
            bar.update(len(rows))
    return torch.cat(chunks, dim=2)


def mean_difference(first, second):
    """mean(first) - mean(second) over the prompt axis (-2) of two activation tensors."""
    return first.mean(dim=-2) - second.mean(dim=-2)


def partially_orthogonalise(direction, reference, strength: float):
    """`direction` minus `strength` times its projection on `reference` (last axis; any leading axes)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"the orthogonalisation strength must be in [0, 1], got {strength}")
    unit = reference / reference.norm(dim=-1, keepdim=True)
    return direction - strength * (direction * unit).sum(dim=-1, keepdim=True) * unit
