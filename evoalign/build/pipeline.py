"""The build stage: evolved (or imported) instructions -> SFT set and preference pairs, mixed with a safety set.

Steps, each recorded in the ledger with the rows it kept and dropped and why:

1. read the evolved set (or an EvoRefuse-Align file) and the harmful-prompt set;
2. the safety gate: only instructions verified `benign` may get a compliant answer (`safety.safety_gate`);
3. exact duplicates out (a benign copy of a safety instruction goes too);
4. answers: the responder writes a compliant answer per benign row and a refusal writer a refusal per safety
   row; the refusal judge checks each, with batched regeneration rounds, then drops what still fails;
5. rejected responses: benign rows use the target's refusals from evolution, else optionally ones sampled now;
6. CHES of every pair under a policy model, dropping the most similar fraction (optional);
7. splits: near-duplicate groups (and rows of one seed) go whole to train or test; each SFT split gets exactly
   `safety_ratio` safety rows per benign row, each preference split up to that many safety pairs;
8. files: JSONL splits, a `save_to_disk` DatasetDict, the card, summary.json, run_info.json (all atomic).
   summary.json holds the ledger, the split sizes and `model_calls`: each role's API requests, retries by kind
   and failures in this invocation (None for local models; roles sharing one model are named together).

All model calls go through the response cache in the output folder, so rerunning with `--resume` after a kill
finishes with identical files. Every configured model is checked (path, API key, server) before that folder is
created, so a bad model spec leaves nothing behind and the corrected command needs no `--resume`.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoalign.build.card import dataset_card
from evoalign.build.ches import ches_scores, drop_most_similar, keep_least_similar
from evoalign.build.config import BuildConfig
from evoalign.build.evolved import load_evolved
from evoalign.build.evorefuse_format import imported_examples, read_evorefuse, write_evorefuse
from evoalign.build.examples import WANTED_ANSWER, WANTED_REJECTED, Example
from evoalign.build.output import CACHE_FILE, SPLITS, prepare_output_dir, push_to_hub, write_splits
from evoalign.build.responses import sample_wanted, write_until_accepted
from evoalign.build.safety import (
    REFUSAL_WRITER_PROMPT,
    load_harmful_prompts,
    mix,
    safety_count,
    safety_gate,
    template_refusal,
)
from evoalign.build.splits import assign_test
from evoalign.build.summary import Ledger
from evoalign.config import config_to_dict
from evoalign.errors import ConfigError, DataError
from evoalign.io import atomic_write_json, atomic_write_text
from evoalign.judges import RefusalJudge
from evoalign.judges.loading import load_judge
from evoalign.judges.verifiers import Verifier, get_verifier
from evoalign.judges.verifiers import model_specs as verifier_models
from evoalign.labels import BENIGN, SAFETY
from evoalign.models import TRANSFORMERS, ChatModel, SamplingParams, as_conversation
from evoalign.models.pool import ModelPool
from evoalign.prompts import condition_prefix, with_condition
from evoalign.runinfo import write_run_info
from evoalign.runlock import RunLock, check_unlocked
from evoalign.secrets import scrub_secrets
from evoalign.text import near_duplicate_groups, normalize

EVOREFUSE_EXPORT = "evorefuse_align.json"


@dataclass
class BuildResult:
    """What a build produced: the rows of each split, the ledger, and where the files are."""

    splits: dict[str, list[dict[str, Any]]]
    ledger: Ledger
    output_dir: Path


def _read_inputs(config: BuildConfig, judge: RefusalJudge, ledger: Ledger) -> list[Example]:
    if config.evolved is not None:
        examples = load_evolved(config.evolved, harmful_as_safety=config.evolved_harmful_as_safety)
        harmful = sum(e.kind == SAFETY for e in examples)
        ledger.record("read evolved set", len(examples), note=f"{harmful} verified harmful -> safety set")
    else:
        pairs = read_evorefuse(config.import_evorefuse)
        examples = imported_examples(pairs, judge, str(config.import_evorefuse), ledger)
    if config.harmful_prompts is not None and config.safety_ratio > 0:
        harmful_prompts = load_harmful_prompts(config.harmful_prompts, config.benchmark_dir)
        ledger.record("read harmful prompts", len(harmful_prompts))
        examples += harmful_prompts
    context = condition_prefix(config.train_condition)
    for example in examples:
        example.context = context
    return examples


def check_models(config: BuildConfig, judge: RefusalJudge, examples: list[Example]) -> None:
    """Before the output folder exists: the path, API key and server of each model the build will call (no weights
    loaded); a model the inputs make unnecessary (e.g. a responder when every row has its answer) is not checked."""
    benign = [e for e in examples if e.kind == BENIGN]
    safety = [e for e in examples if e.kind == SAFETY]
    needed = {
        "verifier": any(e.verdict is None for e in benign),
        "writer": config.refusal_writer != "template" and any(e.answer is None for e in safety),
        "responder": any(e.answer is None for e in benign),
        "target": any(not e.rejected for e in benign)
        or (config.safety_target_condition is not None and any(not e.rejected for e in safety)),
        "policy": True,
    }
    specs = {
        "verifier": verifier_models(config.verifier),
        "writer": [config.refusal_writer],
        "responder": [config.responder],
        "target": [config.target],
        "policy": [config.policy],
    }
    ModelPool.check(spec for role, role_specs in specs.items() if needed[role] for spec in role_specs)
    judge.check()


def _verifier(config: BuildConfig, examples: list[Example], pool: ModelPool) -> Verifier | None:
    if not any(e.kind == BENIGN and e.verdict is None for e in examples):
        return None
    return get_verifier(config.verifier, voting=config.verifier_voting, load=pool.get)


def drop_duplicates(examples: list[Example], ledger: Ledger) -> list[Example]:
    """Keep the first of each (kind, normalised instruction); a benign row whose instruction is also a safety
    row is dropped, since one instruction cannot be trained both to comply and to refuse."""
    text = {id(e): normalize(e.instruction) or e.instruction for e in examples}
    safety = {text[id(e)] for e in examples if e.kind == SAFETY}
    seen: set[tuple[str, str]] = set()
    kept, dropped = [], Counter()
    for example in examples:
        key = (example.kind, text[id(example)])
        if example.kind == BENIGN and key[1] in safety:
            dropped["benign instruction also in the safety set"] += 1
        elif key in seen:
            dropped[f"duplicate {example.kind} instruction"] += 1
        else:
            seen.add(key)
            kept.append(example)
    ledger.record("exact duplicates", len(kept), dropped)
    return kept


def _write_with_model(
    config: BuildConfig, todo: list[Example], model: ChatModel, system_prompt: str, judge: RefusalJudge, step: str
) -> tuple[Counter, str]:
    prompts = [e.instruction for e in todo]
    answers, stats = write_until_accepted(
        model,
        judge,
        prompts,
        [as_conversation(prompt, system_prompt) for prompt in prompts],
        accept=WANTED_ANSWER[todo[0].kind],
        params=SamplingParams(temperature=config.temperature, max_new_tokens=config.max_new_tokens, seed=config.seed),
        retries=config.max_retries,
        retry_temperature=config.retry_temperature,
        truncated=config.truncated,
        max_doubt=config.max_judge_doubt,
        desc=step,
    )
    for example, answer in zip(todo, answers):
        example.answer = answer
    dropped = Counter({f"{why} after {config.max_retries} retries": n for why, n in stats.failed.items()})
    return dropped, f"regenerated per round: {stats.regenerated}" if stats.regenerated else ""


def write_answers(
    config: BuildConfig, examples: list[Example], judge: RefusalJudge, pool: ModelPool, ledger: Ledger
) -> list[Example]:
    """Give every example an answer the judge accepts; drop those that get none."""
    safety = [e for e in examples if e.kind == SAFETY and e.answer is None]
    if safety and config.refusal_writer == "template":
        for example in safety:
            example.answer = template_refusal(example.instruction, config.seed)
        ledger.record("refusals (templates)", len(safety))
    elif safety:
        writer = pool.get(config.refusal_writer, "refusal_writer")
        dropped, note = _write_with_model(config, safety, writer, REFUSAL_WRITER_PROMPT, judge, "refusals")
        ledger.record("refusals (refusal writer, judged)", sum(e.answer is not None for e in safety), dropped, note)
    benign = [e for e in examples if e.kind == BENIGN and e.answer is None]
    if benign:
        responder = pool.get(config.responder, "responder")
        dropped, note = _write_with_model(config, benign, responder, config.responder_system_prompt, judge, "answers")
        ledger.record(
            "compliant answers (responder, judged)", sum(e.answer is not None for e in benign), dropped, note
        )
    return [e for e in examples if e.answer is not None]


def find_rejected(
    config: BuildConfig, examples: list[Example], judge: RefusalJudge, pool: ModelPool, ledger: Ledger
) -> None:
    """Rows without a rejected response from evolution get ones sampled from the target now, when one is set.

    Benign rows look for refusals under `target_condition`; safety rows, with `safety_target_condition` set, look
    for compliances (e.g. the target without its safety prompt answering a harmful request).
    """
    benign = [e for e in examples if e.kind == BENIGN]
    _sample_rejected(config, benign, BENIGN, config.target_condition, judge, pool, "target refusals")
    origins = Counter(e.rejected_origin if e.rejected else "none" for e in benign)
    paired = len(benign) - origins.pop("none", 0)
    note = ", ".join(f"{n} from {origin}" for origin, n in sorted(origins.items()))
    ledger.record(
        "benign pairs (rejected = a target refusal)",
        paired,
        {"no refusal from the target": len(benign) - paired},
        note,
    )
    safety = [e for e in examples if e.kind == SAFETY]
    if config.safety_target_condition is not None:
        condition = config.safety_target_condition
        _sample_rejected(config, safety, SAFETY, condition, judge, pool, "target compliances")
    with_compliance = sum(bool(e.rejected) for e in safety)
    ledger.record(
        "safety pairs (rejected = a harmful compliance)",
        with_compliance,
        {"no harmful compliance available": len(safety) - with_compliance},
    )


def _sample_rejected(
    config: BuildConfig,
    examples: list[Example],
    kind: str,
    condition: Any,
    judge: RefusalJudge,
    pool: ModelPool,
    desc: str,
) -> None:
    missing = [e for e in examples if not e.rejected]
    if not missing or config.target is None:
        return
    prompts = [e.instruction for e in missing]
    params = SamplingParams(
        n=config.target_samples,
        temperature=config.target_temperature,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
    )
    found = sample_wanted(
        pool.get(config.target, "target"),
        judge,
        prompts,
        with_condition(prompts, condition),
        want=WANTED_REJECTED[kind],
        params=params,
        desc=desc,
    )
    for example, responses in zip(missing, found):
        if responses:
            example.rejected, example.rejected_origin = responses, "sampled"


def filter_ches(config: BuildConfig, pairs: list[Example], pool: ModelPool, ledger: Ledger) -> list[Example]:
    """Score pairs by CHES under the policy and drop the most similar fraction; no policy, no change."""
    if config.policy is None or not pairs:
        return pairs
    policy = pool.get(config.policy, "policy", cached=False)
    if TRANSFORMERS not in policy.capabilities:
        raise ConfigError(f"policy '{policy.spec}': CHES needs hidden states; give a smollm2 or hf: model")
    scores = ches_scores(
        policy,
        [e.prompt() for e in pairs],
        [e.answer for e in pairs],
        [e.rejected[0] for e in pairs],
        batch_size=config.ches_batch_size,
    )
    for example, score in zip(pairs, scores):
        example.ches = score
    if config.ches_keep_fraction is not None:
        keep = keep_least_similar(scores, config.ches_keep_fraction)
        step = f"CHES filter (keep the lowest {config.ches_keep_fraction:.0%})"
    else:
        keep = drop_most_similar(scores, config.ches_drop_fraction)
        step = f"CHES filter (drop {config.ches_drop_fraction:.0%})"
    dropped = Counter(f"most similar {e.kind} pairs" for e, kept in zip(pairs, keep) if not kept)
    ranked = sorted(scores)
    note = f"CHES min {ranked[0]:.3g}, median {ranked[len(ranked) // 2]:.3g}, max {ranked[-1]:.3g}"
    ledger.record(step, sum(keep), dropped, note)
    return [e for e, kept in zip(pairs, keep) if kept]


def split_and_mix(
    config: BuildConfig, examples: list[Example], pairs: list[Example], ledger: Ledger
) -> dict[str, list[dict[str, Any]]]:
    """Assign near-duplicate groups to train/test, then mix safety rows into each split at the ratio."""
    groups = near_duplicate_groups(
        [e.instruction for e in examples],
        threshold=config.near_dup_threshold,
        shingle_size=config.shingle_size,
        keys=[e.group for e in examples] if config.group_by_seed else None,
    )
    in_test = assign_test(
        groups,
        [e.kind == BENIGN for e in examples],
        test_size=config.test_size,
        safety_needed=lambda benign: safety_count(benign, config.safety_ratio),
        seed=config.seed,
    )
    benign_in_test = sum(flag for e, flag in zip(examples, in_test) if e.kind == BENIGN)
    if benign_in_test == sum(e.kind == BENIGN for e in examples):
        raise DataError(
            f"all {benign_in_test} benign rows fall into near-duplicate groups that leave none for training; "
            "raise near_dup_threshold or shingle_size (or set group_by_seed false)"
        )
    ledger.record(
        "split (near-duplicate groups whole)",
        len(examples),
        note=f"{len(set(groups))} groups; {benign_in_test} benign rows in test",
    )
    rng = random.Random(config.seed)
    paired = {id(e) for e in pairs}
    splits: dict[str, list[dict[str, Any]]] = {}
    unused, unused_pairs = Counter(), Counter()
    for name, test in (("train", False), ("test", True)):
        members = [e for e, flag in zip(examples, in_test) if flag == test]
        benign = [e for e in members if e.kind == BENIGN]
        safety = [e for e in members if e.kind == SAFETY]
        rng.shuffle(safety)
        sft = mix(benign, safety, config.safety_ratio, rng)
        prefs = mix(
            [e for e in benign if id(e) in paired],
            [e for e in safety if id(e) in paired],
            config.safety_ratio,
            rng,
            exact=False,
        )
        unused["safety rows beyond the ratio"] += len(benign) + len(safety) - len(sft)
        unused_pairs["safety pairs beyond the ratio"] += sum(id(e) in paired for e in members) - len(prefs)
        splits[f"{name}_sft"] = [e.sft_row() for e in sft]
        splits[f"{name}_prefs"] = [e.pair_row() for e in prefs]
    ledger.record("SFT mix (exact ratio per split)", len(splits["train_sft"]) + len(splits["test_sft"]), unused)
    ledger.record(
        "preference mix (up to the ratio)", len(splits["train_prefs"]) + len(splits["test_prefs"]), unused_pairs
    )
    return {name: splits[name] for name in SPLITS}


def _require_benign(examples: list[Example], ledger: Ledger) -> None:
    if not any(e.kind == BENIGN for e in examples):
        step = ledger.steps[-1]
        why = ", ".join(f"{reason}: {n}" for reason, n in step["dropped"].items()) or "none were read"
        raise DataError(f"no benign rows left after step '{step['step']}' ({why})")


def _write_outputs(
    out: Path, config: BuildConfig, settings: dict[str, Any], ledger: Ledger, splits: dict, calls: dict[str, Any]
) -> None:
    dataset = write_splits(out, splits)
    if config.export_evorefuse:
        write_evorefuse(splits["train_prefs"] + splits["test_prefs"], out / EVOREFUSE_EXPORT)
    counts = {name: dict(Counter(row["kind"] for row in splits[name]), total=len(splits[name])) for name in SPLITS}
    summary = {"steps": ledger.steps, "splits": counts, "model_calls": calls}
    atomic_write_json(out / "summary.json", scrub_secrets(summary))
    card = out / "README.md"
    atomic_write_text(card, dataset_card(settings, ledger, splits))
    if config.push_to_hub:
        push_to_hub(dataset, card, config.hub_dataset_id, config.hub_private)


def build(config: BuildConfig) -> BuildResult:
    """Run the whole build (see the module docstring) and write its files into `config.output_dir`."""
    ledger = Ledger()
    check_unlocked(config.output_dir)
    pool = ModelPool(Path(config.output_dir) / CACHE_FILE)
    lock = RunLock(config.output_dir, "build")
    try:
        return _build(config, ledger, pool, lock)
    finally:
        pool.close()
        lock.release()


def _build(config: BuildConfig, ledger: Ledger, pool: ModelPool, lock: RunLock) -> BuildResult:
    try:
        judge = load_judge(config.judge, pool, cached=False)  # it may judge an imported set before the folder exists
        examples = _read_inputs(config, judge, ledger)
        check_models(config, judge, examples)
        out = prepare_output_dir(lock, config.resume)
        settings = config_to_dict(config)
        write_run_info(out, settings, "build")
        verifier = _verifier(config, examples, pool)
        examples = safety_gate(examples, verifier=verifier, assume_verdict=config.assume_verdict, ledger=ledger)
        _require_benign(examples, ledger)
        examples = drop_duplicates(examples, ledger)
        examples = write_answers(config, examples, judge, pool, ledger)
        _require_benign(examples, ledger)
        find_rejected(config, examples, judge, pool, ledger)
        pairs = filter_ches(config, [e for e in examples if e.rejected], pool, ledger)
        splits = split_and_mix(config, examples, pairs, ledger)
    finally:
        pool.close()
    calls = {**pool.calls(), "judge": pool.stats("judge")}
    _write_outputs(out, config, settings, ledger, splits, calls)
    return BuildResult(splits=splits, ledger=ledger, output_dir=out)
