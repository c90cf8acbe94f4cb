"""Training with refusal tokens (Jain et al., arXiv 2412.06748): `refusal_tokens: single | per_category` in SFT.

Where the tokens are written: at load time, by the SFT recipe, from the build stage's row metadata. A row of kind
`safety` (a harmful request answered with a refusal) gets `<|refuse|>` (`single`) or `<|refuse:CATEGORY|>`
(`per_category`, from the row's `category` column, which the build copies from the harmful-prompt set; rows without
one use `<|refuse:other|>`) in front of its completion; a row of kind `benign` gets `<|respond|>`. The build output
stays model- and mode-agnostic: one data folder trains with or without tokens, single or per category.

The model side: the tokens become added special tokens of the tokenizer (so decoding with `skip_special_tokens`
strips them); an output embedding tied to the input embedding (SmolLM2) is untied, so that each control token has
an output row (its logit, which learns to tell refusing from answering, at `refusal_token_learning_rate`) apart
from its input row (what the model reads after it, at the run's learning rate); the embeddings grow when the
tokenizer outgrows them; each new row starts as the mean embedding of a word that opens such answers ("Sorry" for
refusal tokens, "Sure" for `<|respond|>`; input and output rows alike), so the model's first guess between refusing
and answering is already sensible. With LoRA, the new rows are PEFT trainable tokens (`trainable_token_indices` on
both embeddings) and the adapter saves only those rows (`save_embedding_layers=False`), not the whole vocabulary;
`recipes/merge.py` and the hf backend grow a base model to the adapter's tokenizer, and untie it when the adapter
holds output rows, before loading the adapter (a merged model is saved untied).

The knob at inference (`refusal_bias`, `refusal_threshold`) is an hf model option: `evoalign.models.refusal_tokens`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evoalign.errors import ConfigError, DataError
from evoalign.labels import BENIGN, SAFETY
from evoalign.models.refusal_tokens import (
    REFUSE,
    RESPOND,
    category_token,
    init_word,
    module_attribute_name,
    untie_output_embeddings,
)

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger("evoalign.train")

MODES = ("none", "single", "per_category")
OTHER = "other"  # the category of refusal rows without one, in per_category mode


@dataclass(frozen=True)
class RefusalTokenSetup:
    """The control tokens of a run and which of them the tokenizer did not hold before (their rows are
    initialised; tokens already in a vocabulary, e.g. when training on again from a merged model, keep theirs)."""

    mode: str
    tokens: tuple[str, ...]
    added: tuple[str, ...]
    rows: dict[str, int]  # token -> training rows that start with it

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "tokens": list(self.tokens), "added": list(self.added), "rows": self.rows}


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"refusal_tokens must be one of {', '.join(MODES)}, got {mode!r}")


def _row_tokens(dataset: Dataset, where: str, mode: str) -> list[str]:
    """The control token each row's completion starts with, from its `kind` (and `category`) column."""
    columns = dataset.column_names or []
    if "kind" not in columns:
        raise DataError(
            f"{where}: refusal_tokens needs the build stage's 'kind' column (benign: respond, safety: refuse); "
            f"found {', '.join(columns)}"
        )
    if mode == "per_category" and "category" not in columns:
        raise DataError(
            f"{where}: refusal_tokens per_category needs a 'category' column (the build stage writes it on refusal "
            "rows from the harmful-prompt set's categories); rebuild the data or use refusal_tokens single"
        )
    categories = dataset["category"] if mode == "per_category" else [None] * len(dataset)
    tokens = []
    for index, (kind, category) in enumerate(zip(dataset["kind"], categories)):
        if kind == BENIGN:
            tokens.append(RESPOND)
        elif kind == SAFETY:
            tokens.append(REFUSE if mode == "single" else category_token(category or OTHER))
        else:
            raise DataError(f"{where}: row {index}: kind {kind!r}; refusal_tokens knows {BENIGN} and {SAFETY}")
    return tokens


def _prefixed(dataset: Dataset, tokens: list[str]) -> Dataset:
    """The rows with their first assistant message prefixed by its control token (in memory: no cache file is
    written next to the build's data)."""

    def prefix(row: dict[str, Any], index: int) -> dict[str, Any]:
        completion = [dict(message) for message in row["completion"]]
        first = next(m for m in completion if m["role"] == "assistant")
        first["content"] = tokens[index] + first["content"]
        return {"completion": completion}

    return dataset.map(prefix, with_indices=True, keep_in_memory=True, load_from_cache_file=False)


def apply_to_splits(
    mode: str, tokenizer: Any, splits: dict[str, Dataset | None], name: str
) -> tuple[dict[str, Dataset | None], RefusalTokenSetup]:
    """Prefix every completion of `splits` with its control token and add the tokens to `tokenizer` (in place)."""
    check_mode(mode)
    per_split = {}
    for split, dataset in splits.items():
        if dataset is None:
            continue
        if not hasattr(dataset, "__len__"):
            raise ConfigError("refusal_tokens needs a map-style dataset; set dataset_streaming false")
        per_split[split] = _row_tokens(dataset, f"{name} [{split}]", mode)
    counts = Counter(token for tokens in per_split.values() for token in tokens)
    tokens = tuple(sorted(token for token in counts if token != RESPOND)) + (RESPOND,)
    vocabulary = tokenizer.get_vocab()
    added = tuple(token for token in tokens if token not in vocabulary)
    tokenizer.add_tokens(list(added), special_tokens=True)
    prefixed = {
        split: _prefixed(dataset, per_split[split]) if dataset is not None else None
        for split, dataset in splits.items()
    }
    setup = RefusalTokenSetup(mode, tokens, added, dict(sorted(counts.items())))
    logger.info("refusal tokens (%s): %s", mode, ", ".join(f"{t} x{n}" for t, n in setup.rows.items()))
    return prefixed, setup


