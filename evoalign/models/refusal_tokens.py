"""Refusal tokens (Jain et al., arXiv 2412.06748): control tokens that open every answer, and the knob on them.

A model fine-tuned with `refusal_tokens: single | per_category` (`evoalign/train/refusal_tokens.py`) starts every
refusal with `<|refuse|>` (or one token per category, `<|refuse:violence|>` ...) and every other answer with
`<|respond|>`. They are added special tokens, so decoding with `skip_special_tokens` strips them: such a model
loaded without options generates freely and its visible text carries no control token.

Two hf model options steer the first generated token, which sets the refusal rate of one trained model:

- `refusal_bias: b` adds `b` to the logit of every refusal token (a mapping `{category: b}` biases categories
  separately, unnamed ones 0), which multiplies the odds of refusing by `e**b`;
- `refusal_threshold: t` refuses when the probability of the refusal token(s) is at least `t` (forcing the most
  likely refusal token) and otherwise forces `<|respond|>`.

Both act only on the first generated position. This module names the tokens (the training recipe and the
backend share the names, nothing else) and holds the logits processor; torch is imported lazily.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoalign.errors import ModelError

REFUSE = "<|refuse|>"
RESPOND = "<|respond|>"
_CATEGORY_TOKEN = re.compile(r"<\|refuse:([a-z0-9_]+)\|>")
# each token's initial embedding: the mean of the rows of a word that opens such answers
INIT_WORDS = {REFUSE: "Sorry", RESPOND: "Sure"}
OPTIONS = ("refusal_bias", "refusal_threshold")


def category_slug(category: str) -> str:
    """A category as it appears in its token: lower case, runs of other characters as `_` (`Hate speech` ->
    `hate_speech`)."""
    return re.sub(r"[^a-z0-9]+", "_", str(category).lower()).strip("_") or "other"


def category_token(category: str) -> str:
    return f"<|refuse:{category_slug(category)}|>"


def init_word(token: str) -> str:
    """The word whose embedding a new control token starts from."""
    return INIT_WORDS[RESPOND if token == RESPOND else REFUSE]


def check_options(spec: str, options: Mapping[str, Any]) -> None:
    """ModelError naming the option for a bad `refusal_bias` / `refusal_threshold` (before any model loads)."""
    bias, threshold = options.get("refusal_bias"), options.get("refusal_threshold")
    if bias is not None and threshold is not None:
        raise ModelError(
            f"model '{spec}': options 'refusal_bias' and 'refusal_threshold' are two settings of one knob; give one"
        )
    if bias is not None:
        values = bias.items() if isinstance(bias, Mapping) else [(None, bias)]
        for category, value in values:
            where = "refusal_bias" if category is None else f"refusal_bias.{category}"
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise ModelError(
                    f"model '{spec}': option '{where}' must be a finite number (or a mapping category -> number), "
                    f"got {value!r}"
                )
    if threshold is not None and (
        not isinstance(threshold, int | float) or isinstance(threshold, bool) or not 0 <= threshold <= 1
    ):
        raise ModelError(f"model '{spec}': option 'refusal_threshold' must be a number in [0, 1], got {threshold!r}")


@dataclass(frozen=True)
class ControlTokens:
    """The control tokens a tokenizer holds: refusal token ids by category (None: the single `<|refuse|>`) and the
    respond token id."""

    refuse: dict[str | None, int]
    respond: int | None

    @classmethod
    def of(cls, tokenizer: Any) -> ControlTokens:
        refuse: dict[str | None, int] = {}
        respond = None
        for token, index in sorted(tokenizer.get_added_vocab().items()):
            if token == REFUSE:
                refuse[None] = index
            elif token == RESPOND:
                respond = index
            elif match := _CATEGORY_TOKEN.fullmatch(token):
                refuse[match.group(1)] = index
        return cls(refuse, respond)

    @property
    def ids(self) -> list[int]:
        return [*self.refuse.values(), *([self.respond] if self.respond is not None else [])]


@dataclass(frozen=True)
class RefusalKnob:
    """`refusal_bias` or `refusal_threshold` resolved against a tokenizer's control tokens."""

    tokens: ControlTokens
    bias: dict[int, float]  # token id -> logit bias
    threshold: float | None

    @classmethod
    def resolve(
        cls, spec: str, tokenizer: Any, bias: Any = None, threshold: float | None = None
    ) -> RefusalKnob | None:
        """The knob, or None when neither option is set; ModelError when the model has no such tokens."""
        if bias is None and threshold is None:
            return None
        check_options(spec, {"refusal_bias": bias, "refusal_threshold": threshold})
        tokens = ControlTokens.of(tokenizer)
        option = "refusal_bias" if bias is not None else "refusal_threshold"
        if not tokens.refuse or (threshold is not None and tokens.respond is None):
            raise ModelError(
                f"model '{spec}': option '{option}' needs a model trained with refusal tokens ({REFUSE} or "
                f"<|refuse:CATEGORY|>, and {RESPOND}); its tokenizer has none (train with --refusal_tokens single)"
            )
        if isinstance(bias, Mapping):
            known = {category for category in tokens.refuse if category is not None}
            unknown = sorted(str(c) for c in bias if category_slug(c) not in known)
            if unknown:
                raise ModelError(
                    f"model '{spec}': option 'refusal_bias' names unknown categories {', '.join(unknown)}; the "
                    f"model's refusal categories: {', '.join(sorted(known)) or 'none (a single refusal token)'}"
                )
            per_id = {tokens.refuse[category_slug(c)]: float(v) for c, v in bias.items()}
        else:
            per_id = {index: float(bias) for index in tokens.refuse.values()} if bias is not None else {}
        return cls(tokens, per_id, None if threshold is None else float(threshold))

    def describe(self) -> str:
        """The knob as it enters the model's identity (so cached answers never cross settings)."""
        if self.threshold is not None:
            return f"refusal_threshold={self.threshold!r}"
        return "refusal_bias=" + ",".join(f"{index}:{value!r}" for index, value in sorted(self.bias.items()))

    def processor(self, start: int) -> RefusalTokenProcessor:
        return RefusalTokenProcessor(self, start)


