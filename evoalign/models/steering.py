"""Activation steering mechanics: residual-stream activations, direction ablation, probe-conditioned steering.

In a Llama-style decoder (Llama, Mistral, Qwen2, SmolLM2) only the token embedding, each block's attention output
projection (`self_attn.o_proj`) and its MLP output projection (`mlp.down_proj`) write to the residual stream.
Projecting a unit direction out of all of their outputs removes it from every layer and position (Arditi et al.
2024); `ablation_hooks` does that with forward hooks (the steer stage folds it into the weights instead).

`SteeredChatModel` is probe-conditioned steering (SCANS, arXiv 2408.11491, in its ablation form): a linear probe on
the residual stream at one layer, read at the end of the unsteered prompt, estimates whether the request is
harmful; requests it finds harmless are answered with the refusal direction ablated, the others by the model as
it is. A steering file (`steering.safetensors`, written by `recipes/ablate.py --method probe`) holds the probe,
the direction and the threshold; any hf model spec takes it as the `steering` option, so every stage can use it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoalign.errors import ModelError
from evoalign.models.base import ChatModel, Sample, SamplingParams, Score, WrappedChatModel
from evoalign.progress import progress_bar
from evoalign.prompts import Conversation


def residual_writers(model: Any) -> list[Any]:
    """The embedding and every block's o_proj and down_proj; ModelError for other architectures."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = getattr(getattr(base, "model", None), "layers", None)
    model_type = getattr(base.config, "model_type", "?")
    if layers is None or not len(layers):
        raise ModelError(f"direction ablation needs a Llama-style decoder (model.layers); got model_type {model_type}")
    writers = [base.get_input_embeddings()]
    for index, layer in enumerate(layers):
        attention, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        if (
            not hasattr(attention, "o_proj")
            or not hasattr(mlp, "down_proj")
            or hasattr(layer, "post_feedforward_layernorm")
        ):
            raise ModelError(
                f"direction ablation supports Llama-style blocks (self_attn.o_proj and mlp.down_proj write the "
                f"residual stream, no post-sublayer norms); layer {index} of model_type {model_type} is not one"
            )
        writers += [attention.o_proj, mlp.down_proj]
    return writers


def unit_vector(direction: Any, like: Any) -> Any:
    """`direction` normalised to length 1, on `like`'s device and floating dtype."""
    vector = direction.detach().to(device=like.device, dtype=like.dtype if like.is_floating_point() else None)
    return vector / vector.norm()


@contextmanager
def ablation_hooks(model: Any, direction: Any) -> Iterator[None]:
    """Inside the block, every residual writer's output has its component along `direction` removed."""

    def project_out(_module: Any, _inputs: Any, output: Any) -> Any:
        unit = unit_vector(direction, output)
        return output - (output @ unit).unsqueeze(-1) * unit

    handles = [writer.register_forward_hook(project_out) for writer in residual_writers(model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def prompt_activations(
    model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], positions: Sequence[int], *, batch_size: int = 16
):
    """Residual-stream activations of token-id prompts: float32 [layers + 1, len(positions), len(prompts), hidden].

    Layer `l` is the stream entering block `l` (0: the embeddings; the last entry is the final norm's output);
    positions count from the end of each prompt (-1: its last token).
    """
    import torch

    if not prompts:
        raise ValueError("no prompts to take activations from")
    if any(len(row) < -min(positions) for row in prompts):
        raise ValueError(f"a prompt is shorter than position {min(positions)}")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    chunks = []
    with torch.no_grad(), progress_bar(total=len(prompts), desc="activations") as bar:
        for start in range(0, len(prompts), batch_size):
            rows = [list(row) for row in prompts[start : start + batch_size]]
            width = max(len(row) for row in rows)
            ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
            # logits for the last position only: the full batch x width x vocabulary logits are gigabytes
            out = model(
                input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False, logits_to_keep=1
            )
            states = torch.stack([h[:, list(positions), :] for h in out.hidden_states])  # left-padded rows
            chunks.append(states.permute(0, 2, 1, 3).float().cpu())
            bar.update(len(rows))
    return torch.cat(chunks, dim=2)


@dataclass
class Steering:
    """A probe (weight, bias at `layer`, read at `position`) and the direction ablated when it says harmless."""

    probe_weight: Any
    probe_bias: float
    layer: int
    position: int
    threshold: float  # requests with P(harmful) below it are steered
    direction: Any

    def harmful_probability(self, activations: Any) -> Any:
        """P(harmful) for activations [n, hidden] at the probe's layer and position."""
        import torch

        return torch.sigmoid(activations.float() @ self.probe_weight.float() + self.probe_bias)

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        meta = {"layer": self.layer, "position": self.position, "threshold": self.threshold, "bias": self.probe_bias}
        tensors = {
            "probe_weight": self.probe_weight.float().contiguous(),
            "direction": self.direction.float().contiguous(),
        }
        save_file(tensors, str(path), metadata={"steering": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | Path) -> Steering:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = json.loads((handle.metadata() or {})["steering"])
                weight, direction = handle.get_tensor("probe_weight"), handle.get_tensor("direction")
        except (OSError, KeyError, ValueError) as err:
            raise ModelError(f"{path}: not a steering file written by recipes/ablate.py ({err})") from None
        return cls(
            weight, float(meta["bias"]), int(meta["layer"]), int(meta["position"]), float(meta["threshold"]), direction
        )


class SteeredChatModel(WrappedChatModel):
    """An hf chat model behind probe-conditioned steering (module docstring)."""

    def __init__(self, inner: ChatModel, steering_path: str) -> None:
        super().__init__(inner)
        self.path = Path(steering_path).expanduser()
        if not self.path.is_file():
            raise ModelError(f"steering file not found: {self.path}")
        self.steering = Steering.load(self.path)
        hidden = inner.hf_model.config.hidden_size
        if self.steering.probe_weight.shape[-1] != hidden:
            raise ModelError(f"{self.path}: made for hidden size {self.steering.probe_weight.shape[-1]}, not {hidden}")
        self._identity = f"{inner.identity}|steering={hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]}"

    @property
    def identity(self) -> str:
        return self._identity

    def steered(self, conversations: list[Conversation]) -> list[bool]:
        """Whether each conversation is answered with the direction ablated (the probe finds it harmless)."""
        ids = self.inner.prompt_ids(conversations)
        acts = prompt_activations(self.hf_model, self.hf_tokenizer, ids, [self.steering.position])
        return (self.steering.harmful_probability(acts[self.steering.layer, 0]) < self.steering.threshold).tolist()

    def _split(self, conversations: list[Conversation], run: Any, *extra: list[Any]) -> list[Any]:
        """`run` on the steered conversations under the ablation hooks and on the others without; input order."""
        flags = self.steered(conversations) if conversations else []
        results: list[Any] = [None] * len(conversations)
        for flag in (True, False):
            index = [i for i, f in enumerate(flags) if f is flag]
            if not index:
                continue
            args = [[conversations[i] for i in index], *[[column[i] for i in index] for column in extra]]
            if flag:
                with ablation_hooks(self.hf_model, self.steering.direction):
                    found = run(*args)
            else:
                found = run(*args)
            for position, i in enumerate(index):
                results[i] = found[position]
        return results

    def generate(
        self, conversations: list[Conversation], params: SamplingParams | None = None, *, desc: str | None = None
    ) -> list[list[Sample]]:
        return self._split(conversations, lambda convs: self.inner.generate(convs, params, desc=desc))

    def score(self, conversations: list[Conversation], responses: list[str]) -> list[Score]:
        return self._split(conversations, self.inner.score, responses)
