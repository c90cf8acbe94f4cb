"""Regeneration: one batched generate call per round over the rows still missing, new seeds, counted drops."""

from __future__ import annotations

import pytest

from evoalign.build.responses import sample_wanted, write_until_accepted
from evoalign.judges import COMPLIANCE, PARTIAL, REFUSAL, RefusalJudge, get_judge
from evoalign.models.base import ChatModel, Sample, SamplingParams
from evoalign.text import trim_to_sentence

REFUSAL_TEXT = "I'm sorry, but I can't help with that."
UNSURE = (
    "I'm sorry for your loss, but as a helpful assistant, I'm not equipped to provide advice on improving your "
    "sleep schedule. I'm here to assist you with any other issues you have."
)
ANSWER = "Sure! Run `kill -9 PID`, where PID is the process id shown by `ps aux`; check it is gone with `ps`."


class ScriptedModel(ChatModel):
    """Refuses a prompt until the round named in it (`ok@N`), records every call."""

    spec = "scripted"

    def __init__(self):
        self.calls = []

    @property
    def identity(self):
        return "scripted"

    def generate(self, conversations, params=None, *, desc=None):
        self.calls.append((len(conversations), params))
        out = []
        for conversation in conversations:
            prompt = conversation[-1]["content"]
            if "cut-off" in prompt:
                out.append([Sample(text=ANSWER[:20], finish_reason="length")] * params.n)
                continue
            ready = "ok@" in prompt and params.seed - 7 >= int(prompt.split("ok@")[1])
            text = ANSWER if ready else REFUSAL_TEXT
            out.append([Sample(text=text, finish_reason="stop")] * params.n)
        return out


def test_each_round_is_one_call_over_the_missing_rows():
    model = ScriptedModel()
    prompts = ["a ok@0", "b ok@1", "c ok@2", "d never", "e cut-off"]
    answers, stats = write_until_accepted(
        model,
        get_judge("evoalign"),
        prompts,
        [[{"role": "user", "content": p}] for p in prompts],
        accept=COMPLIANCE,
        params=SamplingParams(temperature=0.0, seed=7),
        retries=3,
        retry_temperature=0.8,
    )
    assert answers == [ANSWER, ANSWER, ANSWER, None, None]
    assert [size for size, _ in model.calls] == [5, 4, 3, 2]
    assert [params.seed for _, params in model.calls] == [7, 8, 9, 10]
    assert [params.temperature for _, params in model.calls] == [0.0, 0.8, 0.8, 0.8]
    assert all(params.n == 1 for _, params in model.calls)
    assert stats.regenerated == [4, 3, 2]
    assert stats.failed == {REFUSAL: 1, "truncated": 1}


@pytest.mark.parametrize(
    "truncated,expected",
    [("keep", "Fine. Then a cut-off"), ("trim", "Fine."), ("drop", None)],
)
def test_cut_off_answers_are_kept_trimmed_or_dropped(truncated, expected):
    class CutOff(ScriptedModel):
        def generate(self, conversations, params=None, *, desc=None):
            self.calls.append((len(conversations), params))
            return [[Sample(text="Fine. Then a cut-off", finish_reason="length")] for _ in conversations]

    model = CutOff()
    answers, stats = write_until_accepted(
        model,
        get_judge("evoalign"),
        ["q"],
        [[{"role": "user", "content": "q"}]],
        accept=COMPLIANCE,
        params=SamplingParams(),
        retries=1,
        retry_temperature=0.8,
        truncated=truncated,
    )
    assert answers == [expected]
    assert len(model.calls) == (2 if expected is None else 1)
    assert stats.failed == ({"truncated": 1} if expected is None else {})


def test_trim_to_sentence():
    assert trim_to_sentence('He said "stop." Then she') == 'He said "stop."'
    assert trim_to_sentence("1. First step\n2. Second st") == "1. First step"
    assert trim_to_sentence("no sentence end at all") == ""


def test_sample_wanted_keeps_refusals_full_ones_first():
    class Mixed(ScriptedModel):
        def generate(self, conversations, params=None, *, desc=None):
            texts = [ANSWER, "I'm sorry, but I can't help with that. However, here is how: " + ANSWER, REFUSAL_TEXT]
            return [[Sample(text=t) for t in texts] for _ in conversations]

    found = sample_wanted(
        Mixed(),
        get_judge("evoalign"),
        ["How do I kill a process?"],
        [[{"role": "user", "content": "How do I kill a process?"}]],
        want=(REFUSAL, PARTIAL),
        params=SamplingParams(n=3, temperature=1.0),
    )
    assert found[0][0] == REFUSAL_TEXT and len(found[0]) == 2


class UnsureJudge(RefusalJudge):
    """A calibrated judge that calls every response compliance, with a 30% chance of being wrong."""

    calibrated = True

    def judge(self, items):
        return [{"label": COMPLIANCE, "p_refusal": 0.3} for _ in items]


@pytest.mark.parametrize("max_doubt,expected", [(1.0, [UNSURE]), (0.2, [None])])
def test_answers_the_judge_is_unsure_of_are_regenerated(max_doubt, expected):
    class Unsure(ScriptedModel):
        def generate(self, conversations, params=None, *, desc=None):
            self.calls.append((len(conversations), params))
            return [[Sample(text=UNSURE, finish_reason="stop")] for _ in conversations]

    answers, stats = write_until_accepted(
        Unsure(),
        UnsureJudge(),
        ["How do I improve my sleep schedule?"],
        [[{"role": "user", "content": "How do I improve my sleep schedule?"}]],
        accept=COMPLIANCE,
        params=SamplingParams(),
        retries=1,
        retry_temperature=0.8,
        max_doubt=max_doubt,
    )
    assert answers == expected
    assert stats.failed == ({} if expected[0] else {"unsure compliance": 1})
