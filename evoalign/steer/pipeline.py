"""The ablation recipe: fit directions on training prompts, choose a candidate on validation, save the edit.

1. Activations of the harmful, harmless and pseudo-harmful training prompts (behind the run's prompt condition)
   give the true-refusal direction r = harmful - harmless and the false-refusal direction v = pseudo - harmless
   at every layer and candidate position.
2. Every candidate (layer, position, strength) ablates v partially orthogonalised against r, with hooks, and
   answers the validation prompts (greedy); the judge's refusal rates on the benign and harmful validation sets
   are its point on the trade-off curve (`candidates.jsonl`, one row each, so an interrupted run resumes).
3. The rule, fixed before any run: a candidate qualifies when its harmful refusal is at most `max_harmful_drop`
   points below the unedited model's; the qualifying candidate with the lowest benign refusal wins (ties: the
   stronger orthogonalisation, then the grid order). If none qualifies or none refuses fewer benign prompts than
   the base, nothing is saved and the report says so.
4. The winner is folded into the weights and saved with the tokenizer as an ordinary model folder
   (`hf:<output_dir>`), next to `ablation.json` (the choice, the base's and every candidate's validation rates),
   `directions.safetensors` and `run_info.json`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoalign.benchmarks import load_suite
from evoalign.config import config_to_dict
from evoalign.errors import DataError
from evoalign.io import atomic_write_json, read_jsonl
from evoalign.judges.base import is_refusing
from evoalign.judges.loading import load_judge
from evoalign.models import load_model
from evoalign.models.base import SamplingParams
from evoalign.models.pool import ModelPool
from evoalign.prompts import with_condition
from evoalign.runinfo import write_run_info
from evoalign.steer.ablation import ablate_weights, ablation_hooks
from evoalign.steer.config import FIT_SETS, VALIDATION_SETS, AblationConfig
from evoalign.steer.directions import mean_difference, partially_orthogonalise, prompt_activations

logger = logging.getLogger("evoalign.steer")
REPORT = "ablation.json"
CANDIDATES = "candidates.jsonl"


@dataclass
class Rates:
    """Validation refusal rates (percent) of one model state."""

    benign: float
    harmful: float


def choose(base: Rates, candidates: list[dict[str, Any]], max_harmful_drop: float) -> dict[str, Any] | None:
    """The candidate the pre-written rule picks (see the module docstring), or None."""
    qualifying = [c for c in candidates if c["harmful_refusal"] >= base.harmful - max_harmful_drop]
    if not qualifying:
        return None
    best = min(qualifying, key=lambda c: (c["benign_refusal"], -c["strength"], candidates.index(c)))
    return best if best["benign_refusal"] < base.benign else None


def _prompts(suite: Any, config: AblationConfig) -> list[str]:
    sets = load_suite(suite, seed=config.seed, local_dir=config.benchmark_dir)
    return [item["prompt"] for data in sets for item in data.items]


def load_prompt_sets(config: AblationConfig) -> dict[str, list[str]]:
    """Every prompt set by role; a training prompt that is also a validation prompt is a DataError."""
    sets = {name: _prompts(getattr(config, name), config) for name in FIT_SETS + VALIDATION_SETS}
    validation = {p.strip().lower() for name in VALIDATION_SETS for p in sets[name]}
    for name in FIT_SETS:
        shared = [p for p in sets[name] if p.strip().lower() in validation]
        if shared:
            raise DataError(f"'{name}' and the validation sets share {len(shared)} prompt(s), e.g. {shared[0]!r}")
    return sets


def _fingerprint(config: AblationConfig, sets: dict[str, list[str]]) -> str:
    """What a candidate row's figures depend on; rows with another fingerprint are not reused on resume."""
    keys = {
        k: v for k, v in config_to_dict(config).items() if k not in ("output_dir", "layers", "positions", "strengths")
    }
    return hashlib.sha256(json.dumps([keys, sets], sort_keys=True, default=str).encode()).hexdigest()[:16]


class Validator:
    """Answers the validation prompts with the model as it is (hooks included) and judges the answers."""

    def __init__(self, chat_model: Any, judge: Any, sets: dict[str, list[str]], config: AblationConfig) -> None:
        self.chat_model, self.judge, self.config = chat_model, judge, config
        self.prompts = {"benign": sets["validation_benign"], "harmful": sets["validation_harmful"]}

    def rates(self, desc: str) -> Rates:
        params = SamplingParams(temperature=0.0, max_new_tokens=self.config.max_new_tokens)
        found = {}
        for kind, prompts in self.prompts.items():
            answers = self.chat_model.generate(
                with_condition(prompts, self.config.condition), params, desc=f"{desc} {kind}"
            )
            labels = self.judge.classify([{"prompt": p, "response": a[0].text} for p, a in zip(prompts, answers)])
            found[kind] = 100.0 * sum(is_refusing(label["label"]) for label in labels) / len(prompts)
        return Rates(**found)


