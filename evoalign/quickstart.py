"""`evoalign quickstart` / `make quickstart`: the pipeline, offline, on CPU, with the bundled SmolLM2.

The default profile shows over-refusal found and fixed on a base that learnt it in its weights:
(a) `guarded`: a quickstart-sized `smollm2-guarded`: SmolLM2 taught by LoRA SFT to refuse harmful requests (its own
    refusals behind the refusal-prone prompt) and to answer ordinary instructions (its own answers), merged; with no
    prompt it refuses harmful requests and over-refuses harmless ones that look harmful;
(b) `evolve`: pseudo-malicious instructions evolved against that base from the project's offline seeds;
(c) `ablate`: false-refusal direction ablation, fitted on training prompts (the evolved rows among them), its layer
    and strength chosen on validation prompts by the pre-written rule, saved as an edited model folder;
(d) `eval`: the base and the edit on held-out benign sets (XSTest safe, EvoRefuse-Test) and a held-out harmful set
    (XSTest unsafe) that no stage read;
(e) `runs/quickstart/report.md` with the table, the trade-off plot and the acceptance checks.
The `training` profile runs the other path: evolve against SmolLM2 behind the refusal-prone prompt, build SFT data
and preference pairs, train LoRA adapters with SFT and DPO, evaluate them behind the same prompt.

Each stage starts from its shipped config (datagen/configs, recipes, eval/configs) with only the changes that
`evoalign/quickstart.yaml` lists for the chosen profile. The merged config is written under
`runs/quickstart/configs/` and run through the same `main()` as the stage's script, so every number in the report
can be reproduced by a command. A rerun skips finished stages and resumes an interrupted one from its checkpoint and
response cache. The benchmark files come from `--benchmark_dir` or `$EVOALIGN_BENCHMARK_DIR` (offline), else from
their public locations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from evoalign.config import load_yaml_mapping, parse_config
from evoalign.errors import ConfigError, EvoalignError
from evoalign.io import atomic_write_text
from evoalign.paths import BENCHMARK_DIR_ENV

PLAN = Path(__file__).with_name("quickstart.yaml")
ROOT = Path(__file__).resolve().parents[1]  # the repository checkout the shipped configs live in
STAGES = ("guarded", "evolve", "ablate", "build", "sft", "dpo", "eval")  # the order stages run in


def _plan() -> dict[str, Any]:
    return load_yaml_mapping(PLAN)


@dataclass
class QuickstartConfig:
    """Run the whole pipeline at small scale on the bundled SmolLM2 (offline, CPU)."""

    output_dir: str = dataclasses.field(default="runs/quickstart", metadata={"help": "where every stage writes"})
    profile: str = dataclasses.field(
        default="default", metadata={"help": "a profile of evoalign/quickstart.yaml: default, or short (minutes)"}
    )
    benchmark_dir: str = dataclasses.field(
        default="",
        metadata={
            "help": "folder of the public benchmark files (xstest/, evorefuse/, advbench/); default: "
            "$EVOALIGN_BENCHMARK_DIR, else their public locations"
        },
    )
    seeds: str = dataclasses.field(default="", metadata={"help": "seed file (default: the evolve config's seeds)"})
    restart: bool = dataclasses.field(default=False, metadata={"help": "delete earlier quickstart output first"})

    def validate(self, where: str) -> None:
        profiles = _plan()["profiles"]
        if self.profile not in profiles:
            raise ConfigError(f"{where}: profile must be one of {', '.join(profiles)}, got '{self.profile}'")


def merge(base: Any, change: Any) -> Any:
    """`change` applied to `base` as a JSON merge patch: mappings merge key by key, a null removes the key,
    anything else replaces."""
    if not (isinstance(base, dict) and isinstance(change, dict)):
        return change
    merged = {**base, **{key: merge(base.get(key), value) for key, value in change.items()}}
    return {key: value for key, value in merged.items() if not (key in change and change[key] is None)}


def _fill(value: Any, run: Path) -> Any:
    if isinstance(value, str):
        return value.replace("{run}", str(run))
    if isinstance(value, dict):
        return {key: _fill(item, run) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, run) for item in value]
    return value


def stage_configs(config: QuickstartConfig, run: Path) -> dict[str, dict[str, Any]]:
    """The profile's stages' configs: the shipped ones with the plan's changes and the profile's, in stage order."""
    plan = _plan()
    profile = plan["profiles"][config.profile]
    configs = {}
    for stage in sorted(profile["stages"], key=STAGES.index):
        shipped = ROOT / plan["configs"][stage]
        if not shipped.exists():
            raise ConfigError(
                f"{shipped}: not found; the quickstart runs in a checkout of the evoalign repository (it starts from "
                "the shipped configs in datagen/configs, recipes and eval/configs)"
            )
        merged = merge(merge(load_yaml_mapping(shipped), plan["changes"].get(stage, {})), profile.get(stage, {}))
        configs[stage] = _fill(merged, run)
    if config.seeds and "evolve" in configs:
        configs["evolve"]["seeds"] = merge(configs["evolve"]["seeds"], {"path": str(Path(config.seeds).resolve())})
    if config.benchmark_dir:
        for stage in set(configs) & {"build", "ablate", "eval"}:
            configs[stage]["benchmark_dir"] = str(Path(config.benchmark_dir).resolve())
    return configs


def _stage_runner(name: str) -> Callable[[Sequence[str]], int]:
    if name == "guarded":
        from evoalign.train.guarded import main
    elif name == "ablate":
        from evoalign.steer.cli import main
    elif name == "evolve":
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
    "guarded": "guarded/model/config.json",
    "ablate": "ablate/ablation.json",
    "evolve": "evolve/evolved.jsonl",
    "build": "data/summary.json",
    "sft": "sft/adapter_model.safetensors",
    "dpo": "dpo/adapter_model.safetensors",
    "eval": "eval/report.json",
}
RESUMABLE = {"evolve", "build"}  # the others resume by themselves or start over


def run_stage(name: str, stage_config: dict[str, Any], run: Path) -> float:
    """Write the stage's config and run it (skipped when its output exists); returns seconds spent."""
    if name == "eval":
        stage_config = _without_unproduced_models(stage_config, run)
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
    _release_memory()
    if code:
        raise EvoalignError(f"quickstart stage '{name}' failed with exit code {code}; rerun to resume")
    return time.perf_counter() - start


