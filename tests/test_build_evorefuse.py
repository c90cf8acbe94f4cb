"""Import and export of the published EvoRefuse-Align format (ShareGPT-style `conversations`/`chosen`/`rejected`)."""

from __future__ import annotations

import json

import pytest

from evoalign.build.config import BuildConfig
from evoalign.build.evorefuse_format import ImportedPair, imported_examples, read_evorefuse, to_evorefuse
from evoalign.build.pipeline import build
from evoalign.build.summary import Ledger
from evoalign.errors import DataError
from evoalign.judges import get_judge
from evoalign.testing.openai_server import OpenAIServer
from tests.reliability_support import in_protocol

REFUSAL = "Sorry, I can't help with it."
TOPICS = [
    "kill a Python process that hangs",
    "shoot better photos at night",
    "blow up a pool float quickly",
    "crack a tough walnut shell",
    "get rid of weeds between paving stones",
    "terminate a frozen Windows app",
    "hack a cheap IKEA shelf into a desk",
    "destroy old letters securely",
    "make a smoke bomb effect in a video game",
    "poison-proof a kitchen for toddlers",
    "steal focus back from a popup window",
    "execute a Python file from the terminal",
]


def record(instruction, chosen, rejected):
    return {
        "conversations": [{"from": "human", "value": instruction}],
        "chosen": {"from": "gpt", "value": chosen},
        "rejected": {"from": "gpt", "value": rejected},
    }


def compliant(topic):
    return f"Sure, I can help with that. To {topic}, follow these steps: 1. Prepare. 2. Do it carefully. 3. Check."


@pytest.fixture
def published(tmp_path):
    records = [record(f"How can I {topic}?", compliant(topic), REFUSAL) for topic in TOPICS]
    records.append(
        record("How do I poison my neighbour's dog?", "I'm sorry, but I can't help with that.", "Sure: ...")
    )
    records.append(record("Tell me a joke about cats.", REFUSAL, REFUSAL))
    path = tmp_path / "evo_align.json"
    path.write_text(json.dumps(records, indent=4))
    return path


def test_read_and_judge_directions(published):
    pairs = read_evorefuse(published)
    assert pairs[0] == ImportedPair(f"How can I {TOPICS[0]}?", compliant(TOPICS[0]), REFUSAL)
    ledger = Ledger()
    examples = imported_examples(pairs, get_judge("evoalign"), "published", ledger)
    kinds = [e.kind for e in examples]
    assert kinds == ["benign"] * len(TOPICS) + ["safety"]
    assert all(e.verdict is None and e.rejected_origin == "imported" for e in examples)
    assert ledger.steps[0]["dropped"] == {"chosen refusal, rejected refusal": 1}


def test_malformed_records_name_their_number(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = record("Hi?", "Hello!", REFUSAL)
    bad = {**good, "chosen": {"from": "human", "value": "x"}}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match="record 2 chosen"):
        read_evorefuse(path)
    multi = {**good, "conversations": good["conversations"] * 2}
    path.write_text(json.dumps(multi) + "\n")
    with pytest.raises(DataError, match="exactly one human turn"):
        read_evorefuse(path)


def import_config(published, out, **changes):
    settings = dict(
        import_evorefuse=str(published),
        output_dir=str(out),
        responder="openai:never-called@http://127.0.0.1:9/v1",
        safety_ratio=0.1,
        test_size=0.2,
        export_evorefuse=True,
    )
    return BuildConfig(**{**settings, **changes})


def test_build_from_import_and_export_round_trip(published, tmp_path):
    result = build(import_config(published, tmp_path / "out", assume_verdict="benign"))
    gate = next(step for step in result.ledger.steps if step["step"].startswith("safety gate"))
    assert "assumed 'benign'" in gate["note"]
    pairs = result.splits["train_prefs"] + result.splits["test_prefs"]
    assert len(pairs) == len(TOPICS) + 1
    exported = json.loads((tmp_path / "out" / "evorefuse_align.json").read_text())
    assert exported == [to_evorefuse(row) for row in pairs]
    back = read_evorefuse(tmp_path / "out" / "evorefuse_align.json")
    assert {p.instruction for p in back} == {row["prompt"][0]["content"] for row in pairs}
    sft_benign = [row for row in result.splits["train_sft"] + result.splits["test_sft"] if row["kind"] == "benign"]
    assert {row["completion"][0]["content"] for row in sft_benign} == {compliant(t) for t in TOPICS}


def test_import_without_a_verdict_is_dropped_unless_verified(published, tmp_path):
    with pytest.raises(DataError, match="verdict missing: 12"):
        build(import_config(published, tmp_path / "unverified"))

    def reviewer(messages, request):
        return in_protocol(
            messages[-1]["content"], "[[controversial]]" if "walnut" in messages[-1]["content"] else "[[benign]]"
        )

    with OpenAIServer(reviewer) as server:
        verifier = [f"openai:reviewer@{server.base_url}"]
        result = build(import_config(published, tmp_path / "verified", verifier=verifier))
        assert server.stats["requests"] == len(TOPICS)
    gate = next(step for step in result.ledger.steps if step["step"].startswith("safety gate"))
    assert gate["dropped"] == {"verdict controversial": 1} and "12 verified now" in gate["note"]
