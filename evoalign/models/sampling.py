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

from evoalign.models.base import SamplingParams
from evoalign.prompts import Conversation


def row_seed(seed: int | None, conversation: Conversation, sample_index: int) -> int:
    """A 63-bit seed that depends only on the run seed, the conversation and the sample index."""
    payload = json.dumps([seed, conversation, sample_index], sort_keys=True, ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(payload.encode()).digest()[:8], "big") >> 1


def candidates(logprobs: torch.Tensor, params: SamplingParams) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The tokens a row may sample and their warped log-probs: temperature, then top-k, then top-p.

    `logprobs` are the model's normalised log-probs, shape (rows, vocab).

    Returns (log-probs, vocabulary ids) of shape (rows, m), or the full (rows, vocab) log-probs and None when
    nothing is cut. As in transformers, top-p applies to the distribution renormalised after top-k; cut
    entries inside the returned width are -inf. Only top-k/top-p candidates are sorted, never the vocabulary.
    """
    if params.temperature != 1.0:
        logprobs = torch.log_softmax(logprobs / params.temperature, dim=-1)
    index = None
    if params.top_k and params.top_k < logprobs.shape[-1]:
        values, index = torch.topk(logprobs, params.top_k, dim=-1)
        logprobs = torch.log_softmax(values, dim=-1)
    if params.top_p < 1.0:
        logprobs, order = _nucleus(logprobs, params.top_p)
        index = order if index is None else index.gather(-1, order)
    return logprobs, index


def _nucleus(logprobs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's smallest most-likely set reaching `top_p`: (log-probs with the rest -inf, positions).

    That set is a prefix of the row's descending order, so take the top m entries, m = 64, 256, ..., until
    every row's prefix reaches `top_p` or holds all its entries; nothing past that prefix can be kept.
    """
    size = logprobs.shape[-1]
    width = min(64, size)
    while True:
        values, order = torch.topk(logprobs, width, dim=-1)
        probs = values.exp()
        cumulative = probs.cumsum(dim=-1)
        if width == size or bool((cumulative[:, -1] >= top_p).all()):
            break
        width = min(size, width * 4)
    return values.masked_fill(cumulative - probs >= top_p, float("-inf")), order


class RecordingSampler:
    """A logits processor that picks each row's next token and records its unwarped log-prob.

    It returns scores that are 0 for the chosen token and -inf elsewhere, so transformers' greedy step picks
    exactly that token.
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
        chosen = logprobs.argmax(dim=-1) if self.generators is None else self._sample(logprobs)
        self.chosen_logprobs.append(logprobs.gather(-1, chosen[:, None]).squeeze(-1))
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(-1, chosen[:, None], 0.0)
        return out

    def _sample(self, logprobs: torch.Tensor) -> torch.Tensor:
        warped, index = candidates(logprobs, self.params)
        cdf = warped.exp().cumsum(dim=-1)
        uniform = torch.cat([torch.rand(1, generator=g, device=cdf.device) for g in self.generators])
        # right=True: the first entry whose cumulative sum exceeds u, so cut (zero) entries are never hit
        position = torch.searchsorted(cdf, uniform[:, None] * cdf[:, -1:], right=True).clamp_max(cdf.shape[-1] - 1)
        return position.squeeze(-1) if index is None else index.gather(-1, position).squeeze(-1)

    def logprob_matrix(self) -> torch.Tensor:
        """(rows, generated steps) log-probs of the chosen tokens."""
        return torch.stack(self.chosen_logprobs, dim=1)
