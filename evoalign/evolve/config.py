"""The evolve stage's config: one flat dataclass, filled from `--config file.yaml` and `--key value` flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evoalign.errors import ConfigError
from evoalign.evolve.fitness import FORMS
from evoalign.evolve.operators import RECOMBINATIONS
from evoalign.evolve.selection import MODES
from evoalign.judges.verifiers import SPEC_HELP, check_options

# Keys that may differ when a run is resumed (e.g. a moved run directory, an extended run): they change where the
# run lives, how many iterations run or how the final set is reported, never what an iteration computes.
RESUMABLE = frozenset(
    {"resume", "output_dir", "iterations", "fresh_samples", "dedup", "dedup_threshold", "dedup_ngram"}
)


def _help(text: str, default: Any = None, factory: Any = None) -> Any:
    if factory is not None:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class EvolveConfig:
    """Evolve pseudo-malicious instructions from seed instructions (EvoRefuse search; see docs/evolve.md)."""

    # data
    seeds: Any = _help(
        "seed instructions: a .jsonl/.csv/.json file, a save_to_disk dir or a hub dataset id, or a mapping "
        "{path, fields: {instruction: <column>}, split, subset, filter, limit}"
    )
    output_dir: str = _help("run directory: config, checkpoints, response cache, evolved.jsonl, summary.json", "")
    resume: bool = _help("continue the run in output_dir from its last checkpoint", False)
    seed: int = _help("run seed: every random choice derives from (seed, seed index, iteration)", 0)
    # models
    targets: list = _help(
        "target models whose refusals are measured (fitness is averaged over them): specs or mappings "
        "{spec, condition, name, <model options>}",
        factory=lambda: ["smollm2"],
    )
    condition: Any = _help(
        "prompt condition for the targets: default, safety_prior, refusal_prone, or a list of messages",
        "safety_prior",
    )
    mutator: Any = _help("mutator model spec or mapping; null runs the offline rule operators only", None)
    verifier: Any = _help(SPEC_HELP, "rules")
    verifier_voting: str = _help("how verifier votes combine: unanimous or majority", "unanimous")
    verifier_strictness: str = _help("strict (only benign passes) or lenient (controversial passes too)", "strict")
    judge: str = _help("refusal judge giving p_refusal: evoalign, xstest, evorefuse, llm:<spec>, ...", "evoalign")
    # search
    iterations: int = _help("T: evolution steps per seed", 5)
    population: int = _help("L: verified mutants kept per seed and iteration", 4)
    recombinations: int = _help("N: recombinant pairs drawn from the mutants per seed and iteration", 2)
    recombination: str = _help("recombination operator: auto (llm with a mutator, else rule), llm, rule, none", "auto")
    mutation_rounds: int = _help("most mutation rounds per iteration to reach L verified mutants", 3)
    strategies: list | None = _help("strategy names (or the groups llm, rule); default: llm with a mutator", None)
    strategies_file: str | None = _help("YAML file adding or replacing strategies (see docs/evolve.md)", None)
    selection: str = _help("strategy selection: bandit, uniform, or fixed (the published order)", "bandit")
    max_instruction_words: int = _help("candidates longer than this many words are dropped", 150)
    # fitness
    samples: int = _help("K: target responses sampled per candidate", 10)
    fitness: str = _help("fitness form: paper (ELBO, lambda 0.03) or reference (published code, lambda 0.1)", "paper")
    fitness_lambda: float | None = _help("weight of the log-prob confidence term; null uses the form's", None)
    refusal_floor: float = _help("p_refusal is clamped to at least this before the log", 1e-3)
    target_sampling: dict = _help(
        "target sampling parameters (temperature, top_p, top_k, max_new_tokens)",
        factory=lambda: {"temperature": 1.0, "top_p": 0.995, "top_k": 30, "max_new_tokens": 50},
    )
    mutator_sampling: dict = _help(
        "mutator sampling parameters", factory=lambda: {"temperature": 1.0, "max_new_tokens": 256}
    )
    # annealing: tau_t = max(tau_min, tau_start - tau_decay * t)
    tau_start: float = _help("annealing temperature at t = 0", 0.1)
    tau_decay: float = _help("annealing temperature decrease per iteration", 0.005)
    tau_min: float = _help("lowest annealing temperature", 0.05)
    # output
    dedup: bool = _help("remove near-duplicates from the output, keeping the best-fitness row of each group", True)
    dedup_threshold: float = _help("word n-gram Jaccard similarity at which two instructions are duplicates", 0.7)
    dedup_ngram: int = _help("n of the word n-grams compared by dedup", 3)
    fresh_samples: int = _help("fresh target samples per instruction for the seeds-vs-evolved refusal report", 10)

    def validate(self, where: str) -> None:
        """Check values that a type check cannot (ranges, choices, required keys)."""
        if self.seeds is None:
            raise ConfigError(f"{where}: 'seeds' is required (a path, hub id, or mapping with 'path')")
        if not self.output_dir:
            raise ConfigError(f"{where}: 'output_dir' is required")
        if not self.targets:
            raise ConfigError(f"{where}: 'targets' needs at least one model")
        positive = ("iterations", "population", "samples", "mutation_rounds", "max_instruction_words", "dedup_ngram")
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
        if self.recombination == "llm" and self.mutator is None:
            raise ConfigError(f"{where}: recombination 'llm' needs a 'mutator' model")

    @property
    def recombination_operator(self) -> str:
        """The recombination operator `auto` stands for."""
        if self.recombination != "auto":
            return self.recombination
        return "llm" if self.mutator is not None else "rule"