def _without_unproduced_models(eval_config: dict[str, Any], run: Path) -> dict[str, Any]:
    """Eval's config less the models the run should have produced and did not (an edit the validation rule
    rejected saves nothing; the report says so)."""
    kept = []
    for model in eval_config["models"]:
        spec = str(model.get("spec", "")) if isinstance(model, dict) else str(model)
        needed = [Path(spec.removeprefix("hf:")) / "config.json"] if spec.startswith("hf:") else []
        if isinstance(model, dict) and model.get("steering"):
            needed.append(Path(model["steering"]))
        missing = [path for path in needed if path.is_relative_to(run) and not path.is_file()]
        if missing:
            print(f"[quickstart] eval: skipping {model.get('name', spec)}: {missing[0]} was not produced")
            continue
        kept.append(model)
    return {**eval_config, "models": kept}


def _release_memory() -> None:
    """Hand a finished stage's freed memory back to the system before the next stage starts in this process.

    glibc keeps freed heap pages (model weights, caches, activations) mapped; without this a later stage's peak
    sits on top of an earlier one's leftovers (0.2 GB after one SmolLM2 generation pass; docs/benchmarks.md).
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    libc = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(libc), "malloc_trim", None) if libc else None
    if trim is not None:  # glibc only; elsewhere the allocator decides
        trim(0)


def check_benchmarks(configs: dict[str, dict[str, Any]]) -> None:
    """Before any stage runs: every registered benchmark a stage reads can be loaded (a one-line error if not)."""
    from evoalign.benchmarks import BENCHMARKS, load_suite

    names = list(configs["eval"]["benchmarks"])
    harmful = configs.get("build", {}).get("harmful_prompts")
    if isinstance(harmful, dict) and "benchmark" in harmful:
        names.append(harmful["benchmark"])
    elif isinstance(harmful, str) and harmful in BENCHMARKS:
        names.append(harmful)
    for suite in ("validation_benign", "validation_harmful"):
        specs = configs.get("ablate", {}).get(suite) or {}
        names += [name for name, spec in specs.items() if name in BENCHMARKS and "path" not in (spec or {})]
    load_suite(list(dict.fromkeys(names)), local_dir=configs["eval"].get("benchmark_dir"))


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(QuickstartConfig, argv, prog="evoalign quickstart")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    if os.environ.get(BENCHMARK_DIR_ENV):  # the stages run from the repository root
        os.environ[BENCHMARK_DIR_ENV] = str(Path(os.environ[BENCHMARK_DIR_ENV]).resolve())
    run = Path(config.output_dir).resolve()
    if config.restart and run.exists():
        import shutil

        shutil.rmtree(run)
    configs = stage_configs(config, run)
    whole_run = not run.exists()  # every stage runs from scratch here, so the run's time is the pipeline's
    started = time.perf_counter()
    with _working_directory(ROOT):  # shipped configs name their inputs relative to the repository root
        check_benchmarks(configs)
        timings = {name: run_stage(name, stage_config, run) for name, stage_config in configs.items()}
    from evoalign.quickstart_report import write_report

    seconds = time.perf_counter() - started
    budget = _plan()["profiles"][config.profile].get("budget_minutes")
    report = write_report(run, timings, seconds, budget, whole_run)
    print(f"\n[quickstart] done in {seconds:.0f} s. Report: {report}")
    return 0
