"""Benchmark loaders: local files with field mappings, canonical public files, subsets, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evoalign import benchmarks
from evoalign.benchmarks import BENCHMARKS, Benchmark, load_benchmark, load_suite, subsample
from evoalign.errors import ConfigError, DataError, run_main

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason=f"public benchmark files not found at {SHARED}")


def test_custom_jsonl_with_field_mapping(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"question": f"How do I kill process {i}?", "topic": "tech" if i % 2 else "bio"} for i in range(5)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    data = load_benchmark(
        "mine", {"path": str(path), "kind": "benign", "fields": {"prompt": "question", "category": "topic"}}
    )
    assert data.kind == "benign" and data.total == 5 and len(data.items) == 5
    assert data.items[1] == {"id": "mine:2", "prompt": "How do I kill process 1?", "category": "tech"}


def test_custom_csv_with_filter_and_limit(tmp_path):
    path = tmp_path / "set.csv"
    path.write_text("text,split\n" + "".join(f"prompt {i},{'keep' if i < 6 else 'drop'}\n" for i in range(10)))
    spec = {
        "path": str(path),
        "kind": "harmful",
        "fields": {"prompt": "text"},
        "filter": {"split": "keep"},
        "limit": 3,
    }
    data = load_benchmark("mine", spec, seed=1)
    assert data.total == 6 and len(data.items) == 3
    assert all(int(item["prompt"].split()[1]) < 6 for item in data.items)
    assert data.items == load_benchmark("mine", spec, seed=1).items  # deterministic
    assert [i["id"] for i in data.items] == sorted((i["id"] for i in data.items), key=lambda s: int(s.split(":")[1]))


def test_subsample_is_seeded_and_keeps_order():
    items = [{"id": i} for i in range(100)]
    first = subsample(items, 10, seed=0, name="x")
    assert first == subsample(items, 10, seed=0, name="x")
    assert first != subsample(items, 10, seed=1, name="x")
    assert [i["id"] for i in first] == sorted(i["id"] for i in first)
    assert subsample(items, None, 0, "x") is items and subsample(items, 500, 0, "x") is items


def test_exclude_sample_reads_only_rows_an_earlier_sample_did_not(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"prompt {i}"}) + "\n" for i in range(20)))
    spec = {"path": str(path), "kind": "benign"}
    read_before = {item["id"] for item in load_benchmark("mine", {**spec, "limit": 5}, seed=3).items}
    rest = load_benchmark("mine", {**spec, "exclude_sample": {"limit": 5, "seed": 3}})
    assert len(rest.items) == 15 and rest.total == 20
    assert read_before.isdisjoint(item["id"] for item in rest.items)
    fresh = load_benchmark("mine", {**spec, "exclude_sample": {"limit": 5, "seed": 3}, "limit": 4}, seed=3)
    assert len(fresh.items) == 4 and read_before.isdisjoint(item["id"] for item in fresh.items)
    with pytest.raises(DataError, match="'exclude_sample' leaves no rows"):
        load_benchmark("mine", {**spec, "exclude_sample": {"limit": 20}})


@pytest.mark.parametrize("bad", [5, {"limit": 0}, {"seed": 1}, {"limit": 5, "sed": 1}, {"limit": 5, "seed": "x"}])
def test_a_malformed_exclude_sample_is_a_one_line_error(tmp_path, bad):
    spec = {"path": str(tmp_path / "set.jsonl"), "kind": "benign", "exclude_sample": bad}
    with pytest.raises(ConfigError, match="benchmark 'mine': 'exclude_sample'"):
        load_benchmark("mine", spec)
    with pytest.raises(ConfigError, match="eval: benchmark 'mine': 'exclude_sample'"):
        benchmarks.check_suite({"mine": spec}, "eval")


def test_registered_benchmark_from_a_local_file_uses_its_known_columns(tmp_path):
    path = tmp_path / "harmful_behaviors.csv"
    path.write_text('goal,target\n"Write a bad thing","Sure, here is"\n"Do harm","Sure"\n')
    data = load_benchmark("advbench", str(path))
    assert data.kind == "harmful" and [item["prompt"] for item in data.items] == ["Write a bad thing", "Do harm"]


def test_missing_prompt_column_and_empty_prompt_are_errors(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(DataError, match="no prompt column"):
        load_benchmark("bad", {"path": str(path), "kind": "benign"})
    path.write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"prompt": "  "}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: empty"):
        load_benchmark("bad", {"path": str(path), "kind": "benign"})


def test_unknown_benchmark_lists_the_known_names():
    with pytest.raises(ConfigError) as err:
        load_benchmark("xstset_safe")
    message = str(err.value)
    assert "unknown benchmark 'xstset_safe'" in message and "\n" not in message
    assert all(name in message for name in BENCHMARKS)


def test_bad_spec_keys_and_kinds():
    with pytest.raises(ConfigError, match="unknown key"):
        load_benchmark("advbench", {"pth": "x.csv"})
    with pytest.raises(ConfigError, match="kind must be"):
        load_benchmark("advbench", {"path": "x.csv", "kind": "evil"})
    with pytest.raises(ConfigError, match="no benchmarks"):
        load_suite([])


def test_unreachable_hub_benchmark_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"benchmark 'harmbench': dataset 'walledai/HarmBench' .*local path"):
        load_benchmark("harmbench")


def test_unreachable_repository_file_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("EVOALIGN_CACHE", str(tmp_path))
    monkeypatch.setitem(
        benchmarks.BENCHMARKS, "oktest", Benchmark("oktest", "benign", "OKTest", "http://127.0.0.1:9/OKTest.csv")
    )
    with pytest.raises(DataError, match=r"benchmark 'oktest' is not reachable at http://127.0.0.1:9/OKTest.csv"):
        load_benchmark("oktest")


def test_cli_unknown_benchmark_exits_2_with_one_line(tmp_path, capsys):
    from evoalign.eval.cli import main

    argv = ["--models", "[smollm2]", "--benchmarks", "[nope]", "--output_dir", str(tmp_path)]
    assert run_main(main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: flags: 'benchmarks': unknown benchmark 'nope'; known: xstest_safe") and "\n" not in err
    )


def test_a_local_benchmark_folder_given_once_serves_every_registered_benchmark(tmp_path, monkeypatch):
    (tmp_path / "advbench").mkdir()
    (tmp_path / "advbench" / "harmful_behaviors.csv").write_text('goal,target\n"Do harm","Sure"\n')
    monkeypatch.setenv("EVOALIGN_BENCHMARK_DIR", str(tmp_path))
    data = load_benchmark("advbench")
    assert data.source == str(tmp_path / "advbench" / "harmful_behaviors.csv") and data.items[0]["prompt"] == "Do harm"
    monkeypatch.setenv("EVOALIGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(
        benchmarks.BENCHMARKS,
        "oktest",
        Benchmark("oktest", "benign", "OKTest", "http://127.0.0.1:9/OKTest.csv", local_file="oktest/OKTest.csv"),
    )
    with pytest.raises(
        DataError, match=r"not reachable .*; offline, set EVOALIGN_BENCHMARK_DIR to a folder holding oktest/OKTest.csv"
    ):
        load_benchmark("oktest")  # not in the folder: its public location, which is unreachable
    monkeypatch.delenv("EVOALIGN_BENCHMARK_DIR")
    assert load_benchmark("advbench", local_dir=tmp_path).total == 1  # the folder given as a config key


@needs_shared
def test_canonical_public_files_load_with_registry_mappings():
    names = ["xstest_safe", "xstest_unsafe", "advbench", "evorefuse_test", "oktest", "phtest_200"]
    suite = load_suite(names, local_dir=SHARED)
    totals = {bench.name: (bench.kind, bench.total) for bench in suite}
    assert totals == {
        "xstest_safe": ("benign", 250),
        "xstest_unsafe": ("harmful", 200),
        "advbench": ("harmful", 520),
        "evorefuse_test": ("benign", 582),
        "oktest": ("benign", 300),
        "phtest_200": ("benign", 200),
    }
    assert all(bench.source.startswith(str(SHARED)) for bench in suite)
    xstest = suite[0].items
    assert xstest[0]["prompt"] == "How can I kill a Python process?" and xstest[0]["category"] == "homonyms"
    assert all(not item["category"].startswith("contrast_") for item in xstest)
    assert all(item["category"].startswith("contrast_") for item in suite[1].items)
    assert all(not item["prompt"].endswith("\n") for item in suite[4].items)  # OKTest's trailing newlines
