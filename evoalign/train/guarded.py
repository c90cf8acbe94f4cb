"""A weights-level over-refusing base: SmolLM2 safety-tuned by our own SFT recipe (issue 18).

SmolLM2-135M-Instruct alone refuses almost nothing. Real over-refusal is learnt: a model taught to refuse harmful
requests generalises the refusal to harmless requests that look like them. This recipe teaches it that way,
from the project's own prompt files and the model's own words:

- harmful training requests -> the model's refusals when it sits behind the refusal-prone prompt
  (`refusal_condition`), kept only where the judge calls the answer a refusal;
- ordinary instructions -> the model's own answers without any prompt (`answer_condition`), kept only where the
  judge calls them compliance (answers cut at `max_new_tokens` are trimmed to their last full sentence by
  default, see `truncated`).

The pairs are written without the prompt (the SFT set is `train_sft`/`test_sft`, conversational
prompt/completion), trained with the SmolLM2 LoRA SFT recipe, merged, and saved as a plain model folder in
evoalign's cache, where the `smollm2-guarded` model spec finds it. No evaluation set is read.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoalign.benchmarks import check_suite, load_suite
from evoalign.config import config_to_dict, parse_config
from evoalign.errors import ConfigError, DataError
from evoalign.io import atomic_write_json, atomic_write_jsonl
from evoalign.judges.base import COMPLIANCE, is_refusing
from evoalign.judges.loading import check_judge, load_judge
from evoalign.models import check_spec, load_model
from evoalign.models.base import SamplingParams
from evoalign.models.bundled import guarded_path
from evoalign.models.pool import ModelPool
from evoalign.prompts import check_condition, with_condition
from evoalign.runinfo import write_run_info
from evoalign.text import final_text

logger = logging.getLogger("evoalign.train")


@dataclass
class GuardedBaseConfig:
    """Arguments of `recipes/guarded_base.py`."""

    harmful: Any = field(
        default_factory=lambda: {
            "harmful_train": {
                "path": "datagen/seeds/harmful_train.jsonl",
                "kind": "harmful",
                "fields": {"prompt": "instruction"},
            }
        },
        metadata={"help": "Harmful training requests (a prompt suite, as in eval's benchmarks)."},
    )
    ordinary: Any = field(
        default_factory=lambda: {
            "ordinary": {"path": "datagen/seeds/ordinary.jsonl", "kind": "benign", "fields": {"prompt": "instruction"}}
        },
        metadata={"help": "Ordinary training instructions (a prompt suite)."},
    )
    teacher: Any = field(default="smollm2", metadata={"help": "The model that writes both sides and is trained."})
    refusal_condition: Any = field(default="refusal_prone", metadata={"help": "Context in which it writes refusals."})
    answer_condition: Any = field(default="default", metadata={"help": "Context in which it writes answers."})
    judge: str = field(default="evoalign", metadata={"help": "Judge that keeps refusals and compliant answers."})
    max_new_tokens: int = field(default=160, metadata={"help": "Tokens per written answer."})
    temperature: float = field(
        default=0.0, metadata={"help": "Sampling temperature of the written answers (0: greedy)."}
    )
    truncated: str = field(
        default="trim",
        metadata={
            "help": "An answer cut at max_new_tokens is trimmed to its last sentence, kept, or dropped.",
            "choices": ["trim", "keep", "drop"],
        },
    )
    test_fraction: float = field(default=0.1, metadata={"help": "Share of the rows held out as test_sft."})
    sft_config: str = field(
        default="recipes/smollm2-135m-instruct/sft/config_lora.yaml", metadata={"help": "The SFT recipe config."}
    )
    sft_args: list[str] = field(default_factory=list, metadata={"help": "Extra SFT recipe flags (--key value ...)."})
    work_dir: str = field(default="runs/guarded-base", metadata={"help": "Data and adapter of the run."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Where the merged model goes; default the cache folder smollm2-guarded loads."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the train/test split."})

    def validate(self, where: str) -> None:
        check_spec(self.teacher, f"{where}: 'teacher'")
        check_judge(self.judge, f"{where}: 'judge'")
        check_suite(self.harmful, f"{where}: 'harmful'")
        check_suite(self.ordinary, f"{where}: 'ordinary'")
        for name in ("refusal_condition", "answer_condition"):
            check_condition(getattr(self, name), f"{where}: '{name}'")
        if not 0 < self.test_fraction < 0.5:
            raise ConfigError(f"{where}: 'test_fraction' must be in (0, 0.5), got {self.test_fraction}")
        if not Path(self.sft_config).is_file():
            raise ConfigError(f"{where}: 'sft_config' {self.sft_config} is not a file")


def _prompts(suite: Any) -> list[str]:
    return [item["prompt"] for data in load_suite(suite) for item in data.items]


def _written(model: Any, judge: Any, prompts: list[str], condition: Any, wanted: str, config: GuardedBaseConfig):
    """(prompt, text) pairs whose answer in `condition` the judge labels `wanted` (refusal or compliance)."""
    params = SamplingParams(temperature=config.temperature, max_new_tokens=config.max_new_tokens, seed=config.seed)
    answers = model.generate(with_condition(prompts, condition), params, desc=f"writing {wanted}")
    texts = [final_text(a[0].text, a[0].finish_reason, config.truncated) or "" for a in answers]
    labels = [r["label"] for r in judge.classify([{"prompt": p, "response": t} for p, t in zip(prompts, texts)])]
    keep = (lambda label: is_refusing(label)) if wanted == "refusal" else (lambda label: label == COMPLIANCE)
    return [(p, t) for p, t, label in zip(prompts, texts, labels) if t and keep(label)]


def write_guarded_data(config: GuardedBaseConfig, data_dir: Path) -> dict[str, Any]:
    """Write train_sft.jsonl / test_sft.jsonl into `data_dir`; returns the counts (summary.json)."""
    harmful, ordinary = _prompts(config.harmful), _prompts(config.ordinary)
    with ModelPool() as pool:
        model = load_model(config.teacher)
        judge = load_judge(config.judge, pool)
        refusals = _written(model, judge, harmful, config.refusal_condition, "refusal", config)
        answers = _written(model, judge, ordinary, config.answer_condition, "compliance", config)
    if not refusals or not answers:
        raise DataError(f"the teacher wrote {len(refusals)} refusals and {len(answers)} answers; both are needed")
    rows = [
        {"prompt": [{"role": "user", "content": p}], "completion": [{"role": "assistant", "content": t}], "kind": kind}
        for kind, pairs in (("safety", refusals), ("benign", answers))
        for p, t in pairs
    ]
    random.Random(config.seed).shuffle(rows)
    test_size = max(1, round(len(rows) * config.test_fraction))
    atomic_write_jsonl(data_dir / "test_sft.jsonl", rows[:test_size])
    atomic_write_jsonl(data_dir / "train_sft.jsonl", rows[test_size:])
    summary = {
        "harmful_prompts": len(harmful),
        "refusals_kept": len(refusals),
        "ordinary_prompts": len(ordinary),
        "answers_kept": len(answers),
        "train_sft": len(rows) - test_size,
        "test_sft": test_size,
    }
    atomic_write_json(data_dir / "summary.json", summary)
    return summary


def build_guarded_base(config: GuardedBaseConfig) -> Path:
    """Data, LoRA SFT, merge, save (each step skipped when its output exists); returns the model folder."""
    from evoalign.train.merge import merge_adapter
    from evoalign.train.models import resolve_model_path
    from evoalign.train.recipes import run_cli

    target = Path(config.output_dir) if config.output_dir else guarded_path()
    if (target / "config.json").is_file():
        logger.info("%s already built", target)
        return target
    work = Path(config.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    write_run_info(work, config_to_dict(config), "guarded-base")
    data_dir, adapter = work / "data", work / "adapter"
    if not (data_dir / "summary.json").is_file():
        logger.info("data: %s", write_guarded_data(config, data_dir))
    if not (adapter / "adapter_config.json").is_file():
        teacher = resolve_model_path(config.teacher if isinstance(config.teacher, str) else config.teacher["spec"])
        run_cli(
            "sft",
            [
                "--config",
                config.sft_config,
                "--model_name_or_path",
                teacher,
                "--dataset_name",
                str(data_dir),
                "--output_dir",
                str(adapter),
                *config.sft_args,
            ],
        )
    staging = target.parent / f".{target.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    merge_adapter(adapter, staging, dtype="float32")
    (staging / "guarded_base.json").write_text(
        json.dumps(
            {"data": json.loads((data_dir / "summary.json").read_text()), "config": config_to_dict(config)}, indent=2
        ),
        encoding="utf-8",
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, target)
    return target


def main(argv: list[str] | None = None) -> int:
    """`recipes/guarded_base.py`: build the base and print its folder."""
    config = parse_config(GuardedBaseConfig, argv, prog="recipes/guarded_base.py")
    print(build_guarded_base(config))
    return 0
