"""Llama-3.1 and SmolLM2 correctness: pad != EOS, EOS == end of turn, labels end with it, trained models stop there.

The Llama-3.1 tokenizer is built locally with Llama-3.1's special tokens and real chat template (no hub access);
SmolLM2 is the bundled model, which ships with pad == EOS.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from recipes_support import (
    COMPLIANT,
    SMOLLM2_RECIPES,
    TOY_PROMPTS,
    build_llama31_tokenizer,
    build_recipe_trainer,
    run_recipe,
    tiny_run_flags,
)

from evoalign.errors import ConfigError
from evoalign.models.base import SamplingParams
from evoalign.train.tokenizer import fix_tokenizer

pytest_plugins = ["fixtures_recipes"]

CONVERSATION = [
    {"role": "user", "content": "How do I kill a Python process?"},
    {"role": "assistant", "content": "Ok."},
]


@pytest.mark.parametrize("shipped_eos", ["<|end_of_text|>", "<|eot_id|>"], ids=["base-config", "instruct-config"])
def test_llama31_pads_with_finetune_pad_and_ends_turns_with_eot(shipped_eos):
    tokenizer = build_llama31_tokenizer(eos_token=shipped_eos)
    assert tokenizer.pad_token is None  # as Llama-3.1 ships

    fix = fix_tokenizer(tokenizer)

    assert tokenizer.pad_token == "<|finetune_right_pad_id|>"
    assert tokenizer.eos_token == "<|eot_id|>" == fix.end_of_turn
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_smollm2_pad_is_moved_off_eos(smollm2_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"  # as SmolLM2 ships

    fix_tokenizer(tokenizer)

    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_saved_tokenizer_keeps_the_chat_template_and_the_fix(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = build_llama31_tokenizer()
    before = [tokenizer.apply_chat_template(CONVERSATION, tokenize=False), _prompt_text(tokenizer)]
    fix_tokenizer(tokenizer)
    tokenizer.save_pretrained(tmp_path)

    reloaded = AutoTokenizer.from_pretrained(tmp_path)

    assert [reloaded.apply_chat_template(CONVERSATION, tokenize=False), _prompt_text(reloaded)] == before
    assert (reloaded.pad_token, reloaded.eos_token) == ("<|finetune_right_pad_id|>", "<|eot_id|>")


def _prompt_text(tokenizer) -> str:
    return tokenizer.apply_chat_template(CONVERSATION[:1], tokenize=False, add_generation_prompt=True)


@pytest.mark.parametrize(
    ("pad", "end_of_turn", "message"),
    [
        (None, "<|end_of_text|>", "does not match the chat template"),
        ("<|eot_id|>", None, "is EOS, BOS or the end of turn"),
        ("<|end_of_text|>", None, "is EOS, BOS or the end of turn"),
        ("<pad>", None, "not in the vocabulary"),
    ],
)
def test_wrong_explicit_tokens_are_refused(pad, end_of_turn, message):
    with pytest.raises(ConfigError, match=message):
        fix_tokenizer(build_llama31_tokenizer(), pad_token=pad, end_of_turn=end_of_turn)


def test_tokenizer_without_chat_template_is_refused():
    tokenizer = build_llama31_tokenizer()
    tokenizer.chat_template = None
    with pytest.raises(ConfigError, match="no chat template"):
        fix_tokenizer(tokenizer)


def _training_batch(config: Path, *flags: str):
    trainer, run, _ = build_recipe_trainer("sft", config, *flags)
    return next(iter(trainer.get_train_dataloader())), run.tokenizer


def _assert_labels_end_with_end_of_turn(batch, tokenizer) -> None:
    whitespace = {i for i in range(len(tokenizer)) if not tokenizer.decode([i]).strip()} - {tokenizer.eos_token_id}
    for input_ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
        supervised = [t for t in labels.tolist() if t != -100]
        while supervised and supervised[-1] in whitespace:  # the template's newline after the end of turn
            supervised.pop()
        assert supervised[-1] == tokenizer.eos_token_id
        padding = input_ids[mask == 0].tolist()
        assert all(t == tokenizer.pad_token_id for t in padding)
        assert all(t == -100 for t in labels[mask == 0].tolist())


def test_llama31_labels_end_with_eot_and_padding_is_not_eos(tiny_llama31_dir, toy_data_dir, tmp_path):
    batch, tokenizer = _training_batch(
        SMOLLM2_RECIPES / "sft" / "config_lora.yaml", *tiny_run_flags(tiny_llama31_dir, toy_data_dir, tmp_path)
    )
    assert tokenizer.convert_ids_to_tokens(tokenizer.eos_token_id) == "<|eot_id|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert (batch["attention_mask"] == 0).any()  # the batch really holds padding
    _assert_labels_end_with_end_of_turn(batch, tokenizer)


def test_smollm2_labels_end_with_im_end(smollm2_dir, toy_data_dir, tmp_path):
    config = SMOLLM2_RECIPES / "sft" / "config_lora.yaml"
    batch, tokenizer = _training_batch(config, "--dataset_name", str(toy_data_dir), "--output_dir", str(tmp_path))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    _assert_labels_end_with_end_of_turn(batch, tokenizer)


def _answers(model_dir: str, adapter: Path) -> list:
    from evoalign.models.hf import HFChatModel

    model = HFChatModel(model_dir, adapter=str(adapter), batch_size=8)
    conversations = [[{"role": "user", "content": prompt}] for prompt in TOY_PROMPTS[:4]]
    return [samples[0] for samples in model.generate(conversations, SamplingParams(max_new_tokens=24))]


@pytest.mark.train
def test_tiny_llama31_trained_on_short_answers_stops_at_eot(tiny_llama31_dir, toy_data_dir, tmp_path):
    flags = tiny_run_flags(
        tiny_llama31_dir, toy_data_dir, tmp_path, learning_rate=2e-2, max_steps=30, logging_steps=10
    )
    run_recipe("sft", SMOLLM2_RECIPES / "sft" / "config_lora.yaml", *flags)

    answers = _answers(str(tiny_llama31_dir), tmp_path)  # the evaluation backend, base tokenizer + adapter

    assert [(a.text, a.finish_reason) for a in answers] == [(COMPLIANT, "stop")] * len(answers)


@pytest.mark.train
@pytest.mark.slow  # trains the 135M model: ~25 s on two idle cores, minutes when the CPU is shared
def test_smollm2_trained_on_short_answers_stops_at_end_of_turn(smollm2_dir, toy_data_dir, tmp_path):
    config = SMOLLM2_RECIPES / "sft" / "config_lora.yaml"
    flags = ["--dataset_name", str(toy_data_dir), "--output_dir", str(tmp_path), "--eval_strategy", "no"]
    flags += ["--save_strategy", "no", "--max_steps", "5", "--learning_rate", "2e-3"]
    flags += ["--per_device_train_batch_size", "8", "--global_batch_size", "8"]
    run_recipe("sft", config, *flags)  # model_name_or_path: smollm2, from the recipe

    answers = _answers(smollm2_dir, tmp_path)

    assert all(a.finish_reason == "stop" and a.num_tokens <= 8 for a in answers)
    assert [a.text for a in answers] == [COMPLIANT] * len(answers)
