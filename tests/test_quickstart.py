"""A shortened quickstart through the real CLI: every stage leaves its files and the report has its sections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("EVOALIGN_BENCHMARK_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.skipif(
    not (SHARED / "xstest").exists(),
    reason="needs the public benchmark files (XSTest, EvoRefuse-Test, AdvBench): ../shared/data or $EVOALIGN_BENCHMARK_DIR",
)
def test_short_quickstart_runs_every_stage(tmp_path):
    run = tmp_path / "qs"
    command = [
        sys.executable,
        "-m",
        "evoalign.cli",
        "quickstart",
        "--profile",
        "short",
        "--output_dir",
        str(run),
        "--benchmark_dir",
        str(SHARED),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Report: {run / 'report.md'}" in result.stdout
    for produced in (
        "configs/guarded.yaml",
        "guarded/model/config.json",
        "evolve/evolved.jsonl",
        "evolve/summary.json",
        "ablate/ablation.json",
        "eval/report.json",
        "eval/tradeoff.png",
        "checks.json",
    ):
        assert (run / produced).exists(), produced
    report = (run / "report.md").read_text()
    for section in (
        "## Acceptance checks",
        "## Evolution",
        "## Learnt base",
        "## Mitigation chosen on validation",
        "## Evaluation",
        "## Time per stage",
    ):
        assert section in report
    checks = json.loads((run / "checks.json").read_text())
    assert [c["model"] for c in checks["mitigation"]] == [
        "+ablation"
    ]  # evaluated, or a MISS if validation rejected it
    assert checks["trigger"]["seeds"] is not None

    rerun = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert rerun.returncode == 0 and rerun.stdout.count("already done") == 4


def _eval_report(over_after: float, harmful_after: float) -> dict:
    def run(name, over, harmful, base=None):
        summary = {"over_refusal": {"judge": {"rate": over}}, "harmful_refusal": {"judge": {"rate": harmful}}}
        return {"name": name, "condition": "refusal_prone", "base": base, "summary": summary}

    return {"runs": [run("base", 0.6, 0.9), run("+DPO", over_after, harmful_after, base="base")]}


@pytest.mark.parametrize(
    ("over_after", "harmful_after", "marks", "explained"),
    [(0.3, 0.88, ["PASS", "PASS", "PASS"], False), (0.5, 0.8, ["PASS", "MISS", "MISS"], True)],
)
def test_report_marks_each_check_and_explains_a_miss(tmp_path, over_after, harmful_after, marks, explained):
    from evoalign.quickstart_report import write_report

    (tmp_path / "evolve").mkdir()
    (tmp_path / "eval").mkdir()
    summary = {"refusal_rate": {"smollm2": {"seeds": 0.1, "evolved": 0.3}}}
    (tmp_path / "evolve" / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "eval" / "report.json").write_text(json.dumps(_eval_report(over_after, harmful_after)))
    report = write_report(tmp_path, {"evolve": 1.0}, 1.0).read_text()
    rows = [line for line in report.splitlines() if line.endswith(("| PASS |", "| MISS |"))]
    assert [row.rsplit("|", 2)[1].strip() for row in rows] == marks
    assert ("docs/reproduction.md" in report) is explained
    change = f"{100 * (harmful_after - 0.9):+.1f} points"  # the base refuses 90% of the harmful set
    assert f"| +DPO: harmful refusal drops <= 5 points | 90.0% -> {100 * harmful_after:.1f}% ({change}) |" in report


def test_an_edit_the_validation_rule_rejected_is_a_miss_not_a_missing_row(tmp_path):
    from evoalign.quickstart_report import write_report

    (tmp_path / "ablate").mkdir()
    rejected = {"rule": "lowest benign refusal", "base": {"benign_refusal": 60.0, "harmful_refusal": 70.0}}
    (tmp_path / "ablate" / "ablation.json").write_text(json.dumps({**rejected, "chosen": None, "candidates": []}))
    report = write_report(tmp_path, {"ablate": 1.0}, 1.0).read_text()
    assert "| +ablation: chosen on validation | no candidate met the validation rule | MISS |" in report
    assert "no candidate met the rule" in report and "docs/reproduction.md" in report


def _candidate(layer: int, strength: float, benign: float, harmful: float) -> dict:
    return {"layer": layer, "position": -1, "strength": strength, "benign_refusal": benign, "harmful_refusal": harmful}


def test_the_report_shows_every_validation_candidate_and_what_limits_a_rejected_edit(tmp_path):
    from evoalign.quickstart_report import write_report

    (tmp_path / "ablate").mkdir()
    candidates = [_candidate(10, 1.0, 56.0, 62.0), _candidate(22, 0.5, 20.0, 40.0)]
    report = {"base": {"benign_refusal": 60.0, "harmful_refusal": 70.0}, "max_harmful_drop": 5.0, "chosen": None}
    (tmp_path / "ablate" / "ablation.json").write_text(json.dumps({**report, "candidates": candidates}))
    text = write_report(tmp_path, {"ablate": 1.0}, 1.0).read_text()
    closest = "layer 10, position -1, strength 1.0: harmful -8.0 points, benign 56.0%"
    assert (
        f"| +ablation: chosen on validation | no candidate met the validation rule (closest: {closest}) | MISS |"
        in text
    )
    assert "| unedited | 60.0% | 70.0% | |" in text
    assert "| layer 10, position -1, strength 1.0 | 56.0% (-6.7% relative) | 62.0% (-8.0 points) | no |" in text
    assert "| layer 22, position -1, strength 0.5 | 20.0% (-66.7% relative) | 40.0% (-30.0 points) | no |" in text
    assert json.loads((tmp_path / "checks.json").read_text())["mitigation"][0]["closest"] == closest


def test_the_chosen_candidate_is_marked_in_the_validation_table(tmp_path):
    from evoalign.quickstart_report import write_report

    (tmp_path / "ablate").mkdir()
    chosen = _candidate(22, 1.0, 30.0, 68.0)
    report = {"base": {"benign_refusal": 60.0, "harmful_refusal": 70.0}, "max_harmful_drop": 5.0, "chosen": chosen}
    candidates = [_candidate(10, 1.0, 50.0, 71.0), chosen]
    (tmp_path / "ablate" / "ablation.json").write_text(json.dumps({**report, "candidates": candidates}))
    text = write_report(tmp_path, {"ablate": 1.0}, 1.0).read_text()
    assert "| layer 10, position -1, strength 1.0 | 50.0% (-16.7% relative) | 71.0% (+1.0 points) | yes |" in text
    assert (
        "| layer 22, position -1, strength 1.0 | 30.0% (-50.0% relative) | 68.0% (-2.0 points) | yes, **chosen** |"
        in text
    )
    assert "closest" not in text
    assert "filter" not in text


def test_the_report_counts_the_fitting_prompts_the_papers_filter_kept(tmp_path):
    from evoalign.quickstart_report import write_report

    (tmp_path / "ablate").mkdir()
    kept = {
        "harmful": {"kept": 126, "of": 146},
        "harmless": {"kept": 72, "of": 96},
        "pseudo_harmful": {"kept": 40, "of": 45},
    }
    report = {"base": {"benign_refusal": 60.0, "harmful_refusal": 70.0}, "chosen": None, "candidates": []}
    sizes = {"harmful": 126, "harmless": 72, "pseudo_harmful": 40}
    (tmp_path / "ablate" / "ablation.json").write_text(json.dumps({**report, "fit_filter": kept, "sizes": sizes}))
    text = write_report(tmp_path, {"ablate": 1.0}, 1.0).read_text()
    assert (
        "fitted on 126 harmful, 72 ordinary and 40 pseudo-harmful training prompts (the evolved rows among them; the "
        "paper's filter kept 126 of 146 / 72 of 96 / 40 of 45: the harmful and pseudo-harmful prompts the base "
        "refuses, the ordinary ones it answers)" in text
    )


@pytest.mark.parametrize(
    ("seconds", "whole_run", "row"),
    [
        (1199.0, True, "| 19 min 59 s | PASS |"),
        (1201.0, True, "| 20 min 01 s | MISS |"),
        (600.0, False, "| resumed or partly done earlier: not timed | n/a |"),
    ],
)
def test_report_checks_the_whole_runs_time_against_the_profiles_budget(tmp_path, seconds, whole_run, row):
    from evoalign.quickstart_report import write_report

    report = write_report(tmp_path, {"eval": seconds}, seconds, budget_minutes=20, whole_run=whole_run).read_text()
    timed = [line for line in report.splitlines() if line.startswith("| the whole run takes <= 20 minutes")]
    assert len(timed) == 1 and timed[0].endswith(row)
    assert json.loads((tmp_path / "checks.json").read_text())["time"]["ok"] == {"PASS": True, "MISS": False}.get(
        row.rsplit("|", 2)[1].strip()
    )
    assert ("docs/reproduction.md" in report) is row.endswith("| MISS |")  # the note explains a MISS


def test_only_the_default_profile_has_a_time_budget_and_it_is_twenty_minutes():
    from evoalign.config import load_yaml_mapping
    from evoalign.quickstart import PLAN

    budgets = {name: p.get("budget_minutes") for name, p in load_yaml_mapping(PLAN)["profiles"].items()}
    assert budgets == {"default": 20, "short": None, "training": None}


@pytest.mark.parametrize("profile", ["default", "short", "training"])
def test_each_stage_starts_from_its_shipped_config_and_changes_only_what_the_plan_lists(profile, tmp_path):
    from evoalign.build.config import BuildConfig
    from evoalign.config import ConfigParser, load_yaml_mapping
    from evoalign.eval.runner import EvalConfig
    from evoalign.evolve.config import EvolveConfig
    from evoalign.quickstart import PLAN, ROOT, QuickstartConfig, stage_configs
    from evoalign.steer.config import AblationConfig
    from evoalign.train.guarded import GuardedBaseConfig
    from evoalign.train.recipes import make_parser

    plan = load_yaml_mapping(PLAN)
    configs = stage_configs(QuickstartConfig(profile=profile), tmp_path)
    assert list(configs) == plan["profiles"][profile]["stages"]
    parsers = {
        "guarded": GuardedBaseConfig,
        "evolve": EvolveConfig,
        "ablate": AblationConfig,
        "build": BuildConfig,
        "eval": EvalConfig,
    }
    for stage, config in configs.items():
        shipped = load_yaml_mapping(ROOT / plan["configs"][stage])
        changed = {**plan["changes"].get(stage, {}), **plan["profiles"][profile].get(stage, {})}
        assert {k: v for k, v in config.items() if k not in changed} == {
            k: v for k, v in shipped.items() if k not in changed
        }
        assert config["output_dir"].startswith(str(tmp_path))
        parser = ConfigParser((parsers[stage],)) if stage in parsers else make_parser(stage)
        parser.parse_mapping(config, f"quickstart {stage}")
        read = [path for path in _paths(config) if not path.startswith(str(tmp_path))]
        assert all(not path.startswith("runs/") for path in read), read  # the checkout's files and its own run only


def _paths(value):
    """Every string under a `path` key, at any depth."""
    if isinstance(value, dict):
        own = [v for k, v in value.items() if k == "path" and isinstance(v, str)]
        return own + [p for v in value.values() for p in _paths(v)]
    return [p for v in value for p in _paths(v)] if isinstance(value, list) else []


def test_a_null_change_removes_the_shipped_key_and_mappings_merge():
    from evoalign.quickstart import merge

    shipped = {"suite": {"kept": {"path": "a", "limit": 5}, "dropped": {"path": "b"}}, "policy": "x", "n": None}
    change = {"suite": {"kept": {"limit": 2}, "dropped": None}, "policy": None}
    assert merge(shipped, change) == {"suite": {"kept": {"path": "a", "limit": 2}}, "n": None}


def test_quickstart_trains_its_batches_of_8_rows_and_4_pairs_one_sequence_or_pair_at_a_time(tmp_path):
    """The memory plan (docs/benchmarks.md): the same effective batches as the recipes, in micro-batches of one."""
    import yaml

    from evoalign.quickstart import QuickstartConfig, stage_configs
    from evoalign.train.recipes import make_parser

    configs = stage_configs(QuickstartConfig(profile="training"), tmp_path)
    for stage, effective in (("sft", 8), ("dpo", 4)):
        path = tmp_path / f"{stage}.yaml"
        path.write_text(yaml.safe_dump(configs[stage]))
        training_args = make_parser(stage).parse_args_and_config(["--config", str(path)])[1]
        assert training_args.per_device_train_batch_size == 1
        assert training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps == effective
    assert configs["dpo"]["gradient_checkpointing"] is True


def test_eval_skips_an_edit_the_run_did_not_produce(tmp_path, capsys):
    from evoalign.quickstart import _without_unproduced_models

    (tmp_path / "guarded" / "model").mkdir(parents=True)
    (tmp_path / "guarded" / "model" / "config.json").write_text("{}")
    base = {"name": "guarded", "spec": f"hf:{tmp_path}/guarded/model"}
    steered = {**base, "name": "+probe steering", "steering": f"{tmp_path}/ablate/steering.safetensors"}
    edited = {"name": "+ablation", "spec": f"hf:{tmp_path}/ablate"}
    config = {"models": [base, steered, edited, {"name": "elsewhere", "spec": "hf:/nowhere"}]}
    assert [m["name"] for m in _without_unproduced_models(config, tmp_path)["models"]] == ["guarded", "elsewhere"]
    assert "skipping +probe steering" in capsys.readouterr().out
    (tmp_path / "ablate").mkdir()
    (tmp_path / "ablate" / "steering.safetensors").write_bytes(b"x")
    kept = _without_unproduced_models(config, tmp_path)["models"]
    assert [m["name"] for m in kept] == ["guarded", "+probe steering", "elsewhere"]
