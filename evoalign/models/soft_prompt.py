"""Soft (continuous) system prompts: learnt input embeddings put where a system prompt goes.

A soft prompt is a matrix of `n` input embeddings (`n` virtual tokens) trained in place of a written system prompt,
e.g. by DRO (`recipes/dro.py`, Zheng et al., arXiv 2401.18018). It is inserted as the *content of the system
message* of the chat template: a conversation without a system message gets one holding only the soft prompt; a
conversation that has one keeps its text, after the soft prompt, in the same message. The model's own template
therefore lays out every other token exactly as for a written system prompt.

Mechanics. The conversation is rendered by the template with a marker as the system message's content; the text
before and after the marker is tokenized, and the marker's place is filled with `n` placeholder ids
`first_id + k` (k = 0 .. n-1), where `first_id` is the number of rows of the input embedding matrix, so no real
token can be one. Hooks on the input embedding module replace the embedding of every placeholder id by row `k` of
the soft prompt and leave all other ids alone. Every path that feeds token ids to the model (batched and
prefix-shared generation, teacher-forced scoring, activations for steering) thus sees the soft prompt, and a
model without placeholders in its input is unaffected.

Files: `soft_prompt.safetensors` (tensor `soft_prompt`, float32 [n, hidden]) and `soft_prompt.json` beside it
(format, base model, number of virtual tokens, the written prompt it started from, the placement, the sha256 of
the tensor file). The json is written last and names the tensor file's hash, so a half-written or mismatched pair
is refused. An hf model spec takes the folder (or the .safetensors file) as its `soft_prompt` option:
`{spec: smollm2, soft_prompt: runs/dro-smollm2}`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evoalign.errors import ModelError
from evoalign.io import atomic_write_bytes, atomic_write_json
from evoalign.prompts import Conversation

TENSOR_FILE = "soft_prompt.safetensors"
META_FILE = "soft_prompt.json"
FORMAT = "evoalign-soft-prompt"
PLACEMENT = "system message content (before the conversation's own system text, if any)"
_MARKER = "<<evoalign:soft-prompt>>"


def soft_prompt_files(path: str | Path) -> tuple[Path, Path]:
    """(tensor file, metadata file) of a soft prompt given as its folder or its .safetensors file."""
    path = Path(path).expanduser()
    if path.is_dir():
        return path / TENSOR_FILE, path / META_FILE
    return path, path.with_name(META_FILE)


def check_soft_prompt_path(path: str | Path) -> None:
    """ModelError now when a soft prompt's tensor or metadata file is missing (nothing is loaded)."""
    tensor, meta = soft_prompt_files(path)
    for file in (tensor, meta):
        if not file.is_file():
            raise ModelError(
                f"soft prompt not found: {file} (a folder written by recipes/dro.py, or its {TENSOR_FILE})"
            )


def placeholder_ids(first_id: int, count: int) -> list[int]:
    return [first_id + k for k in range(count)]


def render_with_marker(tokenizer: Any, conversation: Conversation) -> tuple[str, str]:
    """The chat-templated text (with the generation prompt) before and after the soft prompt's place."""
    messages = [dict(m) for m in conversation]
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = _MARKER + messages[0]["content"]
    else:
        messages.insert(0, {"role": "system", "content": _MARKER})
    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception as err:  # a template that rejects a system role raises its own exception type
        raise ModelError(
            f"the chat template does not take a system message, which a soft prompt needs ({err})"
        ) from None
    if text.count(_MARKER) != 1:
        raise ModelError(
            "the chat template does not render the system message's text once; it cannot hold a soft prompt"
        )
    before, after = text.split(_MARKER)
    return before, after


def soft_prompt_ids(tokenizer: Any, conversations: list[Conversation], first_id: int, count: int) -> list[list[int]]:
    """Token ids of each conversation with `count` placeholder ids (from `first_id`) where the soft prompt goes."""
    if not conversations:
        return []
    parts = [render_with_marker(tokenizer, conversation) for conversation in conversations]
    before = tokenizer([p[0] for p in parts], add_special_tokens=False)["input_ids"]
    after = tokenizer([p[1] for p in parts], add_special_tokens=False)["input_ids"]
    slots = placeholder_ids(first_id, count)
    return [list(b) + slots + list(a) for b, a in zip(before, after)]


@contextmanager
def inserted(model: Any, embeddings: Any) -> Iterator[int]:
    """Inside the block, placeholder ids `first_id + k` fed to `model` embed as `embeddings[k]` (gradients flow
    to `embeddings` when it requires them); yields `first_id`."""
    handles = attach(model, lambda: embeddings)
    try:
        yield first_placeholder_id(model)
    finally:
        for handle in handles:
            handle.remove()


def first_placeholder_id(model: Any) -> int:
    return model.get_input_embeddings().num_embeddings