def fit_directions(chat_model: Any, sets: dict[str, list[str]], config: AblationConfig) -> tuple[Any, Any]:
    """(true-refusal, false-refusal) directions, each [layers + 1, positions, hidden]."""
    model, tokenizer = chat_model.hf_model, chat_model.hf_tokenizer
    means = {}
    for name in FIT_SETS:
        ids = chat_model.prompt_ids(with_condition(sets[name], config.condition))
        means[name] = prompt_activations(model, tokenizer, ids, config.positions, batch_size=config.batch_size)
    true_refusal = mean_difference(means["harmful"], means["harmless"])
    false_refusal = mean_difference(means["pseudo_harmful"], means["harmless"])
    return true_refusal, false_refusal


def candidate_grid(config: AblationConfig, block_count: int) -> list[tuple[int, int, float]]:
    """(layer, position, strength) candidates; layer l is the residual stream entering block l."""
    layers = config.layers or list(range(1, block_count))
    too_deep = [layer for layer in layers if layer >= block_count]
    if too_deep:
        raise DataError(f"layer {too_deep[0]} does not exist: the model has blocks 0 to {block_count - 1}")
    return [
        (layer, position, strength)
        for layer in layers
        for position in config.positions
        for strength in config.strengths
    ]


def run_ablation(config: AblationConfig) -> dict[str, Any]:
    """Run the recipe (module docstring); returns the report written to `ablation.json`."""
    import torch
    from safetensors.torch import save_file

    out = Path(config.output_dir)
    if (out / REPORT).is_file():
        logger.info("%s already done", out)
        return json.loads((out / REPORT).read_text(encoding="utf-8"))
    sets = load_prompt_sets(config)
    fingerprint = _fingerprint(config, sets)
    model_spec = config.model if isinstance(config.model, dict) else {"spec": config.model}
    chat_model = load_model({**model_spec, "dtype": config.dtype, "batch_size": config.batch_size})
    out.mkdir(parents=True, exist_ok=True)
    write_run_info(out, config_to_dict(config), "steer")
    with ModelPool() as pool:
        validator = Validator(chat_model, load_judge(config.judge, pool), sets, config)
        true_refusal, false_refusal = fit_directions(chat_model, sets, config)
        grid = candidate_grid(config, true_refusal.shape[0] - 1)
        done = {
            (row["layer"], row["position"], row["strength"]): row
            for row in (read_jsonl(out / CANDIDATES) if (out / CANDIDATES).is_file() else [])
            if row["fingerprint"] == fingerprint
        }
        base = validator.rates("base")
        rows = []
        for layer, position, strength in grid:
            row = done.get((layer, position, strength))
            if row is None:
                index = config.positions.index(position)
                direction = partially_orthogonalise(false_refusal[layer, index], true_refusal[layer, index], strength)
                with ablation_hooks(chat_model.hf_model, direction):
                    rates = validator.rates(f"layer {layer} pos {position} strength {strength}")
                row = {
                    "layer": layer,
                    "position": position,
                    "strength": strength,
                    "benign_refusal": rates.benign,
                    "harmful_refusal": rates.harmful,
                    "fingerprint": fingerprint,
                }
                with (out / CANDIDATES).open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")
            rows.append(row)
            logger.info("candidate %s", row)
    chosen = choose(base, rows, config.max_harmful_drop)
    report = {
        "model": config.model,
        "condition": config.condition,
        "rule": f"lowest validation benign refusal with harmful refusal >= base - {config.max_harmful_drop} points",
        "sizes": {name: len(prompts) for name, prompts in sets.items()},
        "base": {"benign_refusal": base.benign, "harmful_refusal": base.harmful},
        "candidates": [{k: v for k, v in row.items() if k != "fingerprint"} for row in rows],
        "chosen": None if chosen is None else {k: v for k, v in chosen.items() if k != "fingerprint"},
    }
    if chosen is not None:
        index = config.positions.index(chosen["position"])
        direction = partially_orthogonalise(
            false_refusal[chosen["layer"], index], true_refusal[chosen["layer"], index], chosen["strength"]
        )
        ablate_weights(chat_model.hf_model, direction)
        chat_model.hf_model.save_pretrained(out)
        chat_model.hf_tokenizer.save_pretrained(out)
        save_file(
            {
                "true_refusal": true_refusal.contiguous(),
                "false_refusal": false_refusal.contiguous(),
                "ablated": direction.contiguous().to(torch.float32),
            },
            str(out / "directions.safetensors"),
        )
    atomic_write_json(out / REPORT, report)
    return report
