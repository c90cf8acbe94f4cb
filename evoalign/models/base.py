"""The one ChatModel interface that every role in the pipeline uses.

Mutator, verifier, target, responder, LLM judge and model under evaluation are all a `ChatModel`:
`generate` takes a batch of conversations and returns n samples for each, with the text and the sum and
count of the model's own token log-probabilities (before any temperature/top-p/top-k warping);
`score` returns teacher-forced log-probabilities of given responses. APIs take lists on purpose: backends
batch (hf) or run requests concurrently (openai-compatible), and callers never loop per item.

What only some backends can do is stated, not probed: `capabilities` holds `TOKENIZE` (`prompt_ids`: the
chat-templated prompt as token ids, e.g. for context checks) and `TRANSFORMERS` (`hf_model` / `hf_tokenizer`:
the underlying transformers objects, e.g. for hidden states); `call_stats()` is an API backend's running call
counts and None for local models.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from evoalign.prompts import Conversation

TOKENIZE = "tokenize"
TRANSFORMERS = "transformers"


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. temperature 0 means greedy decoding (n must then be 1 for distinct samples)."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    seed: int | None = 0
    stop: tuple[str, ...] = ()
    logprobs: bool = True

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"SamplingParams.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"SamplingParams.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingParams.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.top_k < 0:
            raise ValueError(f"SamplingParams.top_k must be >= 0 (0 = off), got {self.top_k}")
        object.__setattr__(self, "stop", tuple(self.stop or ()))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def replace(self, **changes: Any) -> SamplingParams:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stop"] = list(self.stop)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, where: str = "sampling parameters") -> SamplingParams:
        """Parameters from a config mapping, checked (unknown keys with a "did you mean", types, ranges): a
        ConfigError naming `where`."""
        from evoalign.config import check_fields

        return check_fields(cls, dict(data or {}), where)


@dataclass
class Sample:
    """One generated response.

    `logprob_sum`/`num_tokens` cover the response tokens (not the end-of-turn token) under the model's own
    unwarped distribution; None when the backend gives no log-probs. `tokens`/`token_logprobs` are the
    per-token view (used e.g. to read a judge's label-token probability). `finish_reason` is "stop" or
    "length".
    """

    text: str
    logprob_sum: float | None = None
    num_tokens: int | None = None
    finish_reason: str | None = None
    tokens: list[str] | None = None
    token_logprobs: list[float] | None = None
    top_logprobs: list[dict[str, float]] | None = field(default=None, repr=False)

    @property
    def mean_logprob(self) -> float | None:
        if self.logprob_sum is None or not self.num_tokens:
            return None
        return self.logprob_sum / self.num_tokens

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        return cls(**data)


@dataclass
class Score:
    """Teacher-forced log-probability of a given response (response tokens only)."""

    logprob_sum: float
    num_tokens: int

    @property
    def mean_logprob(self) -> float:
        return self.logprob_sum / max(self.num_tokens, 1)


class ChatModel(abc.ABC):
    """A chat model addressed by a spec string; see `evoalign.models.load_model`."""

    spec: str
    capabilities: frozenset[str] = frozenset()

    @property
    @abc.abstractmethod
    def identity(self) -> str:
        """A string that changes whenever the model's outputs could change (weights, adapter, revision)."""

    @abc.abstractmethod
    def generate(
        self, conversations: list[Conversation], params: SamplingParams | None = None, *, desc: str | None = None
    ) -> list[list[Sample]]:
        """Return `params.n` samples for each conversation, in input order."""

    def score(self, conversations: list[Conversation], responses: list[str]) -> list[Score]:
        """Teacher-forced log-probs of `responses[i]` as the assistant turn after `conversations[i]`."""
        raise NotImplementedError(f"{type(self).__name__} ({self.spec}) cannot score given responses")

    @property
    def max_context(self) -> int | None:
        """Longest prompt + response in tokens, when known."""
        return None

    def prompt_ids(self, conversations: list[Conversation]) -> list[list[int]]:
        """Token ids of each conversation rendered with the chat template and the generation prompt (`TOKENIZE`)."""
        raise NotImplementedError(f"{type(self).__name__} ({self.spec}) does not tokenize locally")

    @property
    def hf_model(self) -> Any:
        """The underlying transformers model (`TRANSFORMERS`)."""
        raise NotImplementedError(f"{type(self).__name__} ({self.spec}) is not a transformers model")

    @property
    def hf_tokenizer(self) -> Any:
        """The underlying transformers tokenizer (`TRANSFORMERS`)."""
        raise NotImplementedError(f"{type(self).__name__} ({self.spec}) is not a transformers model")

    def call_stats(self) -> dict[str, Any] | None:
        """An API backend's running totals: requests, retries by failure kind, failures; None for local models."""
        return None

    def check(self) -> None:
        """Raise ModelError now when the model cannot answer (an API server out of reach); local models pass."""

    def close(self) -> None:
        """Release resources (HTTP sessions, GPU memory)."""


class WrappedChatModel(ChatModel):
    """A ChatModel around another one (a response cache, a call counter): it is the inner model as far as identity,
    capabilities, context, tokenizing and call statistics go; subclasses change `generate` and `score`."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.spec = inner.spec

    @property
    def identity(self) -> str:
        return self.inner.identity

    @property
    def capabilities(self) -> frozenset[str]:  # type: ignore[override]
        return self.inner.capabilities

    @property
    def max_context(self) -> int | None:
        return self.inner.max_context

    def prompt_ids(self, conversations: list[Conversation]) -> list[list[int]]:
        return self.inner.prompt_ids(conversations)

    @property
    def hf_model(self) -> Any:
        return self.inner.hf_model

    @property
    def hf_tokenizer(self) -> Any:
        return self.inner.hf_tokenizer

    def call_stats(self) -> dict[str, Any] | None:
        return self.inner.call_stats()


def as_conversation(prompt: str | Conversation, system_prompt: str | None = None) -> Conversation:
    """Turn a user prompt (or an existing conversation) into a conversation, adding a system prompt."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system_prompt and not (messages and messages[0]["role"] == "system"):
        messages = [{"role": "system", "content": system_prompt}, *messages]
    return messages