def _gathered(params: list[Any]) -> Any:
    """Full parameters under DeepSpeed ZeRO-3 (where each process holds a shard), else nothing to do."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=0)


def init_rows(model: Any, tokenizer: Any, setup: RefusalTokenSetup) -> list[int]:
    """Grow the embeddings to the tokenizer and start each added token's rows from its word's mean embedding;
    returns the ids of all the run's control tokens."""
    import torch

    vocabulary = {token: index for token, index in tokenizer.get_vocab().items() if token not in setup.added}
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    tables = [inputs.weight] + (
        [outputs.weight] if outputs is not None and outputs.weight is not inputs.weight else []
    )
    with _gathered(tables), torch.no_grad():
        for token in setup.added:
            words = tokenizer(init_word(token), add_special_tokens=False)["input_ids"] or list(range(len(vocabulary)))
            index = tokenizer.convert_tokens_to_ids(token)
            for table in tables:
                table[index] = table[words].mean(dim=0)
    return tokenizer.convert_tokens_to_ids(list(setup.tokens))


def load_model(
    path: str,
    training_args: Any,
    quantization_config: Any,
    tokenizer: Any,
    setup: RefusalTokenSetup,
    peft_config: Any,
) -> Any:
    """The model as TRL's trainer would load it from `path`, its output embedding untied from the input one
    (`untie_output_embeddings`), grown to the control tokens, whose input and output rows `peft_config` makes
    trainable."""
    from trl.trainer.utils import create_model_from_path

    kwargs = dict(training_args.model_init_kwargs or {})
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if training_args.distributed_state.distributed_type in ("MULTI_GPU", "DEEPSPEED"):
        kwargs["device_map"] = None  # as TRL does: distributed training cannot use device_map="auto"
    kwargs.setdefault("trust_remote_code", training_args.trust_remote_code)
    model = create_model_from_path(path, **kwargs)
    training_args.model_init_kwargs = None  # used here; TRL warns about them next to a loaded model
    if untie_output_embeddings(model):
        logger.info("refusal tokens: the output embedding is untied from the input embedding (rows of its own)")
    ids = init_rows(model, tokenizer, setup)
    if peft_config is not None:
        inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
        indices = {module_attribute_name(model, inputs): ids}
        if outputs is not None:
            indices[module_attribute_name(model, outputs)] = ids
        peft_config.trainable_token_indices = indices
    return model


def give_token_rows_their_learning_rate(trainer: Any, learning_rate: float) -> None:
    """Create the trainer's optimizer with the control tokens' output rows (their logits) in a parameter group of
    their own at `learning_rate` (0: leave them at the run's); their input rows stay at the run's learning rate.

    Why the output rows: a new row starts as a copy of its word's row, so its logit equals that word's until the row
    moves, and at a LoRA learning rate it hardly moves in a short run (measured on smollm2-guarded: 2% of the row's
    norm after 27 steps at 2e-4, p(<|refuse|>) at most 0.12 on training prompts). Why not the input rows: when one
    tied row took 5e-3, `<|respond|>` drifted from "Sure" and, forced, no longer led to answers (docs/training.md)."""
    if learning_rate < 0:
        raise ConfigError(f"refusal_token_learning_rate must be >= 0, got {learning_rate}")
    if learning_rate == 0:
        return
    model = trainer.model
    output = module_attribute_name(model, model.get_output_embeddings())
    rows = {
        id(p)
        for n, p in model.named_parameters()
        if "trainable_tokens_delta" in n and p.requires_grad and f".{output}." in f".{n}"
    }
    optimizer = trainer.create_optimizer()
    moved = []
    for group in optimizer.param_groups:
        moved += [{**group, "params": [p for p in group["params"] if id(p) in rows], "lr": learning_rate}]
        group["params"] = [p for p in group["params"] if id(p) not in rows]
    optimizer.param_groups[:] = [g for g in optimizer.param_groups + moved if g["params"]]
    logger.info("refusal token output rows: %d tensors at learning rate %g", len(rows), learning_rate)


def finish_wrapped_model(model: Any) -> None:
    """Two fixes on the PEFT-wrapped model: it saves its trained token rows without the whole (resized) embedding
    matrices, which PEFT would otherwise add to the adapter because the vocabulary grew; and a wrapped bias-free
    output embedding answers `.bias` (None), which TRL's fused LM head reads next to `.weight` (the wrapper's
    `.weight` already holds the trained rows). A no-op for a full model."""
    from peft import PeftModel
    from peft.utils.other import TrainableTokensWrapper

    if not isinstance(model, PeftModel):
        return
    model.save_pretrained = functools.partial(type(model).save_pretrained, model, save_embedding_layers=False)
    for module in model.modules():
        if isinstance(module, TrainableTokensWrapper) and getattr(module.original_module, "bias", None) is None:
            module.bias = None
