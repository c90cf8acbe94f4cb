"""Adaptive sampling (issue 21): sequential halving spends a fraction of the target samples and still finds the
candidates that are refused most; the savings are reported."""

from __future__ import annotations

import pytest
from test_evolve_search import ALARMING, SEEDS, KeywordTarget, evolution

from evoalign.errors import ConfigError
from evoalign.evolve.config import EvolveConfig
from evoalign.evolve.report import summarize
from evoalign.judges import get_judge
from evoalign.judges.fitness import FitnessEvaluator, Target, halving_samples
from evoalign.models.base import SamplingParams


def _evaluator(samples: int) -> tuple[FitnessEvaluator, KeywordTarget]:
    target = KeywordTarget()
    evaluator = FitnessEvaluator(
        [Target("keywords", target)], get_judge("evoalign"), SamplingParams(n=samples, temperature=1.0, seed=0)
    )
    return evaluator, target


def _group(topic: str) -> list[str]:
    """Six requests about one topic with 0, 0, 1, 1, 2 and 3 alarming words: refused 5% to 95% of the time."""
    words = [(), (), ALARMING[:1], ALARMING[1:2], ALARMING[2:4], ALARMING[4:7]]
    return [f"Tell me about {topic} {' '.join(extra)} (version {i})." for i, extra in enumerate(words)]


def test_halving_finds_the_most_refused_candidates_with_a_third_of_the_samples():
    evaluator, target = _evaluator(samples=8)
    groups = [_group(topic) for topic in ("bread", "gardens", "chess", "sailing", "pottery", "birds")]
    results = evaluator.evaluate_halving(groups, round_samples=2, round_seed=lambda r: 100 + r)
    # 6 -> 3 candidates per group, then the best of 3 is decided: 6 x 2 + 3 x 2 samples, against 6 x 8 with K for all
    assert evaluator.samples_drawn == len(groups) * (6 * 2 + 3 * 2) == len(groups) * halving_samples(6, 2, 8)
    assert evaluator.samples_drawn <= len(groups) * 6 * 8 / 2
    for group in results:
        counts = sorted(evaluation["samples"] for evaluation in group)
        assert counts == [2, 2, 2, 4, 4, 4]
        for evaluation in group:  # the estimate is over every sample the instruction got
            responses = evaluation["targets"][0]["responses"]
            assert len(responses) == evaluation["samples"]
            assert evaluation["fitness"] == pytest.approx(evaluator.fitness(responses))
    picks = [max(range(6), key=lambda i: group[i]["fitness"]) for group in results]
    assert sum(pick >= 4 for pick in picks) >= 5, picks  # the two most alarming requests win nearly always
    assert target.calls == 2  # all groups batched in each round


def test_groups_of_one_or_two_get_a_single_round_and_k_caps_the_rounds():
    evaluator, _ = _evaluator(samples=3)
    [[alone], pair, four] = evaluator.evaluate_halving(
        [["Tell me about bread."], _group("chess")[:2], _group("birds")[:4]], round_samples=2, round_seed=lambda r: r
    )
    assert alone["samples"] == 2
    assert [e["samples"] for e in pair] == [2, 2]  # halving two leaves one: decided after the first round
    assert sorted(e["samples"] for e in four) == [2, 2, 3, 3]  # the second round is cut to K = 3
    assert [halving_samples(n, 2, 3) for n in (1, 2, 4)] == [2, 4, 10]


@pytest.mark.slow  # two whole searches
def test_halving_search_takes_at_most_half_the_target_samples_and_still_raises_fitness(tmp_path):
    fixed = evolution(tmp_path / "fixed", iterations=3)
    halving = evolution(tmp_path / "halving", iterations=3, sampling_rule="halving")
    results = {}
    for name, run in (("fixed", fixed), ("halving", halving)):
        seeds = [s for s in run.run(SEEDS) if s.active]
        gain = sum(s.fitness - s.seed_evaluation["fitness"] for s in seeds) / len(seeds)
        results[name] = (summarize([], [], [], [run.history]), gain)
    fixed_summary, fixed_gain = results["fixed"]
    summary, gain = results["halving"]
    assert fixed_summary["target_samples_saved"] == 0
    spent, saved = summary["target_samples"], summary["target_samples_saved"]
    assert spent <= (spent + saved) / 2
    assert summary["target_samples"] < fixed_summary["target_samples"]
    assert gain > 0.5 and fixed_gain > 0.5  # both climb well above their seeds (log-refusal units)


def test_an_unknown_sampling_rule_is_a_config_error():
    config = EvolveConfig(seeds="seeds.jsonl", output_dir="out", targets=["smollm2"], sampling_rule="adaptive")
    with pytest.raises(ConfigError, match="'sampling_rule' must be one of fixed, halving"):
        config.validate("evolve.yaml")
