"""`evoalign quickstart` / `make quickstart`: the whole pipeline, offline, on CPU, with the bundled SmolLM2.

(a) the base model is SmolLM2-135M-Instruct behind the `refusal_prone` prompt (a cautious system prompt plus
    refusal examples), which refuses harmful requests and over-refuses harmless ones that look harmful;
(b) evolve pseudo-malicious instructions from the project's offline seeds with the offline rule operators;
(c) build SFT data and preference pairs: SmolLM2 answers the evolved instructions, the target's own refusals are
    `rejected`; AdvBench requests get template refusals, with SmolLM2's answers without the prompt as `rejected`;
    every training prompt carries the refusal-prone prompt, the context the model is deployed and evaluated in;
(d) train a LoRA adapter with SFT and another with DPO, each on the base model;
(e) evaluate base, +SFT and +DPO, all behind the same refusal-prone prompt, on held-out benign sets (XSTest
    safe, EvoRefuse-Test) and a held-out harmful set (XSTest unsafe) that no stage trained on;
(f) write `runs/quickstart/report.md` with the table, the trade-off plot and the acceptance checks.

Each stage writes its YAML config under `runs/quickstart/configs/` and runs through the same `main()` as its
script, so every number in the report can be reproduced by a command. A rerun skips finished stages and
resumes an interrupted one from its checkpoint and response cache.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from evoalign.config import parse_args
from evoalign.errors import EvoalignError
from evoalign.io import atomic_write_text

PROFILES: dict[str, dict[str, int]] = {
    # seeds, T, L, K, prompts per benchmark, epochs, new tokens (evolve target / responder / eval)
    "default": {
        "seeds": 20,
        "iterations": 3,
        "population": 3,
        "samples": 4,
        "limit": 50,
        "sft_epochs": 3,
        "dpo_epochs": 3,
        "target_tokens": 24,
        "answer_tokens": 96,
        "eval_tokens": 48,
    },
    "short": {
        "seeds": 3,
        "iterations": 1,
        "population": 2,
        "samples": 2,
        "limit": 3,
        "sft_epochs": 1,
        "dpo_epochs": 1,
        "target_tokens": 12,
        "answer_tokens": 24,
        "eval_tokens": 12,
    },
}


@dataclass
class QuickstartConfig:
    """Run the whole pipeline at small scale on the bundled SmolLM2 (offline, CPU)."""

    output_dir: str = dataclasses.field(default="runs/quickstart", metadata={"help": "where every stage writes"})
    profile: str = dataclasses.field(
        default="default", metadata={"help": "default, or short (a minutes-long smoke run)"}
    )
    benchmark_dir: str = dataclasses.field(
        default="",
        metadata={
            "help": "folder holding xstest/ and evorefuse/ (default: $EVOALIGN_BENCHMARK_DIR or ../shared/data)"
        },
    )
    seeds: str = dataclasses.field(default="", metadata={"help": "seed file (default: the project's starter seeds)"})
    restart: bool = dataclasses.field(default=False, metadata={"help": "delete earlier quickstart output first"})

    def validate(self, where: str) -> None:
        from evoalign.errors import ConfigError

        if self.profile not in PROFILES:
            raise ConfigError(f"{where}: profile must be one of {', '.join(PROFILES)}, got '{self.profile}'")


def _benchmark_dir(config: QuickstartConfig) -> Path:
    beside_checkout = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data of the repository
    candidates = [
        config.benchmark_dir,
        os.environ.get("EVOALIGN_BENCHMARK_DIR", ""),
        "../shared/data",
        beside_checkout,
    ]
    for candidate in filter(None, candidates):
        if (Path(candidate) / "xstest" / "xstest_prompts.csv").exists():
            return Path(candidate)
    raise EvoalignError(
        "quickstart needs the public XSTest and EvoRefuse-Test files: pass --benchmark_dir DIR (holding "
        "xstest/xstest_prompts.csv and evorefuse/evo_test.jsonl) or set EVOALIGN_BENCHMARK_DIR"
    )


def _seed_file(config: QuickstartConfig) -> str:
    """The user's seed file, or the project's instruction-form offline seeds (which the base model mostly answers,
    so evolution has refusals to gain; it already refuses about a quarter of the question-form starter seeds)."""
    return config.seeds or str(Path(__file__).parent / "evolve" / "data" / "seeds" / "offline.jsonl")


def stage_configs(config: QuickstartConfig, run: Path, data: Path) -> dict[str, dict[str, Any]]:
    """The YAML config of every stage, as written to runs/quickstart/configs/."""
    size = PROFILES[config.profile]
    adapter_training = {
        "model_name_or_path": "smollm2",
        "dtype": "float32",
        "use_peft": True,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "lora_target_modules": "all-linear",
        "dataset_name": str(run / "data"),
        "tokenizer_pad_token": "<|endoftext|>",
        "end_of_turn_token": "<|im_end|>",
        "bf16": False,
        "gradient_checkpointing": False,  # TRL defaults to True; memory is no issue here, recomputation is
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.03,
        "max_length": 448,
        "logging_steps": 5,
        "eval_strategy": "no",
        "save_strategy": "epoch",
        "save_total_limit": 1,
        "report_to": "none",
        "seed": 42,
    }
    return {
        "evolve": {
            "seeds": {"path": _seed_file(config), "limit": size["seeds"]},
            "output_dir": str(run / "evolve"),
            "seed": 0,
            "targets": [{"spec": "smollm2", "batch_size": 64}],
            "condition": "refusal_prone",
            "mutator": None,
            "verifier": "rules",
            "judge": "evoalign",
            "iterations": size["iterations"],
            "population": size["population"],
            "recombinations": 1,
            "recombination": "rule",
            "strategies": ["rule"],
            "selection": "bandit",
            "samples": size["samples"],
            "fitness": "paper",
            "target_sampling": {"temperature": 0.7, "max_new_tokens": size["target_tokens"]},
            "dedup": True,
            "dedup_threshold": 0.7,
            "fresh_samples": 4,
        },
        "build": {
            "evolved": str(run / "evolve" / "evolved.jsonl"),
            "harmful_prompts": {
                "path": str(data / "advbench" / "harmful_behaviors.csv"),
                "fields": {"instruction": "goal"},
                "limit": 4 * size["seeds"],
            },
            "output_dir": str(run / "data"),
            "seed": 42,
            "responder": "smollm2",
            "judge": "evoalign",
            "max_new_tokens": size["answer_tokens"],
            "max_retries": 2,
            "truncated": "trim",
            "safety_ratio": 1.0,
            "refusal_writer": "template",
            "target": "smollm2",
            "target_condition": "refusal_prone",
            "target_samples": 2,
            "safety_target_condition": "default",  # SmolLM2 without the prompt answers harmful requests
            "train_condition": "refusal_prone",
            "test_size": 0.1,
        },
        "sft": {
            **adapter_training,
            "dataset_train_split": "train_sft",
            "dataset_test_split": "test_sft",
            "learning_rate": 3.0e-4,
            "num_train_epochs": size["sft_epochs"],
            "per_device_train_batch_size": 8,
            "global_batch_size": 8,
            "output_dir": str(run / "sft"),
        },
        "dpo": {
            **adapter_training,
            "dataset_train_split": "train_prefs",
            "dataset_test_split": "test_prefs",
            "loss_type": ["sigmoid"],
            "beta": 0.1,
            "precompute_ref_log_probs": True,  # one reference pass, not one per epoch
            "learning_rate": 3.0e-4,
            "num_train_epochs": size["dpo_epochs"],
            "per_device_train_batch_size": 4,
            "global_batch_size": 4,
            "output_dir": str(run / "dpo"),
        },
        "eval": {
            "models": [
                {"name": "base", "spec": "smollm2", "condition": "refusal_prone"},
                {
                    "name": "+SFT",
                    "spec": "smollm2",
                    "adapter": str(run / "sft"),
                    "condition": "refusal_prone",
                    "base": "base",
                },
                {
                    "name": "+DPO",
                    "spec": "smollm2",
                    "adapter": str(run / "dpo"),
                    "condition": "refusal_prone",
                    "base": "base",
                },
            ],
            "benchmarks": {
                "xstest_safe": str(data / "xstest" / "xstest_prompts.csv"),
                "evorefuse_test": str(data / "evorefuse" / "evo_test.jsonl"),
                "xstest_unsafe": str(data / "xstest" / "xstest_prompts.csv"),
            },
            "limit": size["limit"],
            "seed": 0,
            "max_new_tokens": size["eval_tokens"],
            "temperature": 0.0,
            "batch_size": 32,
            "judge": "evoalign",
            "output_dir": str(run / "eval"),
        },
    }


def _stage_runner(name: str) -> Callable[[Sequence[str]], int]:
    if name == "evolve":
        from evoalign.evolve.cli import main
    elif name == "build":
        from evoalign.build.cli import main
    elif name in ("sft", "dpo"):
        from evoalign.train.recipes import run_cli

        return lambda argv: run_cli(name, argv)
    else:
        from evoalign.eval.cli import main
    return main


DONE_MARKERS = {
    "evolve": "evolve/evolved.jsonl",
    "build": "data/summary.json",
    "sft": "sft/adapter_model.safetensors",
    "dpo": "dpo/adapter_model.safetensors",
    "eval": "eval/report.json",
}
RESUMABLE = {"evolve", "build"}


def run_stage(name: str, stage_config: dict[str, Any], run: Path) -> float:
    """Write the stage's config and run it (skipped when its output exists); returns seconds spent."""
    path = run / "configs" / f"{name}.yaml"
    atomic_write_text(path, yaml.safe_dump(stage_config, sort_keys=False))
    if (run / DONE_MARKERS[name]).exists():
        print(f"[quickstart] {name}: already done ({run / DONE_MARKERS[name]}), skipping")
        return 0.0
    argv = ["--config", str(path)]
    started_before = Path(stage_config["output_dir"]).exists()
    if name in RESUMABLE and started_before:
        argv.append("--resume")
    print(f"[quickstart] {name}: {'resuming' if started_before else 'running'} (config {path})", flush=True)
    start = time.perf_counter()
    code = _stage_runner(name)(argv)
    if code:
        raise EvoalignError(f"quickstart stage '{name}' failed with exit code {code}; rerun to resume")
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(QuickstartConfig, argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    run = Path(config.output_dir)
    if config.restart and run.exists():
        import shutil

        shutil.rmtree(run)
    data = _benchmark_dir(config)
    configs = stage_configs(config, run, data)
    started = time.perf_counter()
    timings = {name: run_stage(name, stage_config, run) for name, stage_config in configs.items()}
    from evoalign.quickstart_report import write_report

    report = write_report(run, timings, time.perf_counter() - started)
    print(f"\n[quickstart] done in {time.perf_counter() - started:.0f} s. Report: {report}")
    return 0
