"""From search state to the run's output files: evolved rows, the fresh-sample check, dedup and the summary.

Each process writes its rows (`rows.jsonl`) and counters (`shard.json`) into its state directory; the main
process merges them, removes near-duplicates across the whole set, and writes into the run directory:

- `evolved.jsonl`: one row per kept seed (see docs/evolve.md for the columns), loadable with `datasets`;
- `duplicates.jsonl`: rows removed as near-duplicates, each with `duplicate_of` (the kept seed index);
- `rejected_seeds.jsonl`: seeds the verifier did not judge benign (they were never evolved);
- `summary.json`: mean fitness per iteration, acceptance and verifier rejection rates, failures, per-strategy
  success, the refusal rates of seeds and evolved instructions on fresh samples from each target, and
  `model_calls`: each model role's API requests, retries by kind and failures in this invocation (summed over
  shards; None for local models), which a resumed run counts afresh.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evoalign.evolve.search import SeedState
from evoalign.io import atomic_write_json, atomic_write_jsonl, read_jsonl, read_text_strict
from evoalign.judges.fitness import FitnessEvaluator
from evoalign.records import EvolvedRow, TargetResult
from evoalign.secrets import scrub_secrets
from evoalign.text import deduplicate

ROWS, SHARD = "rows.jsonl", "shard.json"


def output_row(seed: SeedState, fresh: list[dict[str, Any]]) -> EvolvedRow:
    """The output record of one evolved seed."""
    verification = seed.verification or seed.seed_verification
    evaluation = seed.evaluation or {"fitness": None, "targets": []}
    seed_evaluation = seed.seed_evaluation or {"fitness": None, "targets": []}
    where = f"seed {seed.index}"
    return EvolvedRow(
        seed_index=seed.index,
        seed=seed.seed,
        instruction=seed.instruction,
        changed=seed.instruction != seed.seed,
        strategy=seed.operator,
        family=seed.family,
        reason=seed.reason,
        verdict=verification["verdict"],
        verifier_rationale=verification.get("rationale"),
        fitness=evaluation["fitness"],
        seed_fitness=seed_evaluation["fitness"],
        targets=[TargetResult.from_json(record, where) for record in evaluation["targets"]],
        seed_targets=[TargetResult.from_json(record, where) for record in seed_evaluation["targets"]],
        fresh=fresh,
        lineage=seed.lineage,
        source=seed.source,
    )


def rejected_row(seed: SeedState) -> dict[str, Any]:
    verdict = seed.seed_verification
    return {
        "seed_index": seed.index,
        "seed": seed.seed,
        "verdict": verdict["verdict"],
        "rationale": verdict.get("rationale"),
    }


def fresh_check(evaluator: FitnessEvaluator, seeds: Sequence[SeedState], samples: int, seed: int) -> dict[int, list]:
    """Refusal rates of each seed and its final instruction on `samples` fresh samples per target."""
    if samples == 0 or not seeds:
        return {s.index: [] for s in seeds}
    params = evaluator.params.replace(n=samples, seed=seed)
    texts = [s.seed for s in seeds] + [s.instruction for s in seeds]
    evaluations = evaluator.evaluate(texts, params=params, desc="fresh samples")
    before, after = evaluations[: len(seeds)], evaluations[len(seeds) :]
    return {
        s.index: [
            {
                "model": b["model"],
                "seed_refusal_rate": b["refusal_rate"],
                "refusal_rate": a["refusal_rate"],
                "seed_fitness": b["fitness"],
                "fitness": a["fitness"],
            }
            for b, a in zip(old["targets"], new["targets"])
        ]
        for s, old, new in zip(seeds, before, after)
    }


def write_shard(
    state_dir: Path, seeds: Sequence[SeedState], fresh: dict[int, list], history: list, calls: dict[str, Any]
) -> None:
    """This process's rows and counters (`calls`: its model calls by role), for the main process to merge."""
    active = [seed for seed in seeds if seed.active]
    atomic_write_jsonl(state_dir / ROWS, [output_row(seed, fresh[seed.index]).to_json() for seed in active])
    atomic_write_json(
        state_dir / SHARD,
        {"history": history, "rejected": [rejected_row(s) for s in seeds if not s.active], "model_calls": calls},
    )


