"""Batch-invariant sampling with the model's own log-probabilities recorded on the way.

`transformers` samples with one global RNG across the batch, so the same prompt gets different samples
depending on what else is in its batch, and resuming an interrupted run cannot reproduce the samples the
uninterrupted run would have drawn. Here each row (conversation, sample index) owns a generator seeded
from its content and draws one uniform number per step; the token is read off the warped distribution's
cumulative sum at that point (inverse-CDF sampling: one random number per row, not one per vocabulary
entry as with Gumbel-max, which kept the sampler cheap next to the model's own step). The
processor also records each chosen token's log-probability under the *unwarped* distribution, so
log-probs come from the generation itself, with no second forward pass.
"""

from __future__ import annotations

import hashlib
import json

import torch

from evoalign.models.base import Conversation, SamplingParams


def row_seed(seed: int | None, conversation: Conversation, sample_index: int) -> int:
    """A 63-bit seed that depends only on the run seed, the conversation and the sample index."""
    payload = json.dumps([seed, conversation, sample_index], sort_keys=True, ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(payload.encode()).digest()[:8], "big") >> 1


def warp_logprobs(logprobs: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Apply temperature, top-k and top-p to log-probs of shape (rows, vocab); masked entries are -inf."""
    warped = logprobs if params.temperature == 1.0 else torch.log_softmax(logprobs / params.temperature, dim=-1)
    if params.top_k and params.top_k < warped.shape[-1]:
        kth = torch.topk(warped, params.top_k, dim=-1).values[..., -1:]
        warped = warped.masked_fill(warped < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_lp, order = torch.sort(warped, dim=-1, descending=True)
        cumulative = sorted_lp.exp().cumsum(dim=-1)
        drop_sorted = cumulative - sorted_lp.exp() >= params.top_p  # keep the smallest set reaching top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        warped = warped.masked_fill(drop, float("-inf"))
    return warped


class RecordingSampler:
    """A logits processor that picks each row's next token and records its unwarped log-prob.

    It returns scores that are 0 for the chosen token and -inf elsewhere, so whatever transformers does next
    (greedy argmax, or multinomial sampling when `num_return_sequences` > 1) picks exactly that token.
    """

    def __init__(self, params: SamplingParams, seeds: list[int], device: torch.device) -> None:
        self.params = params
        self.generators = None
        if not params.greedy:
            self.generators = []
            for seed in seeds:
                generator = torch.Generator(device=device)
                generator.manual_seed(seed)
                self.generators.append(generator)
        self.chosen_logprobs: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        logprobs = torch.log_softmax(scores.float(), dim=-1)
        if self.generators is None:
            chosen = logprobs.argmax(dim=-1)
        else:
            cdf = warp_logprobs(logprobs, self.params).exp().cumsum(dim=-1)
            uniform = torch.cat([torch.rand(1, generator=g, device=cdf.device) for g in self.generators])
            # right=True: the first entry whose cumulative sum exceeds u, so masked (zero) entries are never hit
            chosen = torch.searchsorted(cdf, uniform[:, None] * cdf[:, -1:], right=True).squeeze(-1)
            chosen = chosen.clamp_max(cdf.shape[-1] - 1)
        self.chosen_logprobs.append(logprobs.gather(-1, chosen[:, None]).squeeze(-1))
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(-1, chosen[:, None], 0.0)
        return out

    def logprob_matrix(self) -> torch.Tensor:
        """(rows, generated steps) log-probs of the chosen tokens."""
        return torch.stack(self.chosen_logprobs, dim=1)