def attach(model: Any, embeddings: Any) -> list[Any]:
    """Hooks on `model`'s input embedding that embed placeholder ids as rows of `embeddings()` (a callable, so a
    trained parameter is read at each call); returns the hook handles."""
    import torch

    module = model.get_input_embeddings()
    first_id = module.num_embeddings
    state: dict[str, Any] = {}

    def clamp_ids(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        ids = args[0]
        soft = ids >= first_id
        if not bool(soft.any()):  # e.g. every decoding step after the prompt
            state["soft"] = None
            return None
        state["soft"], state["index"] = soft, (ids - first_id).clamp(min=0)
        return (ids.masked_fill(soft, 0), *args[1:])

    def replace(_module: Any, _args: tuple[Any, ...], output: Any) -> Any:
        soft, index = state.pop("soft", None), state.pop("index", None)
        if soft is None:
            return output
        table = embeddings()
        if int(index[soft].max()) >= table.shape[0]:
            raise ModelError(f"a placeholder id asks for soft prompt row {int(index[soft].max())} of {table.shape[0]}")
        values = table.to(device=output.device, dtype=output.dtype)[index.clamp(max=table.shape[0] - 1)]
        return torch.where(soft.unsqueeze(-1), values, output)

    return [module.register_forward_pre_hook(clamp_ids), module.register_forward_hook(replace)]


class SoftPrompt:
    """A learnt system prompt: `embeddings` [n, hidden] and its metadata (see the module docstring)."""

    def __init__(self, embeddings: Any, meta: dict[str, Any] | None = None, *, source: str | None = None) -> None:
        if embeddings.dim() != 2 or embeddings.shape[0] < 1:
            raise ModelError(
                f"{source or 'soft prompt'}: expected a [virtual tokens, hidden] matrix, got {tuple(embeddings.shape)}"
            )
        self.embeddings = embeddings
        self.meta = dict(meta or {})
        self.source = source
        self.first_id: int | None = None
        self._handles: list[Any] = []

    @property
    def num_virtual_tokens(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def fingerprint(self) -> str:
        return str(self.meta.get("sha256", ""))[:16]

    def attach(self, model: Any) -> SoftPrompt:
        """Put the hooks on `model` (kept until `detach`); ModelError when the hidden sizes differ."""
        hidden = model.get_input_embeddings().embedding_dim
        if self.embeddings.shape[1] != hidden:
            raise ModelError(
                f"{self.source or 'soft prompt'}: made for hidden size {self.embeddings.shape[1]}, the model has {hidden}"
                f" (it was trained on {self.meta.get('base_model', 'another model')})"
            )
        self.detach()
        self.embeddings = self.embeddings.to(model.get_input_embeddings().weight.device)
        self._handles = attach(model, lambda: self.embeddings)
        self.first_id = first_placeholder_id(model)
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def prompt_ids(self, tokenizer: Any, conversations: list[Conversation]) -> list[list[int]]:
        if self.first_id is None:
            raise ModelError("the soft prompt is not attached to a model")
        return soft_prompt_ids(tokenizer, conversations, self.first_id, self.num_virtual_tokens)

    def save(self, folder: str | Path, meta: dict[str, Any]) -> Path:
        """Write the tensor file, then the metadata naming its hash (both atomically); returns the folder."""
        from safetensors.torch import save

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        data = save({"soft_prompt": self.embeddings.detach().float().cpu().contiguous()}, metadata={"format": FORMAT})
        atomic_write_bytes(folder / TENSOR_FILE, data)
        self.meta = {
            "format": FORMAT,
            **meta,
            "num_virtual_tokens": self.num_virtual_tokens,
            "hidden_size": int(self.embeddings.shape[1]),
            "placement": PLACEMENT,
            "tensor_file": TENSOR_FILE,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        atomic_write_json(folder / META_FILE, self.meta)
        return folder

    @classmethod
    def load(cls, path: str | Path) -> SoftPrompt:
        """The soft prompt in a folder (or .safetensors file) written by `save`; ModelError for anything else."""
        from safetensors.torch import load

        check_soft_prompt_path(path)
        tensor_file, meta_file = soft_prompt_files(path)
        data = tensor_file.read_bytes()
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            embeddings = load(data)["soft_prompt"]
        except (OSError, KeyError, ValueError) as err:
            raise ModelError(f"{path}: not a soft prompt written by recipes/dro.py ({err})") from None
        if meta.get("format") != FORMAT:
            raise ModelError(f"{meta_file}: not a soft prompt's metadata (format {meta.get('format')!r})")
        if meta.get("sha256") != hashlib.sha256(data).hexdigest():
            raise ModelError(f"{tensor_file} does not match {meta_file} (a half-written or replaced file); rerun dro")
        return cls(embeddings, meta, source=str(tensor_file))
