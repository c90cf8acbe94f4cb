"""The sampler behind the hf backend: warped distributions and draws follow temperature, top-k and top-p."""

from __future__ import annotations

import pytest
import torch

from evoalign.models import SamplingParams
from evoalign.models.sampling import RecordingSampler, candidates

SETTINGS = [
    SamplingParams(n=2, temperature=1.0, top_p=0.9),
    SamplingParams(n=2, temperature=1.3, top_p=0.5),
    SamplingParams(n=2, temperature=0.7, top_k=30, top_p=0.995),
    SamplingParams(n=2, temperature=1.0, top_k=7),
    SamplingParams(n=2, temperature=0.5),
]


def full_sort_reference(logprobs: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The textbook warp over the whole sorted vocabulary, as a (rows, vocab) distribution."""
    warped = torch.log_softmax(logprobs / params.temperature, -1)
    if params.top_k:
        kth = torch.topk(warped, params.top_k, -1).values[..., -1:]
        warped = torch.log_softmax(warped.masked_fill(warped < kth, float("-inf")), -1)
    if params.top_p < 1:
        ordered, order = torch.sort(warped, -1, descending=True)
        drop = ordered.exp().cumsum(-1) - ordered.exp() >= params.top_p
        warped = warped.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))
    return warped.softmax(-1)


def as_distribution(logprobs: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    warped, index = candidates(logprobs, params)
    if index is not None:
        warped = torch.full_like(logprobs, float("-inf")).scatter(-1, index, warped)
    return warped.softmax(-1)


@pytest.mark.parametrize("params", SETTINGS, ids=lambda p: f"t{p.temperature}-k{p.top_k}-p{p.top_p}")
@pytest.mark.parametrize("peakiness", [0.3, 1.0, 3.0, 10.0])
def test_candidates_equal_the_full_sort_warp(params, peakiness):
    logprobs = torch.log_softmax(torch.randn(8, 4000, generator=torch.Generator().manual_seed(1)) * peakiness, -1)
    expected = full_sort_reference(logprobs, params)
    got = as_distribution(logprobs, params)
    assert torch.equal(got > 0, expected > 0)
    assert torch.allclose(got, expected, atol=1e-6)


def test_draws_follow_the_warped_distribution():
    logprobs = torch.log_softmax(torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]]), -1).repeat(4000, 1)
    params = SamplingParams(n=2, temperature=0.8, top_p=0.9)
    sampler = RecordingSampler(params, list(range(4000)), torch.device("cpu"))
    chosen = sampler(torch.zeros(4000, 1, dtype=torch.long), logprobs).argmax(-1)
    frequencies = torch.bincount(chosen, minlength=6).float() / 4000
    expected = full_sort_reference(logprobs[:1], params)[0]
    assert frequencies[expected == 0].sum() == 0
    assert torch.allclose(frequencies, expected, atol=0.03)
    assert torch.allclose(sampler.logprob_matrix()[:, 0], logprobs[0, chosen])
