"""The generator's k most likely next tokens after a partial answer, read from an hf ChatModel.

PHTest-style generation writes a prompt as the generator's *partial* assistant answer and, at every step, needs
the k most likely next tokens after it. The ChatModel interface samples whole new assistant turns (API backends
add the top log-probs of the tokens they sampled) and cannot continue a partial answer, so this module reads the
next-token distribution of a local transformers model directly: one forward pass per batch of partial answers,
rendered with the model's chat template and the generation prompt, the partial answer appended as text.

It needs the `HFChatModel` itself (a stage's pool serves it with `cached=False`: nothing here is cached): its
tokenizer, model, `batch_size` and `end_of_turn_ids`. Once the ChatModel layer can continue a partial answer and
return top log-probs (hf and vLLM both can), this module becomes one `generate` call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evoalign.models.base import Conversation
from evoalign.models.hf import HFChatModel

# Extra candidates read per row so that k usable ones remain after skipping special and partial-byte tokens.
_MARGIN = 8


@dataclass(frozen=True)
class NextToken:
    """A candidate next token: its text, its log-prob under the generator, and whether it ends the answer."""

    text: str
    logprob: float
    ends: bool = False


def next_tokens(
    model: HFChatModel, conversations: Sequence[Conversation], partials: Sequence[str], k: int
) -> list[list[NextToken]]:
    """For each (conversation, partial answer): the k most likely next tokens, most likely first."""
    import torch

    tokenizer = model.tokenizer
    texts = [
        tokenizer.apply_chat_template(list(conversation), add_generation_prompt=True, tokenize=False) + partial
        for conversation, partial in zip(conversations, partials)
    ]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    ends = set(model.end_of_turn_ids)
    special = set(tokenizer.all_special_ids) - ends
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    results: list[list[NextToken]] = [[] for _ in ids]
    for start in range(0, len(order), model.batch_size):
        batch = order[start : start + model.batch_size]
        padded = tokenizer.pad({"input_ids": [ids[i] for i in batch]}, padding=True, return_tensors="pt")
        input_ids = padded["input_ids"].to(model.device)
        mask = padded["attention_mask"].to(model.device)
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        with torch.inference_mode():
            logits = model.model(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits[:, -1]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        values, indices = torch.topk(logprobs, min(k + _MARGIN, logprobs.shape[-1]), dim=-1)
        for row, index in enumerate(batch):
            results[index] = _usable(tokenizer, values[row].tolist(), indices[row].tolist(), ends, special, k)
    return results


def _usable(
    tokenizer: Any, logprobs: list[float], token_ids: list[int], ends: set[int], special: set[int], k: int
) -> list[NextToken]:
    """The first k candidates that end the answer or decode to whole characters."""
    found: list[NextToken] = []
    for logprob, token_id in zip(logprobs, token_ids):
        if token_id in ends:
            found.append(NextToken("", logprob, ends=True))
        elif token_id not in special:
            text = tokenizer.decode([token_id])
            if text and "\ufffd" not in text:
                found.append(NextToken(text, logprob))
        if len(found) == k:
            break
    return found
