"""Reports re-render from report.json alone: markdown, the trade-off plot, and the `--render` CLI."""

from __future__ import annotations

import json

import pytest

from evoalign.errors import DataError, run_main
from evoalign.eval.cli import main
from evoalign.eval.metrics import benchmark_metrics, pooled
from evoalign.eval.report import REPORT_FORMAT, load_report, markdown, render


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
