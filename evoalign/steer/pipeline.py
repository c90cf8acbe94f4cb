"""The steer recipe: fit directions (and a probe) on training prompts, choose on validation, save the edit.

1. Activations of the harmful, harmless and pseudo-harmful training prompts (behind the run's prompt condition)
   give the true-refusal direction r = harmful - harmless and the false-refusal direction v = pseudo - harmless
   at every layer and candidate position. With `filter_fit` (the paper's filter), each set first keeps only the
   prompts whose greedy answer shows what its direction stands for: harmful and pseudo-harmful prompts the model
   refuses, harmless ones it answers (`ablation.json`'s `fit_filter` counts them).
2. `method: ablation` (Wang et al. 2025): every candidate (layer, position, strength) ablates v partially
   orthogonalised against r everywhere, with hooks, and answers the validation prompts (greedy).
   `method: probe` (SCANS-style): a logistic probe per layer separates harmful from harmless and pseudo-harmful
   training prompts; a candidate (direction layer, position, probe layer, threshold) ablates r only for the
   requests whose probe P(harmful) is below the threshold. Each answer is either the unedited model's or the one
   with r ablated, so one validation run per direction layer gives every probe candidate's answers.
   Every run's per-prompt refusal labels (the judge's, the filter's among them) go to `candidates.jsonl`, so an
   interrupted run resumes.
3. The rule, fixed before any run: a candidate qualifies when its validation harmful refusal is at most
   `max_harmful_drop` points below the unedited model's; the qualifying candidate with the lowest benign refusal
   wins (ties: the larger strength or threshold, then the grid order). If none qualifies or none refuses fewer
   benign prompts than the base, nothing is saved and the report says so.
4. Ablation: the winner is folded into the weights and saved with the tokenizer as an ordinary model folder
   (`hf:<output_dir>`). Probe: `steering.safetensors`, used as `{spec: <model>, steering: <file>}`. Next to it:
   `ablation.json` (the base's and every candidate's validation rates, the rule and its harmful limit, the choice)
   and `run_info.json`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
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
from evoalign.models.steering import Steering, ablation_hooks, prompt_activations
from evoalign.prompts import with_condition
from evoalign.runinfo import write_run_info
from evoalign.steer.ablation import ablate_weights
from evoalign.steer.config import FIT_SETS, VALIDATION_SETS, AblationConfig
from evoalign.steer.directions import fit_probe, mean_difference, partially_orthogonalise
from evoalign.validation_rule import Rates, choose, describe

logger = logging.getLogger("evoalign.steer")
REPORT = "ablation.json"
CANDIDATES = "candidates.jsonl"
STEERING = "steering.safetensors"


def _percent(flags: list[bool]) -> float:
    return 100.0 * sum(flags) / len(flags)


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
    """What a run's labels depend on; labels with another fingerprint are not reused on resume."""
    grid = ("output_dir", "method", "layers", "positions", "strengths", "probe_layers", "thresholds")
    keys = {k: v for k, v in config_to_dict(config).items() if k not in grid}
    return hashlib.sha256(json.dumps([keys, sets], sort_keys=True, default=str).encode()).hexdigest()[:16]


def refusal_flags(chat_model: Any, judge: Any, prompts: list[str], config: AblationConfig, desc: str) -> list[bool]:
    """Whether the model (as it is, hooks included) refuses each prompt: greedy answers behind the run's condition,
    the judge's verdicts."""
    params = SamplingParams(temperature=0.0, max_new_tokens=config.max_new_tokens)
    answers = chat_model.generate(with_condition(prompts, config.condition), params, desc=desc)
    labels = judge.classify([{"prompt": p, "response": a[0].text} for p, a in zip(prompts, answers)])
    return [is_refusing(label["label"]) for label in labels]


# What each fitting set's mean stands for under `filter_fit`: refused (True) or answered (False) prompts.
FIT_BEHAVIOUR = {"harmful": True, "harmless": False, "pseudo_harmful": True}


def filter_fit_sets(
    chat_model: Any, judge: Any, sets: dict[str, list[str]], config: AblationConfig, store: LabelStore
) -> dict[str, list[str]]:
    """The fitting sets cut to the prompts whose answer shows the behaviour their direction stands for (the
    paper's filter): {set name: kept prompts}. The labels go to `store`, so a resumed run does not
    answer the prompts again. A DataError when a set keeps none."""
    fingerprint = _fingerprint(config, sets)
    kept = {}
    for name, refused in FIT_BEHAVIOUR.items():
        flags = store.labels(
            f"filter {name}",
            fingerprint,
            lambda name=name: {"refused": refusal_flags(chat_model, judge, sets[name], config, f"filter {name}")},
        )["refused"]
        kept[name] = [prompt for prompt, flag in zip(sets[name], flags) if flag == refused]
        if not kept[name]:
            behaviour = "refuses" if refused else "answers"
            raise DataError(f"filter_fit: the model {behaviour} none of the {len(flags)} '{name}' prompts")
    return kept


