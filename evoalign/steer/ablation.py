"""Direction ablation as a weight edit: the same outputs as `evoalign.models.steering.ablation_hooks`, for good.

The projection that removes a unit direction `u` from the residual stream is folded into every residual writer
(`W <- W - u u^T W`; the embedding `E <- E - E u u^T`; biases too), so the edited model needs nothing at
inference and saves as an ordinary model folder. A tied output embedding is untied first, so the language-model
head keeps reading the original vocabulary.
"""

from __future__ import annotations

from typing import Any

from evoalign.models.steering import residual_writers, unit_vector


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
        unit = unit_vector(direction, embedding.float())
        edited = embedding.float() - torch.outer(embedding.float() @ unit, unit)
        embedding.copy_(edited.to(embedding.dtype))
        for linear in writers[1:]:
            weight = linear.weight.float()
            linear.weight.copy_((weight - torch.outer(unit, unit @ weight)).to(linear.weight.dtype))
            if linear.bias is not None:
                bias = linear.bias.float()
                linear.bias.copy_((bias - (bias @ unit) * unit).to(linear.bias.dtype))
