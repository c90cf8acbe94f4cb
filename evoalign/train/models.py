"""Turn the recipes' `model_name_or_path` into something `from_pretrained` can load.

Accepted: what TRL accepts (a local folder or a Hub id such as `meta-llama/Llama-3.1-8B-Instruct`)
and evoalign's model specs: `hf:<folder or id>`, `smollm2`, the bundled SmolLM2-135M-Instruct
(converted once from its GGUF file to a cached safetensors folder by `evoalign.models.bundled`), and
`smollm2-guarded`, the learnt over-refusing base built from it (`recipes/guarded_base.py`).
"""

from __future__ import annotations

from evoalign.errors import ConfigError, ModelError


def resolve_model_path(spec: str) -> str:
    """A local path or Hub id for model spec `spec`."""
    from evoalign.models import BUNDLED, bundled_path, parse_spec

    if ":" not in spec and spec not in BUNDLED:
        return spec

    try:
        backend, target, _ = parse_spec(spec)
    except ModelError as err:
        raise ConfigError(f"model_name_or_path: {err}") from None
    if backend in BUNDLED:
        try:
            return bundled_path(backend)
        except ModelError as err:
            raise ConfigError(f"model_name_or_path: {err}") from None
    if backend == "openai":
        raise ConfigError(f"model '{spec}' is served over an API and cannot be fine-tuned; use a local or Hub model")
    if target.endswith(".gguf"):
        raise ConfigError(f"model '{spec}': GGUF files cannot be fine-tuned; convert to safetensors first")
    return target
