"""The openai-compatible backend: OpenAI itself and vLLM / SGLang / TGI / llama.cpp servers.

Requests run concurrently on a private event loop thread, at most `max_concurrency` in flight, so
`generate()` stays a plain synchronous call from any thread (also one that runs its own event loop) and the
connection pool survives between calls. Each request is retried with exponential backoff and full jitter on
429, 408/409, 5xx, timeouts, dropped connections, malformed or truncated JSON and empty `choices`, waiting at
least the server's `Retry-After`; the openai client's own retries are off so that every retry is counted in
`stats`. When the retry budget is spent, `ModelError` names the model, the URL and the last error. `check()`
asks the server for `GET /models` the same way, so a stage finds an unreachable server before it writes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import threading
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from evoalign.errors import ModelError
from evoalign.models.base import ChatModel, Sample, SamplingParams, Score
from evoalign.progress import progress_bar
from evoalign.prompts import Conversation
from evoalign.secrets import scrub_secrets

DEFAULT_BASE_URL = "https://api.openai.com/v1"
TOP_LOGPROBS = 5
_RETRYABLE_STATUS = {408, 409, 429}
T = TypeVar("T")
logger = logging.getLogger(__name__)


class _AttemptFailed(Exception):
    """One failed request: `kind` names it in stats, `retry_after` is the server's hint in seconds."""

    def __init__(
        self, kind: str, detail: str, *, retryable: bool, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.attempts = 1


class OpenAIChatModel(ChatModel):
    """A chat model behind an OpenAI-compatible `/chat/completions` endpoint.

    `api_key_env` names the environment variable holding the key (default OPENAI_API_KEY; when it is not
    given, a `base_url` is and OPENAI_API_KEY is unset, the key is "EMPTY", as local vLLM servers need none).
    `timeout` is per request in seconds; backoff before retry k (0-based) is uniform in
    [0, min(backoff_max, backoff_base * 2**k)], or the server's Retry-After when that is longer.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        *,
        api_key_env: str | None = None,
        max_concurrency: int = 32,
        max_retries: int = 6,
        timeout: float = 60.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0 or backoff_base < 0 or backoff_max < 0:
            raise ModelError(
                f"openai:{model}: need max_concurrency >= 1, max_retries >= 0, timeout > 0 and backoffs >= 0"
            )
        self.model = model
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        # the spec names the model in roles, judge names, errors and logs: credentials in the URL stay out of it
        self.spec = scrub_secrets(f"openai:{model}@{self.base_url}" if base_url else f"openai:{model}")
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.stats: dict[str, Any] = {"requests": 0, "retries": Counter(), "failures": 0, "logprobs_rejected": False}
        self._api_key = self._resolve_api_key(api_key_env, base_url is not None)
        self._rng = random.Random()
        self._loop_lock = threading.Lock()
        self._loop_thread: _LoopThread | None = None
        self._client: Any = None
        self._semaphore: asyncio.Semaphore | None = None

    def _resolve_api_key(self, api_key_env: str | None, has_base_url: bool) -> str:
        key = os.environ.get(api_key_env or "OPENAI_API_KEY")
        if key:
            return key
        if api_key_env is None and has_base_url:
            return "EMPTY"
        raise ModelError(f"{self.spec}: environment variable {api_key_env or 'OPENAI_API_KEY'} is not set (API key)")

    @property
    def identity(self) -> str:
        return f"openai:{self.model}@{self.base_url}"

    def __repr__(self) -> str:
        return f"OpenAIChatModel({self.model!r}, base_url={self.base_url!r}, max_concurrency={self.max_concurrency})"

    def score(self, conversations: list[Conversation], responses: list[str]) -> list[Score]:
        raise NotImplementedError(
            f"{self.spec}: chat-completions APIs cannot teacher-force given responses; use an hf: model to score"
        )

    def generate(
        self, conversations: list[Conversation], params: SamplingParams | None = None, *, desc: str | None = None
    ) -> list[list[Sample]]:
        if not conversations:
            return []
        return self._run(self._generate_all(conversations, params or SamplingParams(), desc))

    def call_stats(self) -> dict[str, Any]:
        return {
            "requests": self.stats["requests"],
            "retries": dict(self.stats["retries"]),
            "failures": self.stats["failures"],
        }

    def check(self) -> None:
        """Reach the server before any work (GET /models, retried like a request); ModelError when it never answers."""
        try:
            self._run(self._with_retries(self._probe))
        except _AttemptFailed as failure:
            raise self._error(failure) from None

    def close(self) -> None:
        with self._loop_lock:
            loop_thread, self._loop_thread = self._loop_thread, None
        if loop_thread is None:
            return
        self._stop_loop_thread()
        if threading.current_thread() is not loop_thread.thread:
            loop_thread.thread.join(timeout=10)
        self._client = self._semaphore = None

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on this model's loop thread and wait for it; Ctrl-C cancels the requests."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._ensure_loop_thread().loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def _ensure_loop_thread(self) -> _LoopThread:
        with self._loop_lock:
            if self._loop_thread is None:
                import openai

                self._client = openai.AsyncOpenAI(
                    api_key=self._api_key, base_url=self.base_url, timeout=self.timeout, max_retries=0
                )
                self._semaphore = asyncio.Semaphore(self.max_concurrency)
                self._loop_thread = _LoopThread(self._client, name=f"{self.spec} loop")
                # a model dropped without close() still closes its connections and ends its thread
                self._stop_loop_thread = weakref.finalize(self, self._loop_thread.stop)
            return self._loop_thread

    # generation

    async def _generate_all(
        self, conversations: list[Conversation], params: SamplingParams, desc: str | None
    ) -> list[list[Sample]]:
        with progress_bar(len(conversations), desc, unit="conv") as bar:
            tasks = [asyncio.ensure_future(self._generate_one(c, params)) for c in conversations]
            for task in tasks:
                task.add_done_callback(lambda _: bar.update())
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in tasks:
                    if task in done and task.exception() is not None:
                        raise task.exception()
                return [task.result() for task in tasks]
            finally:
                for task in tasks:
                    task.cancel()

    async def _generate_one(self, conversation: Conversation, params: SamplingParams) -> list[Sample]:
        # Some servers (llama.cpp) ignore n and return one choice: ask again for the rest.
        samples: list[Sample] = []
        while len(samples) < params.n:
            seed = None if params.seed is None else params.seed + len(samples)
            request = self._request(conversation, params.replace(n=params.n - len(samples), seed=seed))
            samples.extend((await self._complete(request))[: params.n - len(samples)])
        return samples

    def _request(self, conversation: Conversation, params: SamplingParams) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": conversation,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if params.n > 1:
            request["n"] = params.n
        if params.seed is not None:
            request["seed"] = params.seed
        if params.stop:
            request["stop"] = list(params.stop)
        if params.top_k > 0:
            request["extra_body"] = {"top_k": params.top_k}  # vLLM / SGLang extension
        if params.logprobs and not self.stats["logprobs_rejected"]:
            request.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
        return request

    async def _complete(self, request: dict[str, Any]) -> list[Sample]:
        try:
            return await self._with_retries(lambda: self._attempt(request))
        except _AttemptFailed as failure:
            if failure.status == 400 and "logprobs" in request:
                return await self._complete_without_logprobs(request)
            raise self._error(failure) from None

    async def _complete_without_logprobs(self, request: dict[str, Any]) -> list[Sample]:
        """Retry a request the server rejected once without logprobs; if that works, stop asking for them."""
        request = {key: value for key, value in request.items() if key not in ("logprobs", "top_logprobs")}
        try:
            samples = await self._with_retries(lambda: self._attempt(request))
        except _AttemptFailed as failure:
            raise self._error(failure) from None
        if not self.stats["logprobs_rejected"]:
            logger.warning("%s rejects logprobs; generating without them (Sample log-probs will be None)", self.spec)
            self.stats["logprobs_rejected"] = True
        return samples

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(self.max_retries + 1):
            try:
                async with self._semaphore:
                    return await call()
            except _AttemptFailed as failure:
                failure.attempts = attempt + 1
                if not failure.retryable or attempt == self.max_retries:
                    raise
                self.stats["retries"][failure.kind] += 1
                await asyncio.sleep(self._backoff(attempt, failure.retry_after))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _attempt(self, request: dict[str, Any]) -> list[Sample]:
        import openai

        try:
            raw = await self._send(self._client.chat.completions.with_raw_response.create(**request))
        except openai.APIStatusError as err:
            raise _status_failure(err) from None
        return _parse_completion(raw.http_response.content)

    async def _probe(self) -> None:
        import openai

        with contextlib.suppress(openai.APIStatusError):  # any HTTP answer shows that the server is there
            await self._send(self._client.models.with_raw_response.list())

    async def _send(self, call: Awaitable[T]) -> T:
        """Await one HTTP request (counted in stats); timeouts and dropped connections become retryable failures."""
        import openai

        self.stats["requests"] += 1
        try:
            return await call
        except openai.APITimeoutError:
            raise _AttemptFailed("timeout", f"timed out after {self.timeout:g}s", retryable=True) from None
        except openai.APIConnectionError as err:
            cause = err.__cause__ or err
            raise _AttemptFailed("connection", f"connection error ({cause!r})", retryable=True) from None

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = self._rng.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))
        return max(delay, retry_after or 0.0)

    def _error(self, failure: _AttemptFailed) -> ModelError:
        self.stats["failures"] += 1
        detail = " ".join(failure.detail.split())[:300]
        if self._api_key != "EMPTY":  # a server may echo the request's headers back in its error
            detail = detail.replace(self._api_key, "***")
        where = "" if self.base_url in self.spec else f" to {self.base_url}"
        return ModelError(f"{self.spec}: request{where} failed after {failure.attempts} attempt(s): {detail}")


class _LoopThread:
    """An event loop running on a daemon thread, and the openai client whose connections belong to it."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run_forever, name=name, daemon=True)
        self.thread.start()

    def _run_forever(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def stop(self) -> None:
        """Close the client and stop the loop; safe from any thread and from a garbage-collection finalizer."""
        asyncio.run_coroutine_threadsafe(self._close(), self.loop)

    async def _close(self) -> None:
        try:
            await self.client.close()
        finally:
            self.loop.stop()


def _status_failure(err: Any) -> _AttemptFailed:
    status = err.status_code
    error = err.body.get("error", err.body) if isinstance(err.body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    retryable = status in _RETRYABLE_STATUS or status >= 500
    return _AttemptFailed(
        str(status),
        f"HTTP {status}" + (f": {message}" if message else ""),
        retryable=retryable,
        status=status,
        retry_after=_retry_after(err.response.headers),
    )


def _retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (the HTTP-date form is not used by LLM servers)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return max(float(headers[name]) * scale, 0.0)
        except (KeyError, TypeError, ValueError):
            continue
    return None


def _parse_completion(content: bytes) -> list[Sample]:
    try:
        data = json.loads(content)
    except ValueError:
        raise _AttemptFailed("malformed", f"malformed JSON in response: {content[:80]!r}", retryable=True) from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices:
        error = data.get("error") if isinstance(data, dict) else None
        raise _AttemptFailed(
            "empty_choices", f"response has no choices{f' ({error})' if error else ''}", retryable=True
        )
    try:
        return [_sample(choice) for choice in sorted(choices, key=lambda c: c.get("index", 0))]
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise _AttemptFailed("malformed", f"malformed choice in response ({err!r})", retryable=True) from None


def _sample(choice: dict[str, Any]) -> Sample:
    message = choice["message"]
    text = message.get("content") or message.get("refusal") or ""
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return Sample(text=text, finish_reason=choice.get("finish_reason"))
    token_logprobs = [float(entry["logprob"]) for entry in content]
    return Sample(
        text=text,
        logprob_sum=sum(token_logprobs),
        num_tokens=len(token_logprobs),
        finish_reason=choice.get("finish_reason"),
        tokens=[entry["token"] for entry in content],
        token_logprobs=token_logprobs,
        top_logprobs=[
            {top["token"]: float(top["logprob"]) for top in entry.get("top_logprobs") or []} for entry in content
        ],
    )
