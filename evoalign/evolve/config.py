"""The evolve stage's config: one flat dataclass, filled from `--config file.yaml` and `--key value` flags."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from evoalign.errors import ConfigError
from evoalign.evolve.operators import RECOMBINATIONS
from evoalign.evolve.selection import MODES
from evoalign.judges.fitness import FORMS, tau_scale
from evoalign.judges.loading import check_judge
from evoalign.judges.verifiers import SPEC_HELP, check_options, check_verifier
from evoalign.models import SamplingParams, check_spec
from evoalign.prompts import check_condition
from evoalign.sources import Source

# Keys that may differ when a run is resumed (e.g. a moved run directory, an extended run): they change where the
# run lives, how many iterations run or how the final set is reported, never what an iteration computes.
RESUMABLE = frozenset(
    {"resume", "output_dir", "iterations", "fresh_samples", "dedup", "dedup_threshold", "dedup_ngram"}
)

SAMPLING_RULES = ("fixed", "halving")


@dataclass
class EvolveConfig:
    """Evolve pseudo-malicious instructions from seed instructions (EvoRefuse search; see docs/evolve.md)."""

    # data
    seeds: Any = field(
        default=None,
        metadata={
            "help": "seed instructions: a .jsonl/.csv/.json file, a save_to_disk dir or a hub dataset id, or a mapping "
            "{path, fields: {instruction: <column>}, split, subset, filter, limit}"
        },
    )
    output_dir: str = field(
        default="",
        metadata={"help": "run directory: config, checkpoints, response cache, evolved.jsonl, summary.json"},
    )
    resume: bool = field(default=False, metadata={"help": "continue the run in output_dir from its last checkpoint"})
    seed: int = field(
        default=0, metadata={"help": "run seed: every random choice derives from (seed, seed index, iteration)"}
    )
    # models
    targets: list = field(
        default_factory=lambda: ["smollm2"],
        metadata={
            "help": "target models whose refusals are measured (fitness is averaged over them): specs or mappings "
            "{spec, condition, name, <model options>}"
        },
    )
    condition: Any = field(
        default="safety_prior",
        metadata={
            "help": "prompt condition for the targets: default, safety_prior, refusal_prone, or a list of messages"
        },
    )
    mutator: Any = field(
        default=None, metadata={"help": "mutator model spec or mapping; null runs the offline rule operators only"}
    )
    verifier: Any = field(default="rules", metadata={"help": SPEC_HELP})
    verifier_voting: str = field(
        default="unanimous", metadata={"help": "how verifier votes combine: unanimous or majority"}
    )
    verifier_strictness: str = field(
        default="strict", metadata={"help": "strict (only benign passes) or lenient (controversial passes too)"}
    )
    judge: str = field(
        default="evoalign",
        metadata={"help": "refusal judge giving p_refusal: evoalign, xstest, evorefuse, llm:<spec>, ..."},
    )
    allow_uncalibrated_judge: bool = field(
        default=False,
        metadata={
            "help": "let fitness 'paper' take an uncalibrated judge's p_refusal (string rules: 0/1 scores) as a "
            "probability; off by default because the search then optimises the score, not refusals"
        },
    )
    # search
    iterations: int = field(default=5, metadata={"help": "T: evolution steps per seed"})
    population: int = field(default=4, metadata={"help": "L: verified mutants kept per seed and iteration"})
    recombinations: int = field(
        default=2, metadata={"help": "N: recombinant pairs drawn from the mutants per seed and iteration"}
    )
    recombination: str = field(
        default="auto",
        metadata={"help": "recombination operator: auto (llm with a mutator, else rule), llm, rule, none"},
    )
    mutation_rounds: int = field(
        default=3, metadata={"help": "most mutation rounds per iteration to reach L verified mutants"}
    )
    strategies: list | None = field(
        default=None, metadata={"help": "strategy names (or the groups llm, rule); default: llm with a mutator"}
    )
    strategies_file: str | None = field(
        default=None, metadata={"help": "YAML file adding or replacing strategies (see docs/evolve.md)"}
    )
    selection: str = field(
        default="bandit", metadata={"help": "strategy selection: bandit, uniform, or fixed (the published order)"}
    )
    max_instruction_words: int = field(
        default=150, metadata={"help": "candidates longer than this many words are dropped"}
    )
    # quality gate (before verification)
    quality_gate: bool = field(
        default=True,
        metadata={
            "help": "drop mutants that are not well-formed requests or not tied to the instruction they rewrote"
        },
    )
    min_instruction_words: int = field(
        default=4, metadata={"help": "quality gate: candidates shorter than this many words are dropped"}
    )
    min_parent_similarity: float = field(
        default=0.3,
        metadata={
            "help": "quality gate: least MiniLM cosine similarity of a candidate to its parent (a recombinant: to "
            "either parent); 0.3 is above 95% of unrelated request pairs (docs/evolve.md)"
        },
    )
    embedding_model: str | None = field(
        default=None, metadata={"help": "quality gate's sentence-embedding model; null = the bundled all-MiniLM-L6-v2"}
    )
    # fitness
    samples: int = field(default=10, metadata={"help": "K: target responses sampled per candidate"})
    fitness: str = field(
        default="paper",
        metadata={"help": "fitness form: paper (ELBO, lambda 0.03) or reference (published code, lambda 0.1)"},
    )
    fitness_lambda: float | None = field(
        default=None, metadata={"help": "weight of the log-prob confidence term; null uses the form's"}
    )
    refusal_floor: float = field(
        default=1e-3, metadata={"help": "p_refusal is clamped to at least this before the log"}
    )
    target_sampling: dict = field(
        default_factory=lambda: {"temperature": 1.0, "top_p": 0.995, "top_k": 30, "max_new_tokens": 50},
        metadata={"help": "target sampling parameters (temperature, top_p, top_k, max_new_tokens)"},
    )
    mutator_sampling: dict = field(
        default_factory=lambda: {"temperature": 1.0, "max_new_tokens": 256},
        metadata={"help": "mutator sampling parameters"},
    )
    sampling_rule: str = field(
        default="fixed",
        metadata={
            "help": "fixed: K samples for every candidate and every current instruction; halving: each seed's "
            "candidates are sampled in rounds of ceil(K/4), only the better half going on to the next round, and "
            "the current instruction gets ceil(K/2) more per iteration (docs/evolve.md)"
        },
    )
    confirm_best: bool = field(
        default=True,
        metadata={
            "help": "re-score each seed's best candidate on K fresh samples and run the acceptance test on that "
            "score: the best of several noisy K-sample estimates is biased upward (docs/evolve.md)"
        },
    )
    return_best: bool = field(
        default=True,
        metadata={
            "help": "output each seed's best visited instruction (by a tournament on fresh samples, up to 2K each), "
            "scored once more on fresh samples, instead of the one the annealing walk ended on (docs/evolve.md)"
        },
    )
    # annealing: tau_t = scale * max(tau_min, tau_start - tau_decay * t)
    tau_scale: Any = field(
        default="flip",
        metadata={
            "help": "flip: scale the temperatures so one flipped sample weighs what it did in the published code "
            "(fitness reference, K = 10); a number multiplies them as given (1 = unscaled)"
        },
    )
    tau_start: float = field(default=0.1, metadata={"help": "annealing temperature at t = 0"})
    tau_decay: float = field(default=0.005, metadata={"help": "annealing temperature decrease per iteration"})
    tau_min: float = field(default=0.05, metadata={"help": "lowest annealing temperature"})
    # output
    dedup: bool = field(
        default=True,
        metadata={"help": "remove near-duplicates from the output, keeping the best-fitness row of each group"},
    )
    dedup_threshold: float = field(
        default=0.7, metadata={"help": "word n-gram Jaccard similarity at which two instructions are duplicates"}
    )
    dedup_ngram: int = field(default=3, metadata={"help": "n of the word n-grams compared by dedup"})
    fresh_samples: int = field(
        default=10, metadata={"help": "fresh target samples per instruction for the seeds-vs-evolved refusal report"}
    )

    def validate(self, where: str) -> None:
        """Check values that a type check cannot (ranges, choices, required keys)."""
        if self.seeds is None:
            raise ConfigError(f"{where}: 'seeds' is required (a path, hub id, or mapping with 'path')")
        if not self.output_dir:
            raise ConfigError(f"{where}: 'output_dir' is required")
        if not self.targets:
            raise ConfigError(f"{where}: 'targets' needs at least one model")
        positive = (
            "iterations",
            "population",
            "samples",
            "mutation_rounds",
            "max_instruction_words",
            "min_instruction_words",
            "dedup_ngram",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}: '{name}' must be at least 1, got {getattr(self, name)}")
        for name in ("recombinations", "fresh_samples"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}: '{name}' must be >= 0, got {getattr(self, name)}")
        choices = {
            "fitness": FORMS,
            "selection": MODES,
            "recombination": ("auto", *RECOMBINATIONS),
            "sampling_rule": SAMPLING_RULES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{where}: '{name}' must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        try:
            check_options(self.verifier_voting, self.verifier_strictness)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
        if not 0 < self.refusal_floor < 1:
            raise ConfigError(f"{where}: 'refusal_floor' must be in (0, 1), got {self.refusal_floor}")
        if not 0 < self.dedup_threshold <= 1:
            raise ConfigError(f"{where}: 'dedup_threshold' must be in (0, 1], got {self.dedup_threshold}")
        if self.tau_min <= 0 or self.tau_start < self.tau_min:
            raise ConfigError(f"{where}: need 0 < tau_min <= tau_start")
        if self.tau_scale != "flip" and (
            isinstance(self.tau_scale, bool) or not isinstance(self.tau_scale, (int, float)) or self.tau_scale <= 0
        ):
            raise ConfigError(f"{where}: 'tau_scale' must be 'flip' or a positive number, got {self.tau_scale!r}")
        if not 0 <= self.min_parent_similarity < 1:
            raise ConfigError(f"{where}: 'min_parent_similarity' must be in [0, 1), got {self.min_parent_similarity}")
        if self.min_instruction_words > self.max_instruction_words:
            raise ConfigError(f"{where}: 'min_instruction_words' is above 'max_instruction_words'")
        if self.recombination == "llm" and self.mutator is None:
            raise ConfigError(f"{where}: recombination 'llm' needs a 'mutator' model")
        if self.fitness_lambda is not None and self.fitness_lambda < 0:
            raise ConfigError(f"{where}: 'fitness_lambda' must be >= 0, got {self.fitness_lambda}")
        if self.tau_decay < 0:
            raise ConfigError(f"{where}: 'tau_decay' must be >= 0, got {self.tau_decay}")
        if self.strategies is not None and not all(isinstance(name, str) for name in self.strategies):
            raise ConfigError(f"{where}: 'strategies' is a list of strategy names, got {self.strategies!r}")
        self._validate_nested(where)

    def _validate_nested(self, where: str) -> None:
        """The nested values: the seed source, model specs, verifier, judge, conditions and sampling parameters."""
        Source.from_config(self.seeds, f"{where}: 'seeds'")
        check_condition(self.condition, f"{where}: 'condition'")
        for index, entry in enumerate(self.targets):
            key = f"{where}: 'targets[{index}]'"
            if isinstance(entry, Mapping):
                check_condition(entry.get("condition"), key)
                entry = {k: v for k, v in entry.items() if k not in ("name", "condition")}
            check_spec(entry, key)
        if self.mutator is not None:
            check_spec(self.mutator, f"{where}: 'mutator'")
        check_verifier(self.verifier, f"{where}: 'verifier'", self.verifier_voting, self.verifier_strictness)
        check_judge(self.judge, f"{where}: 'judge'")
        for key, owner in (("n", "samples"), ("seed", "seed")):
            if isinstance(self.target_sampling, Mapping) and key in self.target_sampling:
                raise ConfigError(f"{where}: 'target_sampling.{key}' is set by '{owner}'; set '{owner}' instead")
        target = {**self.target_sampling, "n": self.samples, "seed": self.seed}
        SamplingParams.from_dict(target, f"{where}: 'target_sampling'")
        SamplingParams.from_dict(self.mutator_sampling, f"{where}: 'mutator_sampling'")

    @property
    def round_samples(self) -> int:
        """Samples per candidate and round under `sampling_rule: halving`."""
        return math.ceil(self.samples / 4)

    @property
    def incumbent_samples(self) -> int:
        """Fresh samples of the current instruction per iteration: K, or ceil(K/2) under halving (they pool)."""
        return math.ceil(self.samples / 2) if self.sampling_rule == "halving" else self.samples

    @property
    def effective_tau_scale(self) -> float:
        """The factor applied to tau_t (see `tau_scale`)."""
        if self.tau_scale == "flip":
            return tau_scale(self.fitness, self.samples, self.refusal_floor)
        return float(self.tau_scale)

    @property
    def recombination_operator(self) -> str:
        """The recombination operator `auto` stands for."""
        if self.recombination != "auto":
            return self.recombination
        return "llm" if self.mutator is not None else "rule"
