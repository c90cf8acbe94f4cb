"""Data-quality metrics: lexical diversity, Self-BLEU against a brute-force reference, embeddings, the CLI."""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import pytest

from evoalign.errors import run_main
from evoalign.eval.data_quality import distinct_n, main, mean_pairwise_cosine_distance, msttr, self_bleu, words


def test_words_lowercase_and_keep_contractions():
    assert words("Don't KILL the Python-process, ok?") == ["don't", "kill", "the", "python", "process", "ok"]


def test_msttr_over_complete_segments_and_short_text():
    tokens = list("abcab") + list("ccccc") + list("xyz")  # the last 3 tokens are an incomplete segment
    result = msttr(tokens, window=5)
    assert result["value"] == pytest.approx((3 / 5 + 1 / 5) / 2) and result["segments"] == 2
    short = msttr(list("aab"), window=800)
    assert short["value"] == pytest.approx(2 / 3) and short["segments"] == 0
    assert msttr([], 800)["value"] is None


def test_distinct_n():
    docs = [["a", "b", "a"], ["a", "b"]]
    assert distinct_n(docs, 1) == pytest.approx(2 / 5)
    assert distinct_n(docs, 2) == pytest.approx(2 / 3)
    assert distinct_n([["a"]], 2) is None


def _reference_bleu(hypothesis, references, max_n=4, epsilon=0.1):
    """Multi-reference sentence BLEU with nltk's method-1 smoothing, written the slow, obvious way."""

    def grams(tokens, n):
        return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))

    logs = []
    for n in range(1, max_n + 1):
        own = grams(hypothesis, n)
        best = Counter()
        for reference in references:
            best |= grams(reference, n)
        matched = sum(min(count, best[gram]) for gram, count in own.items())
        if n == 1 and matched == 0:
            return 0.0
        logs.append(math.log((matched or epsilon) / max(1, sum(own.values()))))
    closest = min((len(r) for r in references), key=lambda size: (abs(size - len(hypothesis)), size))
    brevity = 1.0 if len(hypothesis) > closest else math.exp(1 - closest / len(hypothesis))
    return brevity * math.exp(sum(logs) / max_n)


def test_self_bleu_matches_the_pairwise_definition():
    rng = random.Random(0)
    vocabulary = "how do i kill a python process in the shell fast".split()
    docs = [[rng.choice(vocabulary) for _ in range(rng.randint(3, 12))] for _ in range(25)]
    docs += [docs[0][:], docs[1][:5]]  # exact and partial duplicates exercise the "other than itself" logic
    expected = sum(_reference_bleu(doc, docs[:i] + docs[i + 1 :]) for i, doc in enumerate(docs)) / len(docs)
    assert self_bleu(docs) == pytest.approx(expected, rel=1e-12)


def test_self_bleu_extremes():
    same = [["kill", "the", "python", "process", "now"]] * 3
    assert self_bleu(same) == pytest.approx(1.0)
    assert self_bleu([["a", "b", "c", "d"], ["w", "x", "y", "z"]]) == 0.0
    assert self_bleu([["only", "one"]]) is None


def test_mean_pairwise_cosine_distance():
    import torch

    vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert mean_pairwise_cosine_distance(vectors) == pytest.approx(1 - 1 / 3)
    assert mean_pairwise_cosine_distance(vectors[:1]) is None


def test_embeddings_from_the_bundled_model():
    from evoalign.eval.data_quality import default_embedding_model, embed

    vectors = embed(
        ["How do I kill a Python process?", "How can I stop a Python process?", "A poem about autumn"],
        default_embedding_model(),
    )
    assert vectors.shape == (3, 384)
    assert vectors.norm(dim=-1).tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])


def test_cli_with_target_and_verifier(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "evolved.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"How do I shoot photo number {i} at night?"}) + "\n" for i in range(6))
    )
    argv = [
        "--data", json.dumps({"path": str(data), "fields": {"instruction": "prompt"}}),
        "--targets", f"[hf:{tiny_model_dir}]",
        "--condition", "safety_prior",
        "--verifier", f"[hf:{tiny_model_dir}]",
        "--max_new_tokens", "4",
        "--output_dir", str(tmp_path / "out"),
    ]  # fmt: skip
    assert run_main(main, argv) == 0
    result = json.loads((tmp_path / "out" / "data_quality.json").read_text())
    assert result["n"] == 6 and result["msttr"]["segments"] == 0
    assert set(result["distinct"]) == {"1", "2", "3"} and 0 < result["self_bleu"] < 1
    assert 0 < result["embedding"]["mean_pairwise_cosine_distance"] < 1
    (target,) = result["targets"]
    assert target["condition"] == "safety_prior" and target["n"] == 6 and target["mean_logprob"] < 0
    assert result["verifier"]["safe"]["n"] == 6 and sum(result["verifier"]["verdicts"].values()) == 6
    out = capsys.readouterr().out
    assert "refusal-trigger rate on hf:" in out and "verifier safe-rate" in out


def test_cli_requires_data(capsys):
    assert run_main(main, []) == 2
    assert "'data' is required" in capsys.readouterr().err
