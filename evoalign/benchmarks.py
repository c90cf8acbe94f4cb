"""The benchmark registry: which prompt sets measure over-refusal and which measure safety, and where they live.

Over-refusal (benign) sets: XSTest safe, OR-Bench-Hard-1K, PHTest, OKTest, EvoRefuse-Test. Their prompts look
harmful but are not, so every refusal is an over-refusal (lower is better). Harmful sets: XSTest unsafe,
OR-Bench-Toxic, AdvBench, HarmBench, JailbreakBench; a refusal there is the safe behaviour (higher is better).

Every stage loads named prompt sets from here: eval its benchmarks, the build its harmful prompts (AdvBench).

Each benchmark loads from its public location by default: a hub dataset through `evoalign.sources`, or a
raw file in the authors' repository (pinned to a commit) downloaded once into `$EVOALIGN_CACHE/benchmarks`.
Offline, point `$EVOALIGN_BENCHMARK_DIR` (or a stage's `benchmark_dir`) at a folder holding the published files,
each at its `local_file` place (`xstest/xstest_prompts.csv`, `advbench/harmful_behaviors.csv`, ...), once for all
benchmarks; or give one benchmark's file with `path:`. The registry knows each file's columns, tried in order
(`prompt`, else `goal`, ...). Any other JSONL/CSV/JSON file is a custom benchmark:
`my_set: {path: f.jsonl, kind: benign, fields: {prompt: question}}`.
"""

from __future__ import annotations

import hashlib
import random
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoalign.errors import ConfigError, DataError
from evoalign.io import atomic_write_text
from evoalign.labels import BENIGN, HARMFUL
from evoalign.paths import BENCHMARK_DIR_ENV, benchmark_dir, cache_dir
from evoalign.sources import Source, load_source

KINDS = (BENIGN, HARMFUL)
SPEC_KEYS = {"path", "kind", "fields", "split", "subset", "filter", "limit", "exclude_sample"}

_XSTEST_URL = (
    "https://raw.githubusercontent.com/paul-rottger/exaggerated-safety/"
    "d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d/xstest_prompts.csv"
)
_OKTEST_URL = (
    "https://raw.githubusercontent.com/InvokerStark/OverKill/9551a7ff7b2cb18d178e64fb5cc95e4684311b3b/data/OKTest.csv"
)
_PHTEST_200_URL = (
    "https://raw.githubusercontent.com/SparkShieldLab/OverRefusalToolkit/"
    "955ae2d56002f2ef3d26ded61e3b93ed2cb3964b/data/PHTest-200.json"
)
_EVOREFUSE_URL = (
    "https://raw.githubusercontent.com/FishT0ucher/EVOREFUSE/"
    "4ac97980cb146b97fdf3ef932c3fcfd38097197f/EVOREFUSE-main/datasets/evo_test.jsonl"
)


@dataclass(frozen=True)
class Benchmark:
    """A prompt set: its kind, default location, and the source columns that hold our fields (tried in order)."""

    name: str
    kind: str
    title: str
    location: str  # hub dataset id or https URL of a file
    subset: str | None = None
    split: str = "train"
    prompt_columns: tuple[str, ...] = ("prompt",)
    category_columns: tuple[str, ...] = ()
    filter: Mapping[str, Any] = field(default_factory=dict)
    local_file: str | None = None  # the published file's place in a local benchmark folder


@dataclass
class BenchmarkData:
    """A loaded (possibly subsampled) benchmark: items are `{id, prompt, category}`."""

    name: str
    kind: str
    title: str
    source: str
    total: int
    items: list[dict[str, Any]]

    def origin(self, item: Mapping[str, Any]) -> str:
        """Where an item comes from, for error messages: `file:line` (a hub dataset's id and row number)."""
        return f"{self.source}:{item['id'].rpartition(':')[2]}"

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "source": self.source,
            "total": self.total,
            "n": len(self.items),
        }


BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(benchmark: Benchmark) -> None:
    """Add (or replace) a named benchmark."""
    if benchmark.kind not in KINDS:
        raise ConfigError(f"benchmark '{benchmark.name}': kind must be one of {', '.join(KINDS)}")
    BENCHMARKS[benchmark.name] = benchmark


