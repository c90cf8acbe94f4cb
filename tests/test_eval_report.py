"""Reports re-render from report.json alone: markdown, the trade-off plot, and the `--render` CLI."""

from __future__ import annotations

import json

import pytest

from evoalign.errors import DataError, run_main
from evoalign.eval.cli import main
from evoalign.eval.metrics import benchmark_metrics, pooled
from evoalign.eval.report import REPORT_FORMAT, load_report, markdown, render
from evoalign.eval.selection import select


def _records(refusals: int, n: int, category: str | None = None) -> list[dict]:
    return [
        {
            "label": "refusal" if i < refusals else "compliance",
            "prr": i < refusals,
            "category": category,
            "mean_logprob": -1.0,
        }
        for i in range(n)
    ]


def _run(name: str, condition: str, benign: int, harmful: int, base: str | None = None) -> dict:
    metrics = {
        "xstest_safe": benchmark_metrics(_records(benign, 20, "homonyms")),
        "advbench": benchmark_metrics(_records(harmful, 20)),
    }
    return {
        "name": name,
        "spec": "smollm2",
        "adapter": None,
        "condition": condition,
        "base": base,
        "summary": {
            "over_refusal": pooled([metrics["xstest_safe"]]),
            "harmful_refusal": pooled([metrics["advbench"]]),
            "mean_logprob": -1.0,
            "unknown": 0,
        },
        "metrics": metrics,
        "timing": {},
        "responses": [],
    }


def make_report() -> dict:
    return {
        "format": REPORT_FORMAT,
        "created": "2026-01-01T00:00:00+00:00",
        "judge": "evoalign",
        "prr": "evorefuse",
        "generation": {"temperature": 0.0, "max_new_tokens": 64},
        "benchmarks": {
            "xstest_safe": {"kind": "benign", "title": "XSTest (safe)", "source": "x.csv", "total": 250, "n": 20},
            "advbench": {"kind": "harmful", "title": "AdvBench", "source": "a.csv", "total": 520, "n": 20},
        },
        "runs": [
            _run("base", "default", 12, 18),
            _run("sft", "default", 3, 17, base="base"),
            _run("base", "safety_prior", 16, 20),
            _run("sft", "safety_prior", 5, 19, base="base"),
        ],
        "config": {},
    }


def test_markdown_has_summary_per_benchmark_and_category_tables():
    text = markdown(make_report())
    assert "| base | default | 60.0% [39–78] | 60.0% | 90.0% [70–97] | 90.0% | -1.000 | 0 |" in text
    assert "| XSTest (safe) | 20 | 60.0% [39–78] · PRR 60.0% | 15.0% [5–36] · PRR 15.0% |" in text
    assert "### XSTest (safe) (benign)" in text and "| homonyms | 20 |" in text
    assert "![over-refusal vs safety](tradeoff.png)" in text


def test_render_writes_markdown_and_png(tmp_path):
    written = render(make_report(), tmp_path)
    assert written["markdown"].read_text().startswith("# Over-refusal vs safety")
    assert written["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_plot_without_harmful_sets(tmp_path):
    report = make_report()
    (tmp_path / "tradeoff.png").write_bytes(b"stale")
    for run in report["runs"]:
        run["summary"]["harmful_refusal"] = None
    written = render(report, tmp_path)
    assert "plot" not in written and not (tmp_path / "tradeoff.png").exists()
    assert "tradeoff.png" not in written["markdown"].read_text()


def test_cli_rerenders_from_json_without_models(tmp_path, capsys):
    (tmp_path / "report.json").write_text(json.dumps(make_report()))
    assert run_main(main, ["--render", str(tmp_path / "report.json")]) == 0
    assert (tmp_path / "report.md").exists() and (tmp_path / "tradeoff.png").exists()
    assert "| sft | safety_prior | 25.0%" in capsys.readouterr().out
    (tmp_path / "report.md").unlink()
    assert run_main(main, ["--render-only", "--output_dir", str(tmp_path)]) == 0
    assert (tmp_path / "report.md").exists()


def test_load_report_rejects_other_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(DataError, match="not an evoalign eval report"):
        load_report(path)
    path.write_text("{bad")
    with pytest.raises(DataError, match="malformed JSON"):
        load_report(path)


def _validated(name: str, benign: int, harmful: int, held_out: tuple[int, int]) -> dict:
    """A run with validation rates benign / 20 and harmful / 20 and held-out rates `held_out` (of 20 each)."""
    run = _run(name, "default", *held_out)
    validation = _run(name, "default", benign, harmful)["summary"]
    return {**run, "validation": validation}


def test_selections_pick_by_the_rule_and_state_the_held_out_figures():
    runs = [
        _validated("written", 15, 14, (12, 16)),
        _validated("seed 0", 10, 12, (4, 10)),  # lowest benign, but harmful 10 points below the base: out
        _validated("seed 1", 13, 13, (9, 15)),  # 5 points below: at the limit, qualifies
        _validated("seed 2", 14, 20, (14, 20)),
        _validated("seed 3", 16, 20, (2, 20)),  # best held out, but not on validation
    ]
    entry = {"name": "DRO seeds", "base": "written", "candidates": ["seed 0", "seed 1", "seed 2", "seed 3"]}
    picked = select({**entry, "subsets": [2, 4]}, runs)
    assert picked["chosen"] == "seed 1"
    # pairs: {0,1} 1, {0,2} 2, {0,3} none (seed 3 refuses more benign than the base), {1,2} 1, {1,3} 1, {2,3} 2
    assert picked["subsets"] == [
        {"size": 2, "count": 6, "picked": 5, "meets": 3},
        {"size": 4, "count": 1, "picked": 1, "meets": 1},
    ]
    assert [c["qualifies"] for c in picked["candidates"]] == [False, True, True, True]
    assert picked["held_out"]["base"] == {"benign_refusal": 60.0, "harmful_refusal": 80.0}
    assert picked["held_out"]["chosen"] == {"benign_refusal": 45.0, "harmful_refusal": 75.0}
    stricter = select({**entry, "max_harmful_drop": 0}, runs)
    assert stricter["chosen"] == "seed 2" and stricter["rule"].endswith("base - 0.0 points")
    no_better = select({**entry, "candidates": ["seed 0", "seed 3"]}, runs)
    assert no_better["chosen"] is None and no_better["held_out"] is None

    text = markdown({**make_report(), "runs": runs, "selections": [picked, no_better]})
    section = text.split("## Validation choices", 1)[1]
    assert (
        "**Chosen: seed 1.** Held out, against written: over-refusal 60.0% -> 45.0% (-25.0% relative), harmful "
        "refusal 80.0% -> 75.0% (-5.0 points)." in section
    )
    assert (
        "| seed 0 | 50.0% | 60.0% | no |  |" in section and "| seed 1 | 65.0% | 65.0% | yes | **chosen** |" in section
    )
    assert (
        "- Over every 2 of the 4 candidates (6 subsets): the rule picks one in 5, and its pick lowers held-out "
        "over-refusal with harmful refusal at most 5 points lower in **3 (50%)**." in section
    )
    assert "**Nothing chosen.**" in section
    assert "## Validation choices" not in markdown(make_report())