class LabelStore:
    """Per-prompt refusal labels by run name, appended to `candidates.jsonl` as they are found, so that an
    interrupted run resumes; a row is reused only under the fingerprint it was written with."""

    def __init__(self, path: Path) -> None:
        self.path = path
        rows = read_jsonl(path) if path.is_file() else []
        self.rows = {(row["run"], row["fingerprint"]): row for row in rows if "run" in row and "fingerprint" in row}

    def labels(self, run: str, fingerprint: str, find: Callable[[], dict[str, list[bool]]]) -> dict[str, list[bool]]:
        """The stored labels of `run`, or those `find` returns, stored first."""
        row = self.rows.get((run, fingerprint))
        if row is None:
            row = {"run": run, **find(), "fingerprint": fingerprint}
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
            self.rows[run, fingerprint] = row
        return {key: flags for key, flags in row.items() if key not in ("run", "fingerprint")}


class Validator:
    """Answers the validation prompts with the model as it is (hooks included); judges them; resumes from `store`."""

    def __init__(
        self, chat_model: Any, judge: Any, sets: dict[str, list[str]], config: AblationConfig, store: LabelStore
    ) -> None:
        self.chat_model, self.judge, self.config, self.store = chat_model, judge, config, store
        self.prompts = {"benign": sets["validation_benign"], "harmful": sets["validation_harmful"]}
        self.fingerprint = _fingerprint(config, sets)

    def refusals(self, run: str, direction: Any = None) -> dict[str, list[bool]]:
        """Per-prompt refusal flags, by kind, of the model with `direction` ablated (None: unedited)."""
        return self.store.labels(run, self.fingerprint, lambda: self._measure(run, direction))

    def _measure(self, run: str, direction: Any) -> dict[str, list[bool]]:
        found = {}
        for kind, prompts in self.prompts.items():
            if direction is None:
                found[kind] = refusal_flags(self.chat_model, self.judge, prompts, self.config, f"{run} {kind}")
            else:
                with ablation_hooks(self.chat_model.hf_model, direction):
                    found[kind] = refusal_flags(self.chat_model, self.judge, prompts, self.config, f"{run} {kind}")
        return found


def activations_by_set(chat_model: Any, sets: dict[str, list[str]], names: tuple[str, ...], config: AblationConfig):
    """{set name: activations [layers + 1, positions, prompts, hidden]} behind the run's condition."""
    found = {}
    for name in names:
        ids = chat_model.prompt_ids(with_condition(sets[name], config.condition))
        found[name] = prompt_activations(
            chat_model.hf_model, chat_model.hf_tokenizer, ids, config.positions, batch_size=config.batch_size
        )
    return found


def check_layers(layers: list[int], block_count: int) -> list[int]:
    """`layers` (default: 1 to the last block); a DataError for a layer the model does not have."""
    layers = layers or list(range(1, block_count))
    too_deep = [layer for layer in layers if layer >= block_count]
    if too_deep:
        raise DataError(f"layer {too_deep[0]} does not exist: the model has blocks 0 to {block_count - 1}")
    return layers


def _ablation_candidates(validator: Validator, directions: dict[str, Any], config: AblationConfig, blocks: int):
    rows = []
    for layer in check_layers(config.layers, blocks):
        for index, position in enumerate(config.positions):
            for strength in config.strengths:
                run = f"ablation layer {layer} pos {position} strength {strength}"
                direction = partially_orthogonalise(
                    directions["false"][layer, index], directions["true"][layer, index], strength
                )
                flags = validator.refusals(run, direction)
                rows.append(
                    {
                        "layer": layer,
                        "position": position,
                        "strength": strength,
                        "benign_refusal": _percent(flags["benign"]),
                        "harmful_refusal": _percent(flags["harmful"]),
                    }
                )
    return rows


def _probe_candidates(validator, directions, probes, validation_acts, base_flags, config, blocks):
    rows = []
    for layer in check_layers(config.layers, blocks):
        for index, position in enumerate(config.positions):
            ablated = validator.refusals(
                f"refusal ablated layer {layer} pos {position}", directions["true"][layer, index]
            )
            for probe_layer in check_layers(config.probe_layers, blocks):
                probe = probes[(probe_layer, index)]
                for threshold in config.thresholds:
                    flags, steered = {}, {}
                    for kind in ("benign", "harmful"):
                        probability = probe.harmful_probability(validation_acts[kind][probe_layer, index])
                        steer = (probability < threshold).tolist()
                        flags[kind] = [a if s else b for a, b, s in zip(ablated[kind], base_flags[kind], steer)]
                        steered[kind] = round(_percent(steer), 1)
                    rows.append(
                        {
                            "layer": layer,
                            "position": position,
                            "probe_layer": probe_layer,
                            "threshold": threshold,
                            "benign_refusal": _percent(flags["benign"]),
                            "harmful_refusal": _percent(flags["harmful"]),
                            "steered": steered,
                        }
                    )
    return rows


