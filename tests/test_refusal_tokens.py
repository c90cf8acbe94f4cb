"""Refusal tokens (arXiv 2412.06748): SFT adds, trains and saves the control tokens; the hf backend strips them and
steers the first token with `refusal_bias` (odds x e^b) or `refusal_threshold`; eval sweeps the knob as one curve.

Everything runs on tiny random Llama models with the Llama-3.1-style tokenizer built in `recipes_support`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from unittest import mock

import pytest
import torch
from recipes_support import (
    COMPLIANT,
    REFUSAL,
    SMOLLM2_RECIPES,
    TOY_PROMPTS,
    build_llama31_tokenizer,
    build_recipe_trainer,
    build_tiny_llama,
    tiny_run_flags,
)

from evoalign.errors import ConfigError, DataError, ModelError
from evoalign.models import parse_spec
from evoalign.models.hf import HFChatModel
from evoalign.models.refusal_tokens import REFUSE, RESPOND, ControlTokens, RefusalKnob, category_token
from evoalign.train.refusal_tokens import apply_to_splits

SFT_LORA = SMOLLM2_RECIPES / "sft" / "config_lora.yaml"
CATEGORIES = ["weapons", "Hate speech", None, "weapons"]
CONVERSATION = [{"role": "user", "content": "How do I kill a Python process?"}]


def _rows() -> list[dict]:
    """Benign rows answered, safety rows refused (with categories), as the build stage writes them."""
    rows = []
    for index, prompt in enumerate(TOY_PROMPTS):
        safety = index % 2 == 1
        rows.append(
            {
                "id": f"row-{index}",
                "kind": "safety" if safety else "benign",
                "source": "toy",
                "category": CATEGORIES[index // 2] if safety else None,
                "prompt": [{"role": "user", "content": prompt}],
                "completion": [{"role": "assistant", "content": REFUSAL if safety else COMPLIANT}],
            }
        )
    return rows


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("refusal-data")
    for split in ("train_sft", "test_sft"):
        (path / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in _rows()))
    return path


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    """A tiny Llama with an untied output embedding (like Llama-3.1-8B)."""
    return build_tiny_llama(tmp_path_factory.mktemp("base"), build_llama31_tokenizer())


@pytest.fixture(scope="module")
def control_model_dir(tmp_path_factory) -> Path:
    """A tiny model whose tokenizer already holds <|refuse|> and <|respond|> (no training needed for the knob)."""
    tokenizer = build_llama31_tokenizer()
    tokenizer.pad_token = "<|finetune_right_pad_id|>"
    tokenizer.add_tokens([REFUSE, RESPOND], special_tokens=True)
    return build_tiny_llama(tmp_path_factory.mktemp("control"), tokenizer)


@pytest.fixture(scope="module")
def trained(base_dir, data_dir, tmp_path_factory):
    """An SFT run with refusal_tokens single: the trainer (after training) and its output folder."""
    from evoalign.train.run import train_and_save

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("sft-refusal")
    flags = tiny_run_flags(base_dir, data_dir, out, refusal_tokens="single", max_steps=6)
    trainer, run, (script_args, _, model_args) = build_recipe_trainer("sft", SFT_LORA, *flags)
    deltas = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "trainable_tokens_delta" in n}
    train_and_save(trainer, run, script_args, model_args)
    return trainer, run, deltas, out


def _token_row_change(base_dir, data_dir, out, token_learning_rate) -> dict[str, float]:
    """How far training moved the control tokens' rows at a small LoRA learning rate, per embedding module."""
    from evoalign.train.run import train_and_save

    flags = tiny_run_flags(
        base_dir,
        data_dir,
        out,
        refusal_tokens="single",
        max_steps=3,
        learning_rate=1e-4,
        refusal_token_learning_rate=token_learning_rate,
    )
    trainer, run, (script_args, _, model_args) = build_recipe_trainer("sft", SFT_LORA, *flags)
    rows = {n: p for n, p in trainer.model.named_parameters() if "trainable_tokens_delta" in n}
    before = {n: p.detach().clone() for n, p in rows.items()}
    train_and_save(trainer, run, script_args, model_args)
    return {
        n.split(".token_adapter")[0].rsplit(".", 1)[-1]: float((p.detach() - before[n]).norm())
        for n, p in rows.items()
    }


@pytest.mark.train
def test_token_rows_train_at_their_own_learning_rate(base_dir, data_dir, tmp_path):
    torch.set_num_threads(1)
    same = _token_row_change(base_dir, data_dir, tmp_path / "same", 0)
    own = _token_row_change(base_dir, data_dir, tmp_path / "own", 1e-2)
    assert own["lm_head"] > 20 * same["lm_head"] > 0  # the output rows (logits) at their own rate
    assert 0 < own["embed_tokens"] < 2 * same["embed_tokens"]  # the input rows at the run's


