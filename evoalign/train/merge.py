"""Fold a LoRA adapter into its base model and save a full model.

Needed to run DPO after SFT: TRL refuses a `PeftModel` together with a `peft_config`, so the SFT
adapter is merged into the base first, and DPO trains a fresh adapter on the merged model (which
is then also the DPO reference model, as it should be). The base is always loaded unquantized: merging
into 4-bit weights would round the update away, so a QLoRA adapter is merged into bf16 weights too.
The tokenizer saved with the adapter (fixed pad and end-of-turn tokens, unchanged chat template) is
saved with the merged model, and its end of turn is put first among the generation EOS ids.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from evoalign.errors import ConfigError
from evoalign.models.refusal_tokens import prepare_base_for_adapter
from evoalign.train.models import resolve_model_path
from evoalign.train.tokenizer import align_model_with_tokenizer

logger = logging.getLogger("evoalign.train")


def adapter_base_model(adapter_path: str | Path) -> str:
    """The base model recorded in the adapter's `adapter_config.json`."""
    config_path = Path(adapter_path) / "adapter_config.json"
    if not config_path.is_file():
        raise ConfigError(f"{adapter_path}: no adapter_config.json; is this the output_dir of a LoRA recipe?")
    base = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"{config_path}: no base_model_name_or_path; pass base_model explicitly")
    return base


def merge_adapter(
    adapter_path: str | Path,
    output_dir: str | Path,
    *,
    base_model: str | None = None,
    dtype: str = "bfloat16",
    trust_remote_code: bool = False,
) -> Path:
    """Merge the adapter in `adapter_path` into its base model and save model + tokenizer to `output_dir`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_path = resolve_model_path(base_model or adapter_base_model(adapter_path))
    logger.info("merging %s into %s", adapter_path, base_path)
    model = AutoModelForCausalLM.from_pretrained(
        base_path, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code
    )
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_path), trust_remote_code=trust_remote_code)
    # refusal tokens added in training: the adapter holds their rows (and untied output rows, if any)
    prepare_base_for_adapter(model, tokenizer, adapter_path)
    merged = PeftModel.from_pretrained(model, str(adapter_path)).merge_and_unload()
    align_model_with_tokenizer(merged, tokenizer)
    output_dir = Path(output_dir)
    merged.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    logger.info("saved the merged model to %s", output_dir)
    return output_dir