def run_ablation(config: AblationConfig) -> dict[str, Any]:
    """Run the recipe (module docstring); returns the report written to `ablation.json`."""
    out = Path(config.output_dir)
    if (out / REPORT).is_file():
        logger.info("%s already done", out)
        return json.loads((out / REPORT).read_text(encoding="utf-8"))
    sets = load_prompt_sets(config)
    model_spec = config.model if isinstance(config.model, dict) else {"spec": config.model}
    chat_model = load_model({**model_spec, "dtype": config.dtype, "batch_size": config.batch_size})
    blocks = chat_model.hf_model.config.num_hidden_layers
    for layers in (config.layers, config.probe_layers):  # before minutes of fitting
        check_layers(layers, blocks)
    out.mkdir(parents=True, exist_ok=True)
    write_run_info(out, config_to_dict(config), "steer")
    with ModelPool() as pool:
        judge = load_judge(config.judge, pool)
        given = {name: len(sets[name]) for name in FIT_SETS}
        store = LabelStore(out / CANDIDATES)
        if config.filter_fit:
            sets = {**sets, **filter_fit_sets(chat_model, judge, sets, config, store)}
        fit = activations_by_set(chat_model, sets, FIT_SETS, config)
        directions = {
            "true": mean_difference(fit["harmful"], fit["harmless"]),
            "false": mean_difference(fit["pseudo_harmful"], fit["harmless"]),
        }
        validator = Validator(chat_model, judge, sets, config, store)
        base_flags = validator.refusals("base")
        if config.method == "ablation":
            rows = _ablation_candidates(validator, directions, config, blocks)
        else:
            probes = _fit_probes(fit, config, blocks)
            validation_acts = activations_by_set(
                chat_model,
                {"benign": sets["validation_benign"], "harmful": sets["validation_harmful"]},
                ("benign", "harmful"),
                config,
            )
            rows = _probe_candidates(validator, directions, probes, validation_acts, base_flags, config, blocks)
    base = Rates(_percent(base_flags["benign"]), _percent(base_flags["harmful"]))
    chosen = choose(base, rows, config.max_harmful_drop)
    report = {
        "model": config.model,
        "condition": config.condition,
        "method": config.method,
        "rule": describe(config.max_harmful_drop),
        "max_harmful_drop": config.max_harmful_drop,
        "sizes": {name: len(prompts) for name, prompts in sets.items()},
        "fit_filter": {name: {"kept": len(sets[name]), "of": given[name]} for name in FIT_SETS}
        if config.filter_fit
        else None,
        "base": {"benign_refusal": base.benign, "harmful_refusal": base.harmful},
        "candidates": rows,
        "chosen": chosen,
    }
    if chosen is not None:
        _save(chat_model, chosen, directions, probes if config.method == "probe" else None, config, out)
    atomic_write_json(out / REPORT, report)
    return report


def _fit_probes(fit: dict[str, Any], config: AblationConfig, blocks: int) -> dict[tuple[int, int], Steering]:
    """A probe per (probe layer, position): harmful (1) against harmless and pseudo-harmful (0) training prompts."""
    import torch

    probes = {}
    for layer in check_layers(config.probe_layers, blocks):
        for index, position in enumerate(config.positions):
            features = torch.cat([fit[name][layer, index] for name in FIT_SETS])
            labels = [1] * fit["harmful"].shape[2] + [0] * (fit["harmless"].shape[2] + fit["pseudo_harmful"].shape[2])
            weight, bias = fit_probe(features, labels, seed=config.seed)
            probes[(layer, index)] = Steering(weight, bias, layer, position, 0.5, torch.zeros_like(weight))
    return probes


def _save(chat_model, chosen, directions, probes, config: AblationConfig, out: Path) -> None:
    index = config.positions.index(chosen["position"])
    if probes is None:
        direction = partially_orthogonalise(
            directions["false"][chosen["layer"], index], directions["true"][chosen["layer"], index], chosen["strength"]
        )
        ablate_weights(chat_model.hf_model, direction)
        chat_model.hf_model.save_pretrained(out)
        chat_model.hf_tokenizer.save_pretrained(out)
        return
    probe = probes[(chosen["probe_layer"], index)]
    Steering(
        probe.probe_weight,
        probe.probe_bias,
        probe.layer,
        probe.position,
        chosen["threshold"],
        directions["true"][chosen["layer"], index],
    ).save(out / STEERING)