def test_negative_token_learning_rate_is_an_error(base_dir, data_dir, tmp_path):
    flags = tiny_run_flags(base_dir, data_dir, tmp_path, refusal_tokens="single", refusal_token_learning_rate=-1)
    with pytest.raises(ConfigError, match="refusal_token_learning_rate must be >= 0, got -1"):
        build_recipe_trainer("sft", SFT_LORA, *flags)


def _first_logits(model: HFChatModel, conversation=CONVERSATION) -> torch.Tensor:
    ids = torch.tensor(model.prompt_ids([conversation]), device=model.device)
    with torch.inference_mode():
        return model.hf_model(input_ids=ids).logits[0, -1].float()


@pytest.mark.train
def test_sft_adds_trains_and_saves_only_the_token_rows(trained):
    trainer, run, before, out = trained
    tokenizer = run.tokenizer
    ids = tokenizer.convert_tokens_to_ids([REFUSE, RESPOND])
    assert all(tokenizer.added_tokens_decoder[i].special for i in ids)
    completions = [row["completion"][0]["content"] for row in run.train_dataset]
    kinds = [row["kind"] for row in run.train_dataset]
    assert all(c.startswith(REFUSE if k == "safety" else RESPOND) for c, k in zip(completions, kinds))
    # input and (untied) output rows of the new tokens are trainable, and training moved them
    assert {name.split(".token_adapter")[0].rsplit(".", 1)[-1] for name in before} == {"embed_tokens", "lm_head"}
    after = dict(trainer.model.named_parameters())
    assert all(not torch.equal(after[name], value) for name, value in before.items())
    from safetensors.torch import load_file

    saved = load_file(out / "adapter_model.safetensors")
    assert any("trainable_tokens_delta" in key for key in saved)
    assert all("lora_" in key or "trainable_tokens_delta" in key for key in saved)  # no whole embedding matrix
    assert json.loads((out / "run_config.json").read_text())["refusal_tokens"]["tokens"] == [REFUSE, RESPOND]


@pytest.mark.train
def test_adapter_and_merged_model_reload_with_the_trained_rows_and_strip_the_tokens(trained, base_dir, tmp_path):
    from evoalign.train.merge import merge_adapter

    trainer, run, _, out = trained
    merged_dir = merge_adapter(out, tmp_path / "merged", base_model=str(base_dir), dtype="float32")
    loads = [{"path": str(base_dir), "adapter": str(out)}, {"path": str(merged_dir)}]
    trainer.model.eval()
    ids = torch.tensor(HFChatModel(**loads[1], device="cpu").prompt_ids([CONVERSATION]))
    with torch.inference_mode():
        expected = trainer.model(input_ids=ids).logits[0, -1].float()
    for load in loads:
        model = HFChatModel(**load, device="cpu")
        assert len(model.hf_tokenizer) == len(run.tokenizer)
        torch.testing.assert_close(_first_logits(model), expected, atol=1e-4, rtol=1e-4)
        assert "<|" not in model.generate([CONVERSATION])[0][0].text
        forced = HFChatModel(**load, device="cpu", refusal_threshold=0.0).generate([CONVERSATION])[0][0]
        assert forced.tokens[0] == REFUSE and "<|" not in forced.text


@pytest.mark.train
def test_per_category_on_a_tied_embedding_trains_reloads_and_steers_by_category(data_dir, tmp_path):
    from evoalign.train.run import train_and_save

    torch.set_num_threads(1)
    base = build_tiny_llama(tmp_path / "tied", build_llama31_tokenizer(), tie_word_embeddings=True)
    flags = tiny_run_flags(base, data_dir, tmp_path / "out", refusal_tokens="per_category", max_steps=3)
    trainer, run, (script_args, _, model_args) = build_recipe_trainer("sft", SFT_LORA, *flags)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "trainable_tokens_delta" in n}
    train_and_save(trainer, run, script_args, model_args)
    # the tied output embedding is untied: the control tokens get output rows apart from their input rows
    assert {name.split(".token_adapter")[0].rsplit(".", 1)[-1] for name in before} == {"embed_tokens", "lm_head"}
    after = dict(trainer.model.named_parameters())
    assert all(not torch.equal(after[n], v) for n, v in before.items())
    model = HFChatModel(str(base), adapter=str(tmp_path / "out"), device="cpu", refusal_bias={"weapons": 1e4})
    sample = model.generate([CONVERSATION])[0][0]
    assert sample.tokens[0] == category_token("weapons") and "<|" not in sample.text
    ids = torch.tensor(model.prompt_ids([CONVERSATION]))
    trainer.model.eval()
    with torch.inference_mode():  # the tied base, untied for the adapter, gives the trained model's logits
        expected = trainer.model(input_ids=ids).logits[0, -1]
    torch.testing.assert_close(_first_logits(model), expected.float(), atol=1e-4, rtol=1e-4)
    untied = model.hf_model.get_base_model()
    assert untied.get_output_embeddings().weight is not untied.get_input_embeddings().weight
    from evoalign.train.merge import merge_adapter

    merged = HFChatModel(
        str(merge_adapter(tmp_path / "out", tmp_path / "merged", base_model=str(base), dtype="float32"))
    )
    torch.testing.assert_close(_first_logits(merged), expected.float(), atol=1e-4, rtol=1e-4)
    assert merged.hf_model.config.tie_word_embeddings is False


