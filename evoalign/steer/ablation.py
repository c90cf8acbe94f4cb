"""Remove a direction from the residual stream: reversibly with hooks, or for good as a weight edit.

In a Llama-style decoder (Llama, Mistral, Qwen2, SmolLM2) only three kinds of modules write to the residual
stream: the token embedding, each block's attention output projection (`self_attn.o_proj`) and its MLP output
projection (`mlp.down_proj`). Projecting a unit direction `u` out of all of their outputs removes `u` from every
layer and position (Arditi et al. 2024; Wang et al. 2025). `ablation_hooks` does it with forward hooks, to try
candidates without copying weights; `ablate_weights` folds the same projection into the weights
(`W <- W - u u^T W`, the embedding `E <- E - E u u^T`), which gives the same outputs with no cost at inference.
A tied output embedding is untied first, so the language-model head keeps reading the original vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from evoalign.errors import ModelError


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
                f"direction ablation supports Llama-style blocks (self_attn.o_proj and mlp.down_proj write the residual "
                f"stream, no post-sublayer norms); layer {index} of model_type {model_type} is not one"
            )
        writers += [attention.o_proj, mlp.down_proj]
    return writers


def _unit(direction: Any, like: Any) -> Any:
    vector = direction.detach().to(device=like.device, dtype=like.dtype if like.is_floating_point() else None)
    return vector / vector.norm()


@contextmanager
def ablation_hooks(model: Any, direction: Any) -> Iterator[None]:
    """Inside the block, every residual writer's output has its component along `direction` removed."""

    def project_out(_module: Any, _inputs: Any, output: Any) -> Any:
        unit = _unit(direction, output)
        return output - (output @ unit).unsqueeze(-1) * unit

    handles = [writer.register_forward_hook(project_out) for writer in residual_writers(model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _untie_output_embedding(model: Any) -> None:
    import torch

    head = model.get_output_embeddings()
    if head is None or head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        return
    head.weight = torch.nn.Parameter(head.weight.detach().clone())
    model.config.tie_word_embeddings = False
    text_config = getattr(model.config, "get_text_config", lambda: None)()
    if text_config is not None:
        text_config.tie_word_embeddings = False


def ablate_weights(model: Any, direction: Any) -> None:
    """Fold the projection that removes `direction` into the residual writers' weights, in place."""
    import torch

    writers = residual_writers(model)
    _untie_output_embedding(model)
    with torch.no_grad():
        embedding = writers[0].weight
        unit = _unit(direction, embedding.float())
        edited = embedding.float() - torch.outer(embedding.float() @ unit, unit)
        embedding.copy_(edited.to(embedding.dtype))
        for linear in writers[1:]:
            weight = linear.weight.float()
            linear.weight.copy_((weight - torch.outer(unit, unit @ weight)).to(linear.weight.dtype))
            if linear.bias is not None:
                bias = linear.bias.float()
                linear.bias.copy_((bias - (bias @ unit) * unit).to(linear.bias.dtype))
