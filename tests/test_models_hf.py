"""The hf backend on the real bundled model and a tiny random model: batching, log-probs, sampling, errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from evoalign.errors import DataError, ModelError
from evoalign.models import SamplingParams, load_model

PROMPTS = [
    "How do I kill a Python process?",
    "Write a haiku about tea.",
    "What is 2+2?",
    "Give me three tips for a job interview, please, with a short explanation of each one.",
    "How can I shoot a good photo at night?",
    "Why is the sky blue?",
]


def convs(prompts=PROMPTS):
    return [[{"role": "user", "content": p}] for p in prompts]


@pytest.mark.slow  # the real bundled model
def test_batched_greedy_equals_one_at_a_time(smollm2):
    params = SamplingParams(max_new_tokens=24)
    batched = smollm2.generate(convs(), params)
    single = [smollm2.generate([c], params)[0] for c in convs()]
    assert [b[0].text for b in batched] == [s[0].text for s in single]
    for b, s in zip(batched, single):
        assert b[0].logprob_sum == pytest.approx(s[0].logprob_sum, abs=1e-3)
    assert "kill" in batched[0][0].text.lower()


@pytest.mark.slow  # the real bundled model
def test_sample_logprob_matches_teacher_forced_score(smollm2):
    samples = smollm2.generate(convs(), SamplingParams(max_new_tokens=24))
    scores = smollm2.score(convs(), [s[0].text for s in samples])
    diffs = [abs(s[0].logprob_sum - c.logprob_sum) for s, c in zip(samples, scores)]
    tokens = sum(s[0].num_tokens for s in samples)
    assert sum(diffs) / tokens < 1e-3
    assert all(s[0].num_tokens == c.num_tokens for s, c in zip(samples, scores))
    assert all(s[0].logprob_sum < 0 for s in samples)


@pytest.mark.slow  # the real bundled model
def test_logprobs_are_unwarped_model_logprobs(smollm2):
    """Sampling at low temperature must not change the reported log-prob of the same text."""
    cold = smollm2.generate(convs()[:2], SamplingParams(temperature=0.05, max_new_tokens=12, seed=3))
    scores = smollm2.score(convs()[:2], [s[0].text for s in cold])
    for sample, score in zip(cold, scores):
        assert sample[0].logprob_sum == pytest.approx(score.logprob_sum, abs=0.05)


@pytest.mark.slow  # the real bundled model
def test_sampling_is_reproducible_and_batch_invariant(smollm2):
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=12, seed=7)
    together = smollm2.generate(convs(), params)
    alone = smollm2.generate(convs()[2:3], params)
    assert [s.text for s in together[2]] == [s.text for s in alone[0]]
    assert len({s.text for s in together[1]}) > 1, "n samples should differ"
    other_seed = smollm2.generate(convs()[2:3], params.replace(seed=8))
    assert [s.text for s in other_seed[0]] != [s.text for s in alone[0]]


def test_n_samples_and_stop_strings(tiny_model):
    out = tiny_model.generate(convs()[:2], SamplingParams(n=4, temperature=1.0, max_new_tokens=8))
    assert [len(row) for row in out] == [4, 4]
    assert all(s.num_tokens <= 8 and s.finish_reason in ("stop", "length") for row in out for s in row)
    greedy = tiny_model.generate(convs()[:1], SamplingParams(n=3, max_new_tokens=5))
    assert len({s.text for s in greedy[0]}) == 1


def test_prompt_longer_than_context_is_a_clear_error(tiny_model):
    with pytest.raises(DataError, match="conversation 0: the prompt .* exceeds the model context of 512"):
        tiny_model.generate(convs(["word " * 600]), SamplingParams(max_new_tokens=4))


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="model path not found"):
        load_model(f"hf:{tmp_path}/nope")
    with pytest.raises(ModelError, match="unknown model spec"):
        load_model("gpt:foo")


def test_adapter_changes_outputs(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    plain = load_model(f"hf:{tiny_model_dir}")
    adapted = load_model({"spec": f"hf:{tiny_model_dir}", "adapter": str(tmp_path / "adapter")})
    assert adapted.identity != plain.identity
    a = plain.score(convs()[:1], ["hello there"])[0].logprob_sum
    b = adapted.score(convs()[:1], ["hello there"])[0].logprob_sum
    assert a != pytest.approx(b)


@pytest.mark.subprocess
def test_import_is_light():
    """Importing evoalign and its model layer imports neither torch nor transformers (load times:
    benchmarks/bundled_model.py)."""
    code = "import sys; import evoalign, evoalign.models; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_shared_prefix_cache_gives_the_same_outputs(tiny_model_dir):
    from evoalign.prompts import with_condition

    conversations = with_condition(PROMPTS, "refusal_prone")
    plain = load_model({"spec": f"hf:{tiny_model_dir}", "min_shared_prefix": 10**9})
    cached = load_model({"spec": f"hf:{tiny_model_dir}", "min_shared_prefix": 8})
    for params in (SamplingParams(max_new_tokens=10), SamplingParams(n=3, temperature=1.0, max_new_tokens=10)):
        a, b = plain.generate(conversations, params), cached.generate(conversations, params)
        assert [[s.text for s in row] for row in a] == [[s.text for s in row] for row in b]
        for row_a, row_b in zip(a, b):
            for x, y in zip(row_a, row_b):
                assert x.logprob_sum == pytest.approx(y.logprob_sum, abs=1e-3)


@pytest.mark.slow  # the real bundled model
def test_samples_sharing_one_prompt_prefill_match_greedy(smollm2):
    """n samples reuse one prefill of their prompt; with top_k=1 each must be the greedy text and log-probs."""
    greedy = smollm2.generate(convs(), SamplingParams(max_new_tokens=16))
    sampled = smollm2.generate(convs(), SamplingParams(n=3, temperature=1.0, top_k=1, max_new_tokens=16, seed=1))
    for g, row in zip(greedy, sampled):
        assert [s.text for s in row] == [g[0].text] * 3
        for s in row:
            assert s.logprob_sum == pytest.approx(g[0].logprob_sum, abs=1e-3)


def test_prefill_and_scoring_project_only_the_positions_they_use(tiny_model_dir):
    """Prefill and scoring ask for the logits of the positions they read, not batch x length x vocabulary, and
    give the same samples and scores as with every position's logits (`logits_to_keep` left out)."""
    from evoalign.prompts import with_condition

    conversations = with_condition(PROMPTS, "refusal_prone")
    lean = load_model({"spec": f"hf:{tiny_model_dir}", "min_shared_prefix": 8})
    full = load_model({"spec": f"hf:{tiny_model_dir}", "min_shared_prefix": 8})
    full._keeps_logits = False  # every position projected onto the vocabulary, as before
    widths = []
    lean.model.register_forward_hook(lambda module, args, output: widths.append(output.logits.shape[1]))
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=10, seed=5)
    a, b = lean.generate(conversations, params), full.generate(conversations, params)
    assert [[s.text for s in row] for row in a] == [[s.text for s in row] for row in b]
    assert [[s.token_logprobs for s in row] for row in a] == [[s.token_logprobs for s in row] for row in b]
    assert max(widths) == 1  # prefix, prompts and every decoding step: one position each

    responses = [row[0].text for row in a]
    widths.clear()
    lean_scores, full_scores = lean.score(conversations, responses), full.score(conversations, responses)
    longest = max(len(lean.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses)
    assert max(widths) == longest + 1
    for x, y in zip(lean_scores, full_scores):
        assert x.num_tokens == y.num_tokens
        assert x.logprob_sum == pytest.approx(y.logprob_sum, abs=1e-5)