def test_bias_multiplies_the_odds_of_refusing_by_exp_b(control_model_dir):
    plain = HFChatModel(str(control_model_dir), device="cpu")
    logits = _first_logits(plain)
    refuse = plain.hf_tokenizer.convert_tokens_to_ids(REFUSE)
    p = torch.softmax(logits, -1)[refuse].item()
    bias = (logits.max() - logits[refuse]).item() + 0.5  # enough to make <|refuse|> the greedy choice
    steered = HFChatModel(str(control_model_dir), device="cpu", refusal_bias=bias)
    sample = steered.generate([CONVERSATION])[0][0]
    assert sample.tokens[0] == REFUSE and "<|" not in sample.text
    p_steered = math.exp(sample.token_logprobs[0])
    assert p_steered / (1 - p_steered) == pytest.approx(math.exp(bias) * p / (1 - p), rel=1e-3)
    assert steered.identity != plain.identity  # cached answers never cross knob settings
    lowered = HFChatModel(str(control_model_dir), device="cpu", refusal_bias=-1e4).generate([CONVERSATION])[0][0]
    assert lowered.tokens[0] != REFUSE


def test_threshold_forces_refuse_or_respond(control_model_dir):
    plain = HFChatModel(str(control_model_dir), device="cpu")
    refuse = plain.hf_tokenizer.convert_tokens_to_ids(REFUSE)
    p = torch.softmax(_first_logits(plain), -1)[refuse].item()
    for threshold, first in ((p * 0.99, REFUSE), (min(1.0, p * 1.01), RESPOND)):
        model = HFChatModel(str(control_model_dir), device="cpu", refusal_threshold=threshold)
        samples = model.generate([CONVERSATION, CONVERSATION[:1]], None)
        assert all(s[0].tokens[0] == first and "<|" not in s[0].text for s in samples)


def test_per_category_tokens_and_category_bias():
    from datasets import Dataset

    tokenizer = build_llama31_tokenizer()
    splits, setup = apply_to_splits("per_category", tokenizer, {"train": Dataset.from_list(_rows())}, "toy")
    expected = [category_token(c) for c in ("hate_speech", "other", "weapons")]
    assert setup.tokens == (*expected, RESPOND) and setup.rows[category_token("weapons")] == 2
    firsts = [row["completion"][0]["content"] for row in splits["train"] if row["kind"] == "safety"]
    assert [f[: f.index("|>") + 2] for f in firsts] == [category_token(c or "other") for c in CATEGORIES]
    tokens = ControlTokens.of(tokenizer)
    assert set(tokens.refuse) == {"hate_speech", "other", "weapons"} and tokens.respond is not None
    knob = RefusalKnob.resolve("toy", tokenizer, {"weapons": 2.0})
    assert knob.bias == {tokens.refuse["weapons"]: 2.0}
    scores = torch.zeros(1, len(tokenizer))
    biased = knob.processor(start=3)(torch.zeros(1, 3, dtype=torch.long), scores)
    assert biased[0, tokens.refuse["weapons"]] == 2.0 and biased.sum() == 2.0
    assert torch.equal(knob.processor(start=3)(torch.zeros(1, 4, dtype=torch.long), scores), scores)  # first only
    with pytest.raises(ModelError, match="refusal_bias.*unknown categories violence"):
        RefusalKnob.resolve("toy", tokenizer, {"violence": 1.0})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"refusal_threshold": 1.5}, "option 'refusal_threshold' must be a number in \\[0, 1\\], got 1.5"),
        ({"refusal_threshold": "high"}, "option 'refusal_threshold' must be a number"),
        ({"refusal_bias": float("nan")}, "option 'refusal_bias' must be a finite number"),
        ({"refusal_bias": {"weapons": "x"}}, "option 'refusal_bias.weapons' must be a finite number"),
        ({"refusal_bias": True}, "option 'refusal_bias' must be a finite number"),
        ({"refusal_bias": 1.0, "refusal_threshold": 0.5}, "'refusal_bias' and 'refusal_threshold'"),
    ],
)
def test_bad_knob_values_are_one_line_errors_naming_the_option(options, message):
    with pytest.raises(ModelError, match=message) as err:
        parse_spec({"spec": "hf:some/model", **options})
    assert "\n" not in str(err.value)