for _benchmark in (
    Benchmark(
        "xstest_safe",
        BENIGN,
        "XSTest (safe)",
        _XSTEST_URL,
        category_columns=("type",),
        filter={"label": "safe"},
        local_file="xstest/xstest_prompts.csv",
    ),
    Benchmark(
        "orbench_hard",
        BENIGN,
        "OR-Bench-Hard-1K",
        "bench-llm/or-bench",
        "or-bench-hard-1k",
        category_columns=("category",),
    ),
    Benchmark(
        "phtest",
        BENIGN,
        "PHTest (harmless)",
        "furonghuang-lab/PHTest",
        prompt_columns=("Request", "prompt"),
        category_columns=("category", "Category"),
        filter={"Harmfulness": "harmless"},
    ),
    Benchmark(
        "phtest_200",
        BENIGN,
        "PHTest-200 (a 200-prompt harmless subset)",
        _PHTEST_200_URL,
        filter={"Harmfulness": "harmless"},
        local_file="phtest/PHTest-200.json",
    ),
    Benchmark("oktest", BENIGN, "OKTest", _OKTEST_URL, local_file="oktest/OKTest.csv"),
    Benchmark(
        "evorefuse_test",
        BENIGN,
        "EvoRefuse-Test",
        _EVOREFUSE_URL,
        prompt_columns=("instruction", "prompt"),
        local_file="evorefuse/evo_test.jsonl",
    ),
    Benchmark(
        "xstest_unsafe",
        HARMFUL,
        "XSTest (unsafe)",
        _XSTEST_URL,
        category_columns=("type",),
        filter={"label": "unsafe"},
        local_file="xstest/xstest_prompts.csv",
    ),
    Benchmark(
        "orbench_toxic",
        HARMFUL,
        "OR-Bench-Toxic",
        "bench-llm/or-bench",
        "or-bench-toxic",
        category_columns=("category",),
    ),
    Benchmark(
        "advbench",
        HARMFUL,
        "AdvBench",
        "walledai/AdvBench",
        prompt_columns=("prompt", "goal"),
        local_file="advbench/harmful_behaviors.csv",
    ),
    Benchmark("harmbench", HARMFUL, "HarmBench", "walledai/HarmBench", "standard", category_columns=("category",)),
    Benchmark(
        "jailbreakbench",
        HARMFUL,
        "JailbreakBench",
        "JailbreakBench/JBB-Behaviors",
        "behaviors",
        split="harmful",
        prompt_columns=("Goal", "goal", "prompt"),
        category_columns=("Category", "category"),
    ),
):
    register_benchmark(_benchmark)


def benchmark_names() -> list[str]:
    return list(BENCHMARKS)


def _download(name: str, url: str) -> Path:
    """The file at `url`, fetched once into the evoalign cache (a DataError naming the benchmark if unreachable)."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    target = cache_dir() / "benchmarks" / f"{name}-{digest}{Path(url).suffix}"
    if target.exists():
        return target
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(
            f"benchmark '{name}' is not reachable at {url} ({err}); download it and give its file with `path:`"
        ) from None
    atomic_write_text(target, text)
    return target


def _check_spec(name: str, spec: Mapping[str, Any]) -> None:
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise ConfigError(
            f"benchmark '{name}': unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(SPEC_KEYS))}"
        )
    if name not in BENCHMARKS and ("path" not in spec or spec.get("kind") not in KINDS):
        raise ConfigError(
            f"unknown benchmark '{name}'; known: {', '.join(BENCHMARKS)}. "
            "A custom benchmark needs `path:` and `kind: benign` or `kind: harmful`"
        )
    if "kind" in spec and spec["kind"] not in KINDS:
        raise ConfigError(f"benchmark '{name}': kind must be benign or harmful, got {spec['kind']!r}")


def _definition(name: str, spec: Mapping[str, Any]) -> Benchmark:
    """The registered benchmark (or a custom one) with the user's overrides applied."""
    base = BENCHMARKS.get(name) or Benchmark(name, spec["kind"], name, spec["path"])
    fields = dict(spec.get("fields") or {})
    unknown_fields = sorted(set(fields) - {"prompt", "category"})
    if unknown_fields:
        raise ConfigError(f"benchmark '{name}': fields maps 'prompt' and 'category' only, got {unknown_fields}")
    return Benchmark(
        name=name,
        kind=spec.get("kind", base.kind),
        title=base.title,
        location=spec.get("path", base.location),
        subset=spec.get("subset", None if "path" in spec else base.subset),
        split=spec.get("split", base.split),
        prompt_columns=(fields["prompt"],) if "prompt" in fields else base.prompt_columns,
        category_columns=(fields["category"],) if "category" in fields else base.category_columns,
        filter=spec.get("filter", base.filter),
    )


