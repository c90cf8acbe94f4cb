"""The openai-compatible backend against the loopback test server: sampling, logprobs, order, retries through
every scripted fault, the concurrency bound, the retry budget, the start-up reachability check, API-key handling
and clean server shutdown."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request

import pytest

from evoalign.errors import ModelError
from evoalign.judges import CascadeJudge, LLMJudge
from evoalign.models.base import SamplingParams
from evoalign.models.cache import CachedChatModel
from evoalign.models.openai_backend import OpenAIChatModel
from evoalign.testing.openai_server import FaultPlan, OpenAIServer

FAST = {"backoff_base": 0.01, "backoff_max": 0.02}
SECRET = "sk-test-very-secret-0123456789"


def conversations(count: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"question {i}"}] for i in range(count)]


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def server():
    with OpenAIServer() as running:
        yield running


def make_model(server: OpenAIServer, **options) -> OpenAIChatModel:
    return OpenAIChatModel("test-model", base_url=server.base_url, **{**FAST, **options})


def test_generate_n_samples_with_logprobs_in_input_order():
    def responder(messages, request):
        return [f"answer {i} to {messages[-1]['content']}" for i in range(request.get("n", 1))]

    # later prompts answer first, so input order is not completion order
    def latency(request):
        return 0.1 - 0.004 * int(request["messages"][-1]["content"].split()[-1])

    with OpenAIServer(responder, latency=latency) as server:
        model = make_model(server)
        params = SamplingParams(n=3, temperature=0.7, top_p=0.9, top_k=40, max_new_tokens=50, seed=7, stop=("zz",))
        results = model.generate(conversations(20), params, desc="test")
        model.close()

    assert [[s.text for s in samples] for samples in results] == [
        [f"answer {j} to question {i}" for j in range(3)] for i in range(20)
    ]
    sample = results[0][0]
    assert "".join(sample.tokens) == sample.text
    assert sample.num_tokens == len(sample.tokens) == 5
    assert sample.logprob_sum == pytest.approx(sum(sample.token_logprobs))
    assert all(lp < 0 for lp in sample.token_logprobs)
    assert [len(top) for top in sample.top_logprobs] == [5] * 5
    assert sample.top_logprobs[0][sample.tokens[0]] == sample.token_logprobs[0]
    assert sample.finish_reason == "stop"
    request = server.requests[0]
    assert {k: request[k] for k in ("n", "temperature", "top_p", "top_k", "max_tokens", "seed", "stop")} == {
        "n": 3,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 40,
        "max_tokens": 50,
        "seed": 7,
        "stop": ["zz"],
    }
    assert request["logprobs"] is True and request["top_logprobs"] == 5


def test_length_stop_and_no_logprobs(server):
    model = make_model(server)
    [[long]] = model.generate(conversations(1), SamplingParams(max_new_tokens=2, logprobs=False))
    [[cut]] = model.generate(conversations(1), SamplingParams(stop=("tion",)))
    assert (long.text, long.finish_reason) == ("Echo: question", "length")
    assert long.logprob_sum is None and long.tokens is None and long.num_tokens is None
    assert "logprobs" not in server.requests[0] and "n" not in server.requests[0]
    assert (cut.text, cut.finish_reason) == ("Echo: ques", "stop")


def test_fewer_choices_than_n_are_topped_up():
    # like llama.cpp, this server ignores n and always returns one choice
    with OpenAIServer(lambda messages, request: ["only one"] if request.get("n", 1) > 1 else "only one") as server:
        model = make_model(server)
        [samples] = model.generate(conversations(1), SamplingParams(n=3, seed=1))
    assert [s.text for s in samples] == ["only one"] * 3
    assert [r.get("n", 1) for r in server.requests] == [3, 2, 1]
    assert [r["seed"] for r in server.requests] == [1, 2, 3]


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("429-bare", "429"),
        ("500", "500"),
        ("503", "503"),
        ("malformed", "malformed"),
        ("truncated", "connection"),
        ("empty-choices", "empty_choices"),
        ("disconnect", "connection"),
        ("hang", "timeout"),
    ],
)
def test_retries_through_fault(fault, kind):
    # only a hang needs the client's timeout to end it; a short one elsewhere times out healthy requests on a busy machine
    with OpenAIServer(faults=FaultPlan(script=[fault, fault])) as server:
        model = make_model(server, timeout=0.5 if fault == "hang" else 10.0)
        results = model.generate(conversations(3))
    assert [samples[0].text for samples in results] == [f"Echo: question {i}" for i in range(3)]
    assert model.stats["retries"] == {kind: 2}
    assert model.stats["failures"] == 0
    assert server.stats["faults"] == {fault: 2}
    assert server.stats["requests"] == 5


def test_retry_after_is_honoured():
    arrivals: list[float] = []

    def latency(request):
        arrivals.append(time.monotonic())
        return 0.0

    with OpenAIServer(latency=latency, faults=FaultPlan(script=["429"], retry_after=0.6)) as server:
        model = make_model(server)
        model.generate(conversations(1))
    assert len(arrivals) == 2
    assert 0.6 <= arrivals[1] - arrivals[0] < 1.5
    assert model.stats["retries"] == {"429": 1}


def test_random_faults_are_reproducible_and_counted():
    def run() -> tuple[dict, dict]:
        with OpenAIServer(faults=FaultPlan(rate=0.3, seed=3)) as server:
            model = make_model(server, max_concurrency=8)
            results = model.generate(conversations(40))
        assert [samples[0].text for samples in results] == [f"Echo: question {i}" for i in range(40)]
        return server.stats["faults"], dict(model.stats["retries"])

    (faults, retries), (faults_again, _) = run(), run()
    assert faults == faults_again
    assert sum(faults.values()) == sum(retries.values()) > 0


def test_concurrency_limit_is_respected_and_reached():
    with OpenAIServer(latency=0.05) as server:
        model = make_model(server, max_concurrency=4)
        model.generate(conversations(32))
    assert server.stats["max_in_flight"] == 4


def test_latency_does_not_serialise_64_requests():
    """All 64 requests are in flight at once (the throughput this gives: benchmarks/bench_openai.py)."""
    with OpenAIServer(latency=1.0) as server:  # long enough that a loaded machine starts all 64 before one ends
        model = make_model(server, max_concurrency=64)
        model.generate(conversations(64))
    assert server.stats["max_in_flight"] == 64


def test_retry_budget_exhausted_raises_one_line_model_error():
    with OpenAIServer(faults=FaultPlan(script=["500"] * 3)) as server:
        model = make_model(server, max_retries=2)
        with pytest.raises(ModelError) as caught:
            model.generate(conversations(1))
    message = str(caught.value)
    assert "openai:test-model@" + server.base_url in message
    assert "after 3 attempt(s)" in message and "HTTP 500" in message
    assert "\n" not in message
    assert model.stats["failures"] == 1 and model.stats["retries"] == {"500": 2}


def test_client_errors_are_not_retried(server):
    model = OpenAIChatModel("test-model", base_url=server.base_url + "/nope", **FAST)
    with pytest.raises(ModelError, match=r"after 1 attempt\(s\): HTTP 404"):
        model.generate(conversations(1))
    assert model.stats["requests"] == 1


def test_logprobs_rejected_with_400_fall_back_once_and_are_remembered():
    with OpenAIServer(reject_logprobs=True) as server:
        model = make_model(server)
        [[first]] = model.generate(conversations(1))
        [[second]] = model.generate(conversations(1))
    assert first.text == second.text == "Echo: question 0"
    assert first.logprob_sum is None and second.tokens is None
    assert model.stats["logprobs_rejected"] is True
    assert server.stats["faults"] == {"logprobs-rejected": 1}
    assert [bool(r.get("logprobs")) for r in server.requests] == [True, False, False]


def test_unreachable_server_raises_model_error_naming_spec_and_url():
    with OpenAIServer() as server:
        url = server.base_url
    model = OpenAIChatModel("test-model", base_url=url, max_retries=1, **FAST)
    with pytest.raises(ModelError) as caught:
        model.generate(conversations(2))
    message = str(caught.value)
    assert f"openai:test-model@{url}" in message and "after 2 attempt(s)" in message and "connection" in message
    assert "\n" not in message


def test_check_reaches_the_server_directly_through_the_cache_and_through_judges(tmp_path):
    with OpenAIServer() as server:
        model = make_model(server, max_retries=1)
        cached = CachedChatModel(model, tmp_path / "cache.sqlite")
        checked = (model, cached, LLMJudge(cached), CascadeJudge(cached))
        for each in checked:
            each.check()
        assert server.stats["requests"] == 0, "a check asks for GET /models, never for a completion"
        url = server.base_url
    assert not (tmp_path / "cache.sqlite").exists(), "the cache file appears on first use"
    for each in checked:
        with pytest.raises(ModelError, match=f"{url}.*after 2 attempt"):
            each.check()
    model.close()


def test_missing_api_key_variable_is_named(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("EVOALIGN_TEST_KEY", raising=False)
    with pytest.raises(ModelError, match="EVOALIGN_TEST_KEY"):
        OpenAIChatModel("test-model", base_url="http://127.0.0.1:1/v1", api_key_env="EVOALIGN_TEST_KEY")
    with pytest.raises(ModelError, match="OPENAI_API_KEY"):
        OpenAIChatModel("gpt-4o")
    assert OpenAIChatModel("local", base_url="http://127.0.0.1:1/v1").identity == "openai:local@http://127.0.0.1:1/v1"


def test_api_key_never_leaks(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("EVOALIGN_TEST_KEY", SECRET)
    with OpenAIServer(faults=FaultPlan(script=["503"] * 2)) as server:
        model = make_model(server, api_key_env="EVOALIGN_TEST_KEY", max_retries=1)
        with pytest.raises(ModelError) as caught:
            model.generate(conversations(1))
    assert (
        OpenAIChatModel("gpt-4o", api_key_env="EVOALIGN_TEST_KEY").identity
        == "openai:gpt-4o@https://api.openai.com/v1"
    )
    for text in (repr(model), model.identity, model.spec, str(caught.value), str(model.stats)):
        assert SECRET not in text


def test_generate_from_threads_and_inside_a_running_loop(server):
    model = make_model(server)
    results: list = []
    worker = threading.Thread(target=lambda: results.append(model.generate(conversations(2))))
    worker.start()
    worker.join()

    async def inside_loop():
        return model.generate(conversations(2))

    results.append(asyncio.run(inside_loop()))
    results.append(model.generate(conversations(2)))
    assert len({str(r) for r in results}) == 1
    model.close()
    assert model.generate(conversations(1))[0][0].text == "Echo: question 0"
    model.close()


def test_score_is_not_supported(server):
    with pytest.raises(NotImplementedError, match="teacher-force"):
        make_model(server).score(conversations(1), ["x"])


def test_server_stops_promptly_with_hung_handlers():
    server = OpenAIServer(faults=FaultPlan(script=["hang"] * 4)).start()
    model = make_model(server, timeout=30, max_retries=0)
    worker = threading.Thread(target=lambda: pytest.raises(ModelError, model.generate, conversations(4)))
    worker.start()
    while server.stats["in_flight"] < 4:
        time.sleep(0.01)
    start = time.monotonic()
    server.stop()
    assert time.monotonic() - start < 10, "stop must not wait for the hung handlers' 30 s request timeout"
    worker.join(timeout=5)
    assert not worker.is_alive()


def test_server_answers_in_the_openai_shape(server):
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "a b"}],
        "n": 2,
        "logprobs": True,
        "top_logprobs": 3,
    }
    request = urllib.request.Request(server.base_url + "/chat/completions", data=json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=5) as response:
        completion = json.loads(response.read())
    assert [choice["index"] for choice in completion["choices"]] == [0, 1]
    choice = completion["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Echo: a b"}
    assert choice["finish_reason"] == "stop"
    assert [entry["token"] for entry in choice["logprobs"]["content"]] == ["Echo:", " a", " b"]
    assert all(len(entry["top_logprobs"]) == 3 for entry in choice["logprobs"]["content"])
    assert completion["usage"] == {"prompt_tokens": 2, "completion_tokens": 6, "total_tokens": 8}


def test_fault_plan_rejects_unknown_faults():
    with pytest.raises(ValueError, match="unknown fault"):
        FaultPlan(script=["ok", "teapot"])