def test_knob_on_a_model_without_refusal_tokens_is_an_error(base_dir):
    with pytest.raises(ModelError, match="option 'refusal_bias' needs a model trained with refusal tokens"):
        HFChatModel(str(base_dir), device="cpu", refusal_bias=1.0)
    with pytest.raises(ModelError, match="unknown option"):
        parse_spec({"spec": "openai:gpt-4o", "refusal_bias": 1.0})


def test_bad_training_inputs_name_the_field():
    from datasets import Dataset

    rows = Dataset.from_list(_rows())
    with pytest.raises(ConfigError, match="refusal_tokens must be one of none, single, per_category"):
        apply_to_splits("always", build_llama31_tokenizer(), {"train": rows}, "toy")
    with pytest.raises(DataError, match="needs the build stage's 'kind' column"):
        apply_to_splits("single", build_llama31_tokenizer(), {"train": rows.remove_columns("kind")}, "toy")
    with pytest.raises(DataError, match="per_category needs a 'category' column"):
        apply_to_splits("per_category", build_llama31_tokenizer(), {"train": rows.remove_columns("category")}, "toy")


def test_build_keeps_the_harmful_prompt_category(tmp_path):
    from evoalign.build.safety import load_harmful_prompts

    path = tmp_path / "harmful.jsonl"
    path.write_text('{"instruction": "Make a weapon.", "category": "weapons"}\n{"instruction": "Do harm."}\n')
    examples = load_harmful_prompts(str(path))
    for example in examples:
        example.answer = REFUSAL
    assert [e.sft_row()["category"] for e in examples] == ["weapons", None]


def test_eval_sweep_is_one_curve():
    from test_eval_report import _run

    from evoalign.eval.plot import _curves, _style
    from evoalign.eval.report import run_label
    from evoalign.eval.runner import EvalConfig, model_entries

    sweep = [{"spec": "hf:runs/sft-merged", "refusal_bias": b, "curve": "refusal bias"} for b in (-2.0, 0.0, 2.0)]
    entries = model_entries(EvalConfig(models=[*sweep, "smollm2"]))
    assert [e.name for e in entries[:3]] == [f"hf:runs/sft-merged refusal_bias={b}" for b in (-2.0, 0.0, 2.0)]
    assert [e.curve for e in entries] == ["refusal bias"] * 3 + [None]
    assert entries[0].options["refusal_bias"] == -2.0
    runs = [_run(e.name, "default", 4 * i, 5 * i) | {"curve": e.curve} for i, e in enumerate(entries, 1)]
    points = {run_label(r): (4 * i / 20 * 100, 5 * i / 20 * 100) for i, r in enumerate(runs, 1)}
    styles = _style(runs)
    assert len({styles[run_label(r)][0] for r in runs[:3]}) == 1 != len({styles[run_label(r)][0] for r in runs})
    ax = mock.Mock()
    _curves(ax, runs, points, styles)
    (xs, ys), _ = ax.plot.call_args
    assert ax.plot.call_count == 1 and list(xs) == [20.0, 40.0, 60.0] and list(ys) == [25.0, 50.0, 75.0]
    with pytest.raises(ConfigError, match="'curve' is a name"):
        model_entries(EvalConfig(models=[{"spec": "smollm2", "curve": 3}]))


@pytest.mark.parametrize("model", ["smollm2-135m-instruct", "llama-3.1-8b-instruct"])
def test_recipe_configs_turn_refusal_tokens_on(model):
    from recipes_support import RECIPES, load_recipe

    config = RECIPES / model / "sft" / "config_refusal_tokens.yaml"
    script, training, model_args = load_recipe("sft")["make_parser"]().parse_args_and_config(
        ["--config", str(config), "--use_cpu", "true"]
    )
    assert script.refusal_tokens == "single" and model_args.use_peft
    assert training.output_dir.endswith("sft-refusal-tokens")
