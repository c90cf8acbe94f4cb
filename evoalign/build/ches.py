"""CHES: the centered hidden embedding similarity of a preference pair (Razin et al., arXiv 2410.08847).

With h the policy's last-layer hidden states at the positions that predict the response tokens (position t-1
for response token t, with the prompt rendered by the policy's chat template), the length-normalised score is

    CHES(x, y+, y-) = mean(h+) . mean(h-) - ||mean(h+)||^2

Pairs whose chosen and rejected responses look alike to the model (high CHES) are the ones that cause
likelihood displacement in DPO: training lowers the probability of *both* responses and shifts mass to
unrelated ones. The paper filters the most similar pairs out: in its experiment it kept only the pairs with the
lowest CHES, about 5% of them (`keep_least_similar`, the build's `ches_keep_fraction`); `drop_most_similar`
(`ches_drop_fraction`) is the milder variant that removes only the highest-CHES fraction.

Sequences are right-padded, so every real token keeps its position ids and the causal attention never sees
the padding: a batched score equals the score of the pair run alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from evoalign.errors import DataError
from evoalign.prompts import Conversation


def ches_scores(
    policy: Any, prompts: Sequence[Conversation], chosen: Sequence[str], rejected: Sequence[str], batch_size: int = 8
) -> list[float]:
    """CHES of each (prompt, chosen, rejected) under `policy` (a ChatModel with the TRANSFORMERS capability)."""
    if not len(prompts) == len(chosen) == len(rejected):
        raise ValueError("ches_scores needs one chosen and one rejected response per prompt")
    if not prompts:
        return []
    prompt_ids = policy.prompt_ids(list(prompts))
    sequences = []
    for responses in (chosen, rejected):
        answers = policy.hf_tokenizer(list(responses), add_special_tokens=False)["input_ids"]
        for index, (prompt, answer) in enumerate(zip(prompt_ids, answers)):
            if not answer:
                raise DataError(f"CHES: pair {index} has an empty response; it has no hidden states to compare")
            sequences.append((prompt + answer, len(prompt)))
    means = _mean_response_states(policy, sequences, batch_size)
    count = len(prompts)
    return [float(means[i] @ means[count + i] - means[i] @ means[i]) for i in range(count)]


def _mean_response_states(policy: Any, sequences: list[tuple[list[int], int]], batch_size: int) -> list[Any]:
    """Mean last-layer hidden state over the positions that predict the response tokens, per sequence."""
    import torch

    model = policy.hf_model
    device = next(model.parameters()).device
    pad = policy.hf_tokenizer.pad_token_id
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    means: list[Any] = [None] * len(sequences)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(sequences[i][0]) for i in batch)
        ids = [sequences[i][0] + [pad] * (width - len(sequences[i][0])) for i in batch]
        mask = [[1] * len(sequences[i][0]) + [0] * (width - len(sequences[i][0])) for i in batch]
        with torch.inference_mode():
            output = model(
                input_ids=torch.tensor(ids, device=device),
                attention_mask=torch.tensor(mask, device=device),
                output_hidden_states=True,
                logits_to_keep=1,
            )
        states = output.hidden_states[-1].float()
        for row, index in enumerate(batch):
            tokens, prompt_length = sequences[index]
            means[index] = states[row, prompt_length - 1 : len(tokens) - 1].mean(dim=0).cpu()
    return means


def keep_least_similar(scores: Sequence[float], fraction: float) -> list[bool]:
    """Keep-mask that keeps only the `ceil(fraction * n)` lowest-CHES pairs (ties: the earlier pair is kept)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"the CHES keep fraction must be in (0, 1], got {fraction}")
    kept = math.ceil(fraction * len(scores) - 1e-9)
    ranked = sorted(range(len(scores)), key=lambda i: (scores[i], i))
    keep = [False] * len(scores)
    for index in ranked[:kept]:
        keep[index] = True
    return keep


def drop_most_similar(scores: Sequence[float], fraction: float) -> list[bool]:
    """Keep-mask that drops the `floor(fraction * n)` highest-CHES pairs (ties: the later pair goes first)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"the CHES drop fraction must be in [0, 1), got {fraction}")
    dropped = math.floor(fraction * len(scores))
    ranked = sorted(range(len(scores)), key=lambda i: (scores[i], i), reverse=True)
    keep = [True] * len(scores)
    for index in ranked[:dropped]:
        keep[index] = False
    return keep