class RefusalTokenProcessor:
    """A logits processor acting at the first generated position only (input length `start`): adds the bias to the
    refusal tokens' logits, or forces a refusal token or the respond token by the threshold."""

    def __init__(self, knob: RefusalKnob, start: int) -> None:
        self.knob = knob
        self.start = start

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if input_ids.shape[1] != self.start:
            return scores
        knob = self.knob
        if knob.threshold is None:
            ids = torch.tensor(list(knob.bias), device=scores.device)
            shift = torch.tensor(list(knob.bias.values()), device=scores.device, dtype=scores.dtype)
            return scores.index_add(-1, ids, shift.expand(scores.shape[0], -1))
        refuse = torch.tensor(list(knob.tokens.refuse.values()), device=scores.device)
        probs = torch.softmax(scores.float(), dim=-1)[:, refuse]
        most_likely = refuse[probs.argmax(dim=-1)]
        chosen = torch.where(probs.sum(dim=-1) >= knob.threshold, most_likely, knob.tokens.respond)
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter_(-1, chosen[:, None], 0.0)


def resize_for_tokenizer(model: Any, tokenizer: Any) -> bool:
    """Grow the model's embeddings to the tokenizer's length (control tokens added by training) before an adapter
    that trained their rows is loaded; the new rows are then overwritten by the adapter. True when resized."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= rows:
        return False
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return True


def untie_output_embeddings(model: Any) -> bool:
    """Give an output embedding that shares the input embedding's matrix a copy of its own, and record it in the
    config so that saving and reloading keep the two apart; True when they were tied.

    Refusal-token training does this so that a control token has two rows: its output row (its logit) learns to
    tell refusing from answering, while its input row (what the model reads after it) stays close to the word it
    started from."""
    import torch

    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    if outputs is None or outputs.weight is not inputs.weight:
        return False
    outputs.weight = torch.nn.Parameter(inputs.weight.detach().clone(), requires_grad=inputs.weight.requires_grad)
    configs = [model.config, model.config.get_text_config()]
    for config in configs:
        config.tie_word_embeddings = False
    return True


def module_attribute_name(model: Any, module: Any) -> str | None:
    """The last part of `module`'s name in `model` (`embed_tokens`, `lm_head`), as PEFT's per-module options take it."""
    name = next((name for name, candidate in model.named_modules() if candidate is module), None)
    return name.rsplit(".", 1)[-1] if name else None


def prepare_base_for_adapter(model: Any, tokenizer: Any, adapter: str | Path) -> None:
    """Shape a base model like the one an adapter was trained on: embeddings grown to the adapter's tokenizer
    (control tokens added in training) and, when the adapter trained rows of the output embedding of a model with
    tied embeddings, the output embedding untied (`untie_output_embeddings`)."""
    from peft import PeftConfig

    resize_for_tokenizer(model, tokenizer)
    indices = getattr(PeftConfig.from_pretrained(str(Path(adapter).expanduser())), "trainable_token_indices", None)
    if isinstance(indices, dict) and module_attribute_name(model, model.get_output_embeddings()) in indices:
        untie_output_embeddings(model)
