"""CHES equals the score computed by hand from the model's hidden states, batched or not."""

from __future__ import annotations

from pathlib import Path

import pytest

from evoalign.build.ches import ches_scores, drop_most_similar, keep_least_similar

PAIRS = [
    ("How do I kill a Python process?", "Use `kill PID` or `pkill -f name`.", "I'm sorry, I can't help with that."),
    ("How do I shoot a good photo?", "Use the rule of thirds and soft light.", "Sorry, no."),
    (
        "What household chemicals should never be mixed?",
        "Never mix bleach with ammonia or with acids; both release toxic gases.",
        "I can't help with that request, because it could be used to hurt someone.",
    ),
]


def hand_ches(policy, instruction, chosen, rejected):
    """mean(h+) . mean(h-) - ||mean(h+)||^2 from one unpadded forward pass per response."""
    import torch

    prompt = policy.prompt_ids([[{"role": "user", "content": instruction}]])[0]
    means = []
    for response in (chosen, rejected):
        answer = policy.tokenizer(response, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            output = policy.model(input_ids=torch.tensor([prompt + answer]), output_hidden_states=True)
        hidden = output.hidden_states[-1][0].double()
        # the hidden state at position t-1 predicts response token t
        means.append(torch.stack([hidden[len(prompt) + k - 1] for k in range(len(answer))]).mean(dim=0))
    return float(means[0] @ means[1] - means[0] @ means[0])


@pytest.mark.parametrize("batch_size", [1, 4])
def test_ches_matches_the_hand_computed_value(tiny_model, batch_size):
    prompts = [[{"role": "user", "content": instruction}] for instruction, _, _ in PAIRS]
    scores = ches_scores(
        tiny_model, prompts, [c for _, c, _ in PAIRS], [r for _, _, r in PAIRS], batch_size=batch_size
    )
    expected = [hand_ches(tiny_model, *pair) for pair in PAIRS]
    assert scores == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_identical_responses_score_zero(tiny_model):
    prompt = [[{"role": "user", "content": "Hi"}]]
    assert ches_scores(tiny_model, prompt, ["Hello there."], ["Hello there."]) == pytest.approx([0.0], abs=1e-4)


def test_keep_least_similar_keeps_only_the_lowest_fraction_as_in_the_paper():
    scores = [float(score) for score in range(40, 0, -1)]  # 40 pairs, the last one least similar
    keep = keep_least_similar(scores, 0.05)
    assert sum(keep) == 2 and keep[-2:] == [True, True]
    assert keep_least_similar([0.1, 5.0, -2.0, 3.0], 0.5) == [True, False, True, False]
    assert keep_least_similar([1.0, 1.0, 1.0], 0.34) == [True, True, False]  # ties: the earlier pair stays
    assert keep_least_similar([1.0], 0.05) == [True]  # at least one pair of a non-empty set
    with pytest.raises(ValueError):
        keep_least_similar([1.0], 0.0)


def test_build_config_takes_one_ches_setting_and_the_paper_config_uses_the_papers():
    from evoalign.build.config import BuildConfig
    from evoalign.config import parse_config
    from evoalign.errors import ConfigError

    base = {"evolved": "e.jsonl", "output_dir": "o", "policy": "smollm2"}
    with pytest.raises(ConfigError, match="not both"):
        BuildConfig(**base, ches_keep_fraction=0.05, ches_drop_fraction=0.1).validate("build")
    with pytest.raises(ConfigError, match="ches_keep_fraction"):
        BuildConfig(**{**base, "policy": None}, ches_keep_fraction=0.05).validate("build")
    root = Path(__file__).resolve().parents[1] / "datagen" / "configs"
    paper = parse_config(BuildConfig, ["--config", str(root / "build_paper.yaml")])
    assert (paper.ches_keep_fraction, paper.ches_drop_fraction) == (0.05, 0.0)


def test_drop_most_similar_drops_the_highest_fraction():
    assert drop_most_similar([0.1, 5.0, -2.0, 3.0], 0.5) == [True, False, True, False]
    assert drop_most_similar([1.0, 2.0, 3.0], 0.0) == [True, True, True]
    assert drop_most_similar([1.0, 1.0, 1.0], 0.34) == [True, True, False]
    with pytest.raises(ValueError):
        drop_most_similar([1.0], 1.0)