def merge(
    run_dir: Path, state_dirs: Sequence[Path], *, dedup: bool, threshold: float, n: int, seconds: float
) -> dict[str, Any]:
    """Merge all shards, remove near-duplicates, write the output files; returns the summary."""
    rows = sorted((row for d in state_dirs for row in read_jsonl(d / ROWS)), key=lambda r: r["seed_index"])
    shards = [json.loads(read_text_strict(d / SHARD)) for d in state_dirs]
    kept, dropped = list(range(len(rows))), {}
    if dedup:
        kept, dropped = deduplicate(
            [r["instruction"] for r in rows], [r["fitness"] for r in rows], threshold=threshold, n=n
        )
    evolved = [rows[i] for i in kept]
    duplicates = [dict(rows[i], duplicate_of=rows[j]["seed_index"]) for i, j in sorted(dropped.items())]
    rejected = sorted((r for shard in shards for r in shard["rejected"]), key=lambda r: r["seed_index"])
    atomic_write_jsonl(run_dir / "evolved.jsonl", evolved)
    atomic_write_jsonl(run_dir / "duplicates.jsonl", duplicates)
    atomic_write_jsonl(run_dir / "rejected_seeds.jsonl", rejected)
    summary = summarize(rows, evolved, rejected, [shard["history"] for shard in shards])
    summary["seconds"] = round(seconds, 1)
    summary["model_calls"] = {}
    for shard in shards:
        _add(summary["model_calls"], shard["model_calls"])
    atomic_write_json(run_dir / "summary.json", scrub_secrets(summary))
    return summary


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _rate(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _add(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict):
            _add(into.setdefault(key, {}), value)
        elif key not in ("iteration",) and isinstance(value, (int, float)):
            into[key] = into.get(key, 0) + value
        else:
            into.setdefault(key, value)


def merge_counters(histories: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per-iteration counters summed over shards (seconds: the slowest shard's)."""
    merged: list[dict[str, Any]] = []
    for entries in zip(*histories):
        total: dict[str, Any] = {}
        for entry in entries:
            _add(total, {k: v for k, v in entry.items() if k != "seconds"})
        total["seconds"] = max(entry.get("seconds", 0.0) for entry in entries)
        merged.append(total)
    return merged


def _strategy_table(iterations: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {}
    for entry in iterations:
        _add(totals, entry["operators"])
    table = {}
    for name, c in sorted(totals.items()):
        table[name] = {
            **{k: c.get(k, 0) for k in ("attempts", "gated", "rejected", "evaluated", "improved", "best", "accepted")},
            "failures": c["failures"],
            "success_rate": _rate(c["improved"], c["evaluated"]),
            "mean_gain": _rate(c["gain_sum"], c["evaluated"]),
        }
    return table


def _refusal_rates(rows: list[dict[str, Any]], evolved: list[dict[str, Any]]) -> dict[str, Any]:
    models = [record["model"] for record in (rows[0]["fresh"] if rows else [])]
    report = {}
    for position, model in enumerate(models):
        seeds = _mean([row["fresh"][position]["seed_refusal_rate"] for row in rows])
        final = _mean([row["fresh"][position]["refusal_rate"] for row in evolved])
        ratio = final / seeds if seeds and final is not None else None
        report[model] = {"seeds": seeds, "evolved": final, "ratio": ratio}
    return report


def _fitness_check(evolved: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Stored fitness of the evolved rows (what the search believes) against their fitness on fresh samples.

    Only single-target rows compare directly (a row's fitness is the mean over targets, the fresh one per target).
    `gap` = stored - fresh; its standard error comes from the per-row differences.
    """
    pairs = [
        (row["fitness"], row["fresh"][0].get("fitness"))
        for row in evolved
        if len(row["fresh"]) == 1 and row["fitness"] is not None and row["fresh"][0].get("fitness") is not None
    ]
    if not pairs:
        return None
    gaps = [stored - fresh for stored, fresh in pairs]
    mean = sum(gaps) / len(gaps)
    spread = (sum((g - mean) ** 2 for g in gaps) / (len(gaps) - 1)) ** 0.5 if len(gaps) > 1 else None
    return {
        "rows": len(pairs),
        "stored": sum(p[0] for p in pairs) / len(pairs),
        "fresh": sum(p[1] for p in pairs) / len(pairs),
        "gap": mean,
        "gap_standard_error": spread / len(gaps) ** 0.5 if spread is not None else None,
    }


def _returned_earlier(row: dict[str, Any]) -> bool:
    """Whether the row's instruction is an earlier one than the annealing walk ended on (`return_best`)."""
    accepted = [step["instruction"] for step in row["lineage"] if step["accepted"]]
    return row["instruction"] != (accepted[-1] if accepted else row["seed"])


def _not_improved(refusal: dict[str, Any]) -> list[str]:
    """Targets on which the evolved set is not refused more often than the seeds on fresh samples."""
    return [
        model
        for model, r in refusal.items()
        if r["seeds"] is not None and (r["evolved"] is None or r["evolved"] <= r["seeds"])
    ]


def summarize(
    rows: list[dict[str, Any]], evolved: list[dict[str, Any]], rejected: list[dict[str, Any]], histories: list
) -> dict[str, Any]:
    """The run summary (see the module docstring)."""
    iterations = merge_counters(histories)
    per_iteration = [{"iteration": 0, "mean_fitness": _mean([r["seed_fitness"] for r in rows])}]
    for entry in iterations:
        per_iteration.append(
            {
                "iteration": entry["iteration"] + 1,
                "mean_fitness": _rate(entry["fitness_sum"], entry["fitness_count"]),
                "acceptance_rate": _rate(entry["accepted"], entry["seeds"]),
                "candidates": entry["candidates"],
                "verifier_rejection_rate": _rate(entry["rejected"], entry["verified"]),
                "worse_acceptance_rate": _rate(entry.get("worse_accepted", 0), entry.get("worse", 0)),
                "gated": entry.get("gated", 0),
                "target_samples": entry.get("target_samples", 0),
                "seconds": round(entry["seconds"], 2),
            }
        )
    failures: dict[str, int] = {}
    for entry in iterations:
        for counters in entry["operators"].values():
            for kind, count in counters["failures"].items():
                failures[kind] = failures.get(kind, 0) + count
    refusal = _refusal_rates(rows, evolved)
    return {
        "seeds": len(rows) + len(rejected),
        "seeds_rejected": len(rejected),
        "evolved": len(evolved),
        "changed": sum(row["changed"] for row in evolved),
        "duplicates_removed": len(rows) - len(evolved),
        "iterations": per_iteration,
        "acceptance_rate": _rate(sum(e["accepted"] for e in iterations), sum(e["seeds"] for e in iterations)),
        "verifier_rejection_rate": _rate(
            sum(e["rejected"] for e in iterations), sum(e["verified"] for e in iterations)
        ),
        "returned_earlier": sum(_returned_earlier(row) for row in rows),
        "worse_offered": sum(e.get("worse", 0) for e in iterations),
        "worse_acceptance_rate": _rate(
            sum(e.get("worse_accepted", 0) for e in iterations), sum(e.get("worse", 0) for e in iterations)
        ),
        "confirm_mean_drop": _rate(
            sum(e.get("confirm_drop_sum", 0.0) for e in iterations), sum(e.get("confirmed", 0) for e in iterations)
        ),
        "target_samples": sum(e.get("target_samples", 0) for e in iterations),
        "target_samples_saved": sum(
            e.get("target_samples_fixed_k", 0) - e.get("target_samples", 0) for e in iterations
        ),
        "gated": sum(e.get("gated", 0) for e in iterations),
        "failures": dict(sorted(failures.items())),
        "strategies": _strategy_table(iterations),
        "refusal_rate": refusal,
        "fitness_check": _fitness_check(evolved),
        "not_improved": _not_improved(refusal),
    }


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def render(summary: dict[str, Any]) -> str:
    """A plain-text view of the summary for the terminal."""
    lines = [
        f"seeds: {summary['seeds']} ({summary['seeds_rejected']} rejected by the verifier)  evolved: "
        f"{summary['evolved']} ({summary['changed']} changed, {summary['duplicates_removed']} near-duplicates removed)",
        f"acceptance rate: {_fmt(summary['acceptance_rate'])} (worse candidates: "
        f"{_fmt(summary['worse_acceptance_rate'])} of {summary['worse_offered']})  verifier rejection rate: "
        f"{_fmt(summary['verifier_rejection_rate'])}  quality gate dropped: {summary['gated']}  "
        f"best earlier instruction returned: {summary['returned_earlier']}",
        f"target samples of the search: {summary['target_samples']} ({summary['target_samples_saved']} saved "
        "against K samples for every text)",
        f"failures: {summary['failures'] or 'none'}",
        "",
        "iter  mean fitness  accepted  candidates  verifier rejected  seconds",
    ]
    for it in summary["iterations"]:
        lines.append(
            f"{it['iteration']:>4}  {_fmt(it['mean_fitness']):>12}  {_fmt(it.get('acceptance_rate')):>8}  "
            f"{it.get('candidates', '-'):>10}  {_fmt(it.get('verifier_rejection_rate')):>17}  {it.get('seconds', '-'):>7}"
        )
    lines += ["", f"{'strategy':<26} attempts  failed  gated  rejected  evaluated  success  mean gain  accepted"]
    for name, s in summary["strategies"].items():
        lines.append(
            f"{name:<26} {s['attempts']:>8}  {sum(s['failures'].values()):>6}  {s['gated']:>5}  {s['rejected']:>8}  "
            f"{s['evaluated']:>9}  {_fmt(s['success_rate']):>7}  {_fmt(s['mean_gain'], '+.3f'):>9}  {s['accepted']:>8}"
        )
    if summary["refusal_rate"]:
        lines += ["", "refusal rate on fresh samples (seeds -> evolved):"]
        for model, r in summary["refusal_rate"].items():
            lines.append(f"  {model}: {_fmt(r['seeds'])} -> {_fmt(r['evolved'])} (x{_fmt(r['ratio'], '.2f')})")
    check = summary.get("fitness_check")
    if check:
        lines.append(
            f"stored fitness {_fmt(check['stored'])} vs fresh {_fmt(check['fresh'])}: gap {_fmt(check['gap'], '+.3f')} "
            f"(standard error {_fmt(check['gap_standard_error'])})"
        )
    for model in summary.get("not_improved", []):
        lines += [
            "",
            f"WARNING: on {model} the evolved instructions are NOT refused more often than the seeds on fresh "
            "samples: this run did not find pseudo-malicious rewrites (see summary.json 'not_improved').",
        ]
    return "\n".join(lines)