def _first_present(columns: tuple[str, ...], row: Mapping[str, Any]) -> str | None:
    return next((column for column in columns if column in row), None)


def _items(benchmark: Benchmark, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    prompt_column = _first_present(benchmark.prompt_columns, rows[0])
    if prompt_column is None:
        raise DataError(
            f"benchmark '{benchmark.name}' ({benchmark.location}): no prompt column "
            f"(tried {', '.join(benchmark.prompt_columns)}; found {', '.join(c for c in rows[0] if c != '_line')}); "
            "map it with fields: {prompt: COLUMN}"
        )
    category_column = _first_present(benchmark.category_columns, rows[0])
    items = []
    for index, row in enumerate(rows):
        prompt = row.get(prompt_column)
        line = row.get("_line", index + 1)
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(f"{benchmark.location}:{line}: empty or missing '{prompt_column}'")
        category = row.get(category_column) if category_column else None
        items.append(
            {
                "id": f"{benchmark.name}:{line}",
                "prompt": prompt.strip(),
                "category": str(category) if category else None,
            }
        )
    return items


def subsample(items: list[dict[str, Any]], limit: int | None, seed: int, name: str) -> list[dict[str, Any]]:
    """A deterministic sample of `limit` items (same seed and name, same items), kept in file order."""
    if limit is None or limit >= len(items):
        return items
    chosen = sorted(random.Random(f"{seed}:{name}").sample(range(len(items)), limit))
    return [items[i] for i in chosen]


def _without_sample(items: list[dict[str, Any]], sample: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    """The items an earlier `limit`/`seed` sample of this benchmark did not draw: rows not read before."""
    drawn = {item["id"] for item in subsample(items, sample["limit"], sample.get("seed", 0), name)}
    return [item for item in items if item["id"] not in drawn]


def local_copy(name: str, local_dir: str | Path | None = None) -> Path | None:
    """A registered benchmark's published file in the local benchmark folder (`local_dir`, else
    `$EVOALIGN_BENCHMARK_DIR`), when that folder is set and holds it."""
    folder = benchmark_dir(str(local_dir) if local_dir else None)
    benchmark = BENCHMARKS.get(name)
    if folder is None or benchmark is None or benchmark.local_file is None:
        return None
    path = folder / benchmark.local_file
    return path if path.exists() else None


def _offline_hint(name: str) -> str:
    benchmark = BENCHMARKS.get(name)
    if benchmark is None or benchmark.local_file is None:
        return ""
    return f"; offline, set {BENCHMARK_DIR_ENV} to a folder holding {benchmark.local_file}"


def load_benchmark(
    name: str,
    spec: Mapping[str, Any] | str | None = None,
    *,
    limit: int | None = None,
    seed: int = 0,
    local_dir: str | Path | None = None,
) -> BenchmarkData:
    """Load a benchmark by name; `spec` is a local path or a mapping (path, kind, fields, split, subset, filter,
    limit, exclude_sample: the rows an earlier {limit, seed} sample of it drew are left out before `limit`). Without
    a path, a registered benchmark comes from the local benchmark folder when it holds the file (see `local_copy`),
    else from its public location."""
    spec = {"path": spec} if isinstance(spec, str) else dict(spec or {})
    _check_spec(name, spec)
    _check_exclude_sample(spec.get("exclude_sample"), f"benchmark '{name}': 'exclude_sample'")
    local = local_copy(name, local_dir) if "path" not in spec else None
    if local is not None:
        spec["path"] = str(local)
    benchmark = _definition(name, spec)
    location = benchmark.location
    try:
        if location.startswith(("http://", "https://")):
            location = str(_download(name, location))
        source = Source(path=location, split=benchmark.split, subset=benchmark.subset, filter=dict(benchmark.filter))
        rows = load_source(source)
    except DataError as err:
        message = str(err) if str(err).startswith(f"benchmark '{name}'") else f"benchmark '{name}': {err}"
        raise DataError(message + ("" if "path" in spec else _offline_hint(name))) from None
    items = _items(benchmark, rows)
    total = len(items)
    if spec.get("exclude_sample"):
        items = _without_sample(items, spec["exclude_sample"], name)
        if not items:
            raise DataError(
                f"benchmark '{name}': 'exclude_sample' leaves no rows (the earlier sample drew all {total})"
            )
    limit = spec.get("limit", limit)
    return BenchmarkData(
        name=name,
        kind=benchmark.kind,
        title=benchmark.title,
        source=benchmark.location,
        total=total,
        items=subsample(items, limit, seed, name),
    )


def check_suite(benchmarks: Any, where: str) -> None:
    """ConfigError naming `where` for a malformed suite: not a list of names or a mapping, an unknown benchmark,
    or a spec with an unknown key, a wrong type, a `limit` below 1 or a malformed `exclude_sample`. Reads no file."""
    if isinstance(benchmarks, list):
        if not all(isinstance(name, str) for name in benchmarks):
            raise ConfigError(f"{where}: a list of benchmarks holds names, got {benchmarks!r}")
        specs: dict[str, Any] = {name: None for name in benchmarks}
    elif isinstance(benchmarks, Mapping):
        specs = dict(benchmarks)
    else:
        raise ConfigError(f"{where}: benchmarks are a list of names or a mapping name -> spec, got {benchmarks!r}")
    if not specs:
        raise ConfigError(f"{where}: no benchmarks given; known: " + ", ".join(BENCHMARKS))
    for name, spec in specs.items():
        spec = {"path": spec} if isinstance(spec, str) else spec
        if spec is not None and not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: benchmark '{name}' is null, a path or a mapping, got {spec!r}")
        spec = dict(spec or {})
        try:
            _check_spec(str(name), spec)
            for key in ("path", "split", "subset", "kind"):
                if spec.get(key) is not None and not isinstance(spec[key], str):
                    raise ConfigError(f"benchmark '{name}': '{key}' must be text, got {spec[key]!r}")
            for key in ("fields", "filter"):
                if spec.get(key) is not None and not isinstance(spec[key], Mapping):
                    raise ConfigError(f"benchmark '{name}': '{key}' must be a mapping, got {spec[key]!r}")
            if not all(isinstance(column, str) for column in (spec.get("fields") or {}).values()):
                raise ConfigError(f"benchmark '{name}': 'fields' maps names to column names (text)")
            _check_count(spec.get("limit"), f"benchmark '{name}': 'limit'")
            _check_exclude_sample(spec.get("exclude_sample"), f"benchmark '{name}': 'exclude_sample'")
            _definition(str(name), spec)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None


def _check_count(value: Any, where: str) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ConfigError(f"{where} must be a whole number >= 1, got {value!r}")


def _check_exclude_sample(value: Any, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping) or "limit" not in value or set(value) - {"limit", "seed"}:
        raise ConfigError(f"{where} is a mapping {{limit, seed}} naming an earlier sample, got {value!r}")
    _check_count(value["limit"], f"{where}: 'limit'")
    seed = value.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"{where}: 'seed' must be a whole number, got {seed!r}")


def load_suite(
    benchmarks: Mapping[str, Any] | list[str],
    *,
    limit: int | None = None,
    seed: int = 0,
    local_dir: str | Path | None = None,
) -> list[BenchmarkData]:
    """Load every benchmark of a suite: a list of names, or a mapping name -> spec (path or mapping, or null)."""
    specs = {name: None for name in benchmarks} if isinstance(benchmarks, list) else dict(benchmarks)
    if not specs:
        raise ConfigError("no benchmarks given; known: " + ", ".join(BENCHMARKS))
    return [load_benchmark(name, spec, limit=limit, seed=seed, local_dir=local_dir) for name, spec in specs.items()]
