"""Shared fixtures: the bundled SmolLM2 (converted once into the user cache) and tiny random chat models.

Everything is built locally; nothing is downloaded from a hub.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """A safetensors directory of the bundled SmolLM2-135M-Instruct."""
    from evoalign.models.bundled import smollm2_path

    return smollm2_path()


@pytest.fixture(scope="session")
def smollm2(smollm2_dir):
    """The bundled model as a ChatModel (loaded once per test session)."""
    from evoalign.models.hf import HFChatModel

    return HFChatModel(smollm2_dir, spec="smollm2", batch_size=32)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_dir) -> str:
    """A tiny randomly initialised Llama with SmolLM2's tokenizer and chat template (fast unit tests)."""
    from recipes_support import build_tiny_llama
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    return str(build_tiny_llama(path, tokenizer, hidden_size=32, tie_word_embeddings=True))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from evoalign.models.hf import HFChatModel

    return HFChatModel(tiny_model_dir, batch_size=16)
