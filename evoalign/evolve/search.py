"""The evolutionary search (EvoRefuse): mutate, verify, recombine, score, and accept by simulated annealing.

Every iteration t works on all seeds of this process at once:

1. mutate: each seed's current instruction is rewritten by L strategies chosen by the selector; mutants must
   pass the quality gate (a well-formed request tied to its parent) and then the verifier, with up to
   `mutation_rounds` rounds to refill the ones that failed or were rejected;
2. recombine: N pairs drawn from the seed's verified mutants (all L of them: the published top-L of L) are
   merged into one instruction each, and every recombinant is gated and verified too (the published code
   skipped this);
3. score: all candidates of all seeds and every seed's current instruction go to each target in one batched
   call, K samples each (with a sampling seed of their own per iteration), and get a fitness from their judged
   responses and the samples' own log-probs. The current instruction is re-estimated every iteration, as the
   published code does, and its fitness is the mean of these re-estimates: the score that got it selected (the
   best of several noisy estimates) is biased upward and never counts (no winner's curse);
4. confirm (`confirm_best`, on by default): each seed's best candidate is scored again on K fresh samples, all
   seeds in one batch, and F' below is that fresh score. The score it won on is the best of several noisy
   estimates, biased upward like the incumbent's used to be; comparing it with the incumbent's honest estimate
   would accept candidates that only got lucky;
5. accept: the best candidate replaces the current instruction when exp((F' - F) / tau) > u, u ~ U[0, 1),
   tau = scale * max(tau_min, tau_start - tau_decay * t), where `scale` puts the published temperatures into the
   fitness form's units (`tau_scale`, see `evoalign.judges.fitness.tau_scale`).

After the last iteration every current instruction is re-estimated once more. The annealing walk accepts worse
candidates by design, so where it ended is often not the best instruction it visited: with `return_best` (the
default) each seed's visited instructions play a tournament on fresh samples (sequential halving, K samples a round,
up to 2K each) and the winner is returned; since winning on noisy estimates biases them upward, the returned
instruction is scored once more on fresh samples and that score alone is its stored fitness. Either way the stored
fitness is an honest estimate, not the lucky score an instruction was selected on.

Only instructions the verifier judged benign (verified) are ever candidates, and seeds themselves are verified
before the search, so nothing unverified can reach the output. Every random choice comes from a generator
seeded by (run seed, purpose, seed index, iteration[, round]), never global state, and model calls go through
the response cache, so an interrupted run resumed from its last checkpoint reproduces the uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoalign.checkpoint import check_resumable, load_checkpoint, save_checkpoint, saved_iterations
from evoalign.errors import ConfigError
from evoalign.evolve.config import RESUMABLE, EvolveConfig
from evoalign.evolve.distributed import Dist
from evoalign.evolve.operators import MutationRequest, Operators
from evoalign.evolve.proposal import Proposal
from evoalign.evolve.quality import QualityGate
from evoalign.evolve.selection import StrategySelector
from evoalign.evolve.strategies import Strategy
from evoalign.judges.fitness import FitnessEvaluator
from evoalign.judges.verifiers import Verifier
from evoalign.progress import progress_bar
from evoalign.rng import derive_rng, model_seed
from evoalign.secrets import scrub_secrets
from evoalign.text import same_text_key


def temperature(config: EvolveConfig, iteration: int) -> float:
    """The annealing temperature at iteration t: the scaled schedule (see the module docstring)."""
    return config.effective_tau_scale * max(config.tau_min, config.tau_start - config.tau_decay * iteration)


def accepts(new: float, old: float | None, tau: float, u: float) -> bool:
    """Simulated-annealing acceptance: always when better, else with probability exp((new - old) / tau)."""
    if old is None or new >= old:
        return True
    return math.exp((new - old) / tau) > u


@dataclass
class SeedState:
    """One seed's place in the search (JSON-serialisable for checkpoints)."""

    index: int
    seed: str
    source: dict[str, Any]
    seed_verification: dict[str, Any]
    instruction: str
    reason: str | None = None
    operator: str | None = None
    family: str | None = None
    verification: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    seed_evaluation: dict[str, Any] | None = None
    lineage: list[dict[str, Any]] = field(default_factory=list)
    estimates: list[float] = field(default_factory=list)  # unbiased fitness re-estimates of the current instruction
    visited: dict[str, dict[str, Any]] = field(default_factory=dict)  # every instruction it was, as it last stood

    @property
    def active(self) -> bool:
        return bool(self.seed_verification["verified"])

    def add_estimate(self, evaluation: dict[str, Any]) -> None:
        """Pool a fresh evaluation of the current instruction: its fitness becomes the mean of all re-estimates.

        The per-target figures are the fresh evaluation's; the responses accumulate every sample the instruction
        got since it became current (those it was selected on included): all are real target answers, and their
        refusals are the build's DPO rejected answers.
        """
        if evaluation["fitness"] is not None:
            self.estimates.append(evaluation["fitness"])
        pooled = sum(self.estimates) / len(self.estimates) if self.estimates else None
        targets = evaluation["targets"]
        if self.evaluation is not None:
            targets = pooled_responses(self.evaluation["targets"], targets)
        self.evaluation = {**evaluation, "targets": targets, "fitness": pooled, "estimates": len(self.estimates)}
        self._note_visit()

    def _note_visit(self) -> None:
        """Keep the current instruction, with every estimate and response it has so far, among the visited ones."""
        self.visited[self.instruction] = {name: getattr(self, name) for name in _VISITED}
        self.visited[self.instruction]["estimates"] = list(self.estimates)

    def return_to(self, instruction: str) -> None:
        """Make a visited instruction the current one again, as it stood when it was last current."""
        for name in _VISITED:
            setattr(self, name, self.visited[instruction][name])

    @property
    def fitness(self) -> float | None:
        return self.evaluation["fitness"] if self.evaluation else None


_VISITED = ("instruction", "reason", "operator", "family", "verification", "evaluation", "estimates")


@dataclass
class Candidate:
    """A verified mutant or recombinant of one seed's current instruction."""

    instruction: str
    reason: str
    operator: str
    family: str
    kind: str  # "mutation" or "recombination"
    verification: dict[str, Any]
    parents: list[str] = field(default_factory=list)  # a recombinant's parents' operators
    evaluation: dict[str, Any] | None = None

    @property
    def fitness(self) -> float | None:
        return self.evaluation["fitness"] if self.evaluation else None


@dataclass(frozen=True)
class _Pending:
    """A proposal waiting for the verifier, with where it came from."""

    seed: SeedState
    operator: str
    family: str
    kind: str
    parents: list[str]
    proposal: Proposal
    parent_texts: tuple[str, ...]


def new_counters(iteration: int) -> dict[str, Any]:
    """Per-iteration counters; every number in them sums across shards."""
    return {
        "iteration": iteration,
        "seeds": 0,
        "candidates": 0,
        "accepted": 0,
        "fitness_sum": 0.0,
        "fitness_count": 0,
        "verified": 0,
        "rejected": 0,
        "gated": 0,
        "worse": 0,
        "worse_accepted": 0,
        "confirmed": 0,
        "confirm_drop_sum": 0.0,
        "target_samples": 0,
        "target_samples_fixed_k": 0,
        "operators": {},
    }


def _operator_counters(counters: dict[str, Any], name: str) -> dict[str, Any]:
    return counters["operators"].setdefault(
        name,
        {
            "attempts": 0,
            "failures": {},
            "rejected": 0,
            "gated": 0,
            "evaluated": 0,
            "improved": 0,
            "gain_sum": 0.0,
            "best": 0,
            "accepted": 0,
        },
    )


class Evolution:
    """One process's share of an evolution run (see the module docstring)."""

    def __init__(
        self,
        config: EvolveConfig,
        *,
        operators: Operators,
        verifier: Verifier,
        evaluator: FitnessEvaluator,
        strategies: Sequence[Strategy],
        state_dir: str | Path,
        dist: Dist | None = None,
    ) -> None:
        self.config = config
        self.operators = operators
        self.verifier = verifier
        self.evaluator = evaluator
        self.selector = StrategySelector(strategies, config.selection)
        self.gate = (
            QualityGate(config.min_instruction_words, config.min_parent_similarity, config.embedding_model)
            if config.quality_gate
            else None
        )
        self.state_dir = Path(state_dir)
        self.dist = dist or Dist()
        self.seeds: list[SeedState] = []
        self.history: list[dict[str, Any]] = []
        self.next_iteration = 0

    # ---- run ----------------------------------------------------------------------------------------------

    def run(self, seed_rows: Sequence[dict[str, Any]]) -> list[SeedState]:
        """Evolve this process's share of `seed_rows` from scratch or the last checkpoint."""
        if not self._restore():
            self._start(seed_rows)
        with progress_bar(total=self.config.iterations, desc="evolve", unit="iter") as bar:
            bar.update(self.next_iteration)
            for iteration in range(self.next_iteration, self.config.iterations):
                started = time.perf_counter()
                counters = self.iterate(iteration)
                counters["seconds"] = time.perf_counter() - started
                self.history.append(counters)
                self.next_iteration = iteration + 1
                self.save()
                bar.update(1)
                bar.set_postfix(
                    fitness=_ratio(counters["fitness_sum"], counters["fitness_count"]), accepted=counters["accepted"]
                )
        active = [seed for seed in self.seeds if seed.active]
        self._reestimate(active, self.config.iterations)
        if self.config.return_best:
            self._return_best(active)
        return self.seeds

    def _start(self, seed_rows: Sequence[dict[str, Any]]) -> None:
        owned = self.dist.share(list(enumerate(seed_rows)))
        verdicts = self.verifier.verify([{"instruction": row["instruction"]} for _, row in owned])
        self.seeds = [
            SeedState(
                index=index,
                seed=row["instruction"],
                source={k: v for k, v in row.items() if k != "instruction" and not k.startswith("_")},
                seed_verification=verdict,
                instruction=row["instruction"],
            )
            for (index, row), verdict in zip(owned, verdicts)
        ]
        self.history, self.next_iteration = [], 0
        self.save()

    def _restore(self) -> bool:
        """Load the newest checkpoint every process has; False when there is none to resume from."""
        mine = saved_iterations(self.state_dir) if self.config.resume else []
        everyone = self.dist.gather(mine)
        common = set(everyone[0]).intersection(*everyone[1:]) if all(everyone) else set()
        if not common:
            return False
        state = load_checkpoint(self.state_dir, max(common))
        check_resumable(
            state["config"], scrub_secrets(dataclasses.asdict(self.config)), RESUMABLE, str(self.state_dir)
        )
        unknown = sorted(
            {key for seed in state["seeds"] for key in seed} - {f.name for f in dataclasses.fields(SeedState)}
        )
        if unknown:
            raise ConfigError(
                f"{self.state_dir}: the checkpoint was written by another version of evolve (seed fields {unknown}); "
                "resume with that version or use a new output_dir"
            )
        self.seeds = [SeedState(**seed) for seed in state["seeds"]]
        self.selector.load_state_dict(state["selector"])
        self.history = state["history"]
        self.next_iteration = state["next_iteration"]
        return True

    def save(self) -> None:
        save_checkpoint(
            self.state_dir,
            {
                "next_iteration": self.next_iteration,
                "config": scrub_secrets(dataclasses.asdict(self.config)),
                "seeds": [dataclasses.asdict(seed) for seed in self.seeds],
                "selector": self.selector.state_dict(),
                "history": self.history,
            },
        )

    # ---- one iteration -------------------------------------------------------------------------------------

    def iterate(self, iteration: int) -> dict[str, Any]:
        """Mutate, verify, recombine, score and accept for every active seed; returns the iteration's counters."""
        counters = new_counters(iteration)
        active = [seed for seed in self.seeds if seed.active]
        counters["seeds"] = len(active)
        pools = self._mutate(iteration, active, counters)
        self._recombine(iteration, active, pools, counters)
        drawn, fixed_k = self.evaluator.samples_drawn, self._fixed_k_samples(active, pools)
        self._score(iteration, active, pools)
        scored = self.evaluator.samples_drawn
        gains = self._accept(iteration, active, pools, counters)
        confirmation = self.evaluator.samples_drawn - scored  # K per best candidate under either rule
        counters["target_samples"] = self.evaluator.samples_drawn - drawn
        counters["target_samples_fixed_k"] = fixed_k + confirmation
        everyone = sorted(gain for shard in self.dist.gather(gains) for gain in shard)
        self.selector.update((name, gain) for _, _, name, gain in everyone)
        return counters

    def _mutate(self, iteration: int, seeds: list[SeedState], counters: dict[str, Any]) -> dict[int, list[Candidate]]:
        pools: dict[int, list[Candidate]] = {seed.index: [] for seed in seeds}
        attempts = {seed.index: 0 for seed in seeds}
        for round_ in range(self.config.mutation_rounds):
            requests: list[MutationRequest] = []
            owners: list[SeedState] = []
            for seed in seeds:
                need = self.config.population - len(pools[seed.index])
                if need <= 0:
                    continue
                rng = derive_rng(self.config.seed, "mutate", seed.index, iteration, round_)
                for strategy in self.selector.choose(need, rng, offset=attempts[seed.index]):
                    requests.append(MutationRequest(seed.instruction, strategy, rng))
                    owners.append(seed)
                attempts[seed.index] += need
            if not requests:
                break
            proposals = self.operators.mutate(requests, model_seed(self.config.seed, "mutate", iteration, round_))
            pending = [
                _Pending(owner, r.strategy.name, r.strategy.family, "mutation", [], proposal, (r.instruction,))
                for owner, r, proposal in zip(owners, requests, proposals)
            ]
            self._admit(pending, pools, counters)
        return pools

    def _recombine(
        self, iteration: int, seeds: list[SeedState], pools: dict[int, list[Candidate]], counters: dict[str, Any]
    ) -> None:
        pairs: list[tuple[SeedState, Candidate, Candidate]] = []
        for seed in seeds:
            mutants = pools[seed.index]
            if len(mutants) < 2:
                continue
            rng = derive_rng(self.config.seed, "recombine", seed.index, iteration)
            pairs += [(seed, *rng.sample(mutants, 2)) for _ in range(self.config.recombinations)]
        if not pairs:
            return
        proposals = self.operators.recombine(
            [(a.instruction, b.instruction) for _, a, b in pairs],
            model_seed(self.config.seed, "recombine", iteration),
        )
        name = self.operators.recombination_name
        pending = [
            _Pending(
                seed,
                name,
                "recombination",
                "recombination",
                [a.operator, b.operator],
                proposal,
                (a.instruction, b.instruction),
            )
            for (seed, a, b), proposal in zip(pairs, proposals)
        ]
        self._admit(pending, pools, counters)

    def _admit(self, pending: list[_Pending], pools: dict[int, list[Candidate]], counters: dict[str, Any]) -> None:
        """Count failures, drop duplicates and gated candidates, verify the rest in one batch, pool the verified."""
        seen: dict[int, set[str]] = {}
        to_gate: list[_Pending] = []
        for item in pending:
            known = seen.setdefault(
                item.seed.index,
                {same_text_key(text) for text in [item.seed.instruction, *_texts(pools[item.seed.index])]},
            )
            stats = _operator_counters(counters, item.operator)
            stats["attempts"] += 1
            failure = item.proposal.failure
            if failure is None and same_text_key(item.proposal.instruction) in known:
                failure = "duplicate"
            if failure is not None:
                stats["failures"][failure] = stats["failures"].get(failure, 0) + 1
                continue
            known.add(same_text_key(item.proposal.instruction))
            to_gate.append(item)
        to_verify = self._gated(to_gate, counters)
        verdicts = self.verifier.verify(
            [{"instruction": i.proposal.instruction, "reason": i.proposal.reason} for i in to_verify]
        )
        for item, verdict in zip(to_verify, verdicts):
            counters["verified"] += 1
            if not verdict["verified"]:
                counters["rejected"] += 1
                _operator_counters(counters, item.operator)["rejected"] += 1
                continue
            pools[item.seed.index].append(
                Candidate(
                    instruction=item.proposal.instruction,
                    reason=item.proposal.reason,
                    operator=item.operator,
                    family=item.family,
                    kind=item.kind,
                    verification=verdict,
                    parents=item.parents,
                )
            )

    def _gated(self, items: list[_Pending], counters: dict[str, Any]) -> list[_Pending]:
        """The items that pass the quality gate; the others are counted as failures of their strategy."""
        if self.gate is None:
            return items
        failures = self.gate.failures([(i.proposal.instruction, i.parent_texts) for i in items])
        kept = []
        for item, failure in zip(items, failures):
            if failure is None:
                kept.append(item)
                continue
            counters["gated"] += 1
            stats = _operator_counters(counters, item.operator)
            stats["gated"] += 1
            stats["failures"][failure] = stats["failures"].get(failure, 0) + 1
        return kept

    def _sampling(self, iteration: int) -> Any:
        """Target sampling for iteration t: its own seed, so a re-estimate never replays earlier samples."""
        return self.evaluator.params.replace(seed=model_seed(self.config.seed, "score", iteration))

    def _score(self, iteration: int, seeds: list[SeedState], pools: dict[int, list[Candidate]]) -> None:
        """Score every candidate and re-estimate every current instruction, in one batched evaluation (or, under
        `sampling_rule: halving`, the current instructions in one and the candidates by sequential halving)."""
        if self.config.sampling_rule == "halving":
            self._score_halving(iteration, seeds, pools)
            return
        candidates = [c for seed in seeds for c in pools[seed.index]]
        texts = [seed.instruction for seed in seeds] + [c.instruction for c in candidates]
        evaluations = self.evaluator.evaluate(
            texts, params=self._sampling(iteration), desc=f"iteration {iteration + 1}/{self.config.iterations}"
        )
        for seed, evaluation in zip(seeds, evaluations):
            if seed.seed_evaluation is None:
                seed.seed_evaluation = evaluation
            seed.add_estimate(evaluation)
        for candidate, evaluation in zip(candidates, evaluations[len(seeds) :]):
            candidate.evaluation = evaluation

    def _score_halving(self, iteration: int, seeds: list[SeedState], pools: dict[int, list[Candidate]]) -> None:
        texts = [seed.instruction for seed in seeds]
        params = self._sampling(iteration).replace(n=self.config.incumbent_samples)
        label = f"iteration {iteration + 1}/{self.config.iterations}"
        for seed, evaluation in zip(seeds, self.evaluator.evaluate(texts, params=params, desc=label)):
            if seed.seed_evaluation is None:
                seed.seed_evaluation = evaluation
            seed.add_estimate(evaluation)
        groups = [pools[seed.index] for seed in seeds]
        evaluations = self.evaluator.evaluate_halving(
            [_texts(group) for group in groups],
            round_samples=self.config.round_samples,
            round_seed=lambda round_: model_seed(self.config.seed, "score", iteration, "round", round_),
            params=self._sampling(iteration),
            desc=f"{label}, candidates",
        )
        for group, group_evaluations in zip(groups, evaluations):
            for candidate, evaluation in zip(group, group_evaluations):
                candidate.evaluation = evaluation

    def _fixed_k_samples(self, seeds: list[SeedState], pools: dict[int, list[Candidate]]) -> int:
        """Target samples that scoring with K for every text takes (the baseline of the halving's savings)."""
        texts = {seed.instruction for seed in seeds} | {c.instruction for seed in seeds for c in pools[seed.index]}
        return self.config.samples * len(self.evaluator.targets) * len(texts)

    def _reestimate(self, seeds: list[SeedState], iteration: int) -> None:
        """One more honest estimate of every current instruction (after the last iteration; of the returned ones)."""
        if not seeds:
            return
        texts = [seed.instruction for seed in seeds]
        evaluations = self.evaluator.evaluate(texts, params=self._sampling(iteration), desc="final re-estimate")
        for seed, evaluation in zip(seeds, evaluations):
            seed.add_estimate(evaluation)

    def _return_best(self, seeds: list[SeedState]) -> None:
        """Return each seed's best visited instruction by a tournament on fresh samples, then score it once more:
        winning on noisy estimates biases them upward, so the stored fitness is the final fresh score alone."""
        contested = [seed for seed in seeds if len(seed.visited) > 1]
        if contested:
            groups = [list(seed.visited) for seed in contested]
            results = self.evaluator.evaluate_halving(
                groups,
                round_samples=self.config.samples,
                round_seed=lambda round_: model_seed(self.config.seed, "tournament", round_),
                params=self.evaluator.params.replace(n=2 * self.config.samples),
                desc="tournament of the visited instructions",
            )
            for seed, group, evaluations in zip(contested, groups, results):
                winner = _winner(group, evaluations)
                if winner is not None:
                    seed.return_to(winner)
        for seed in seeds:
            seed.estimates = []
        self._reestimate(seeds, self.config.iterations + 1)

    def _accept(
        self, iteration: int, seeds: list[SeedState], pools: dict[int, list[Candidate]], counters: dict[str, Any]
    ) -> list[tuple[int, int, str, float]]:
        """Anneal each seed toward its best candidate; returns (seed, slot, strategy, gain) for the bandit."""
        tau = temperature(self.config, iteration)
        gains: list[tuple[int, int, str, float]] = []
        best: dict[int, Candidate] = {}
        offered: dict[int, int] = {}
        for seed in seeds:
            scored = [c for c in pools[seed.index] if c.fitness is not None]
            counters["candidates"] += len(scored)
            offered[seed.index] = len(scored)
            for slot, candidate in enumerate(scored):
                gain = candidate.fitness - seed.fitness if seed.fitness is not None else None
                self._count_gain(counters, candidate, gain)
                if gain is not None and candidate.kind == "mutation":
                    gains.append((seed.index, slot, candidate.operator, gain))
            if scored:
                best[seed.index] = max(scored, key=lambda c: c.fitness)
        confirmed = self._confirm(iteration, list(best.values()), counters) if self.config.confirm_best else {}
        for seed in seeds:
            step = self._step(iteration, seed, best.get(seed.index), confirmed, tau, counters)
            step["candidates"] = offered[seed.index]
            seed.lineage.append(step)
            if seed.fitness is not None:
                counters["fitness_sum"] += seed.fitness
                counters["fitness_count"] += 1
        return gains

    def _confirm(
        self, iteration: int, candidates: list[Candidate], counters: dict[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """Fresh K-sample evaluations of the seeds' best candidates (one batch), by instruction; a candidate whose
        fresh samples could not be judged keeps no confirmation and is not accepted."""
        if not candidates:
            return {}
        texts = [c.instruction for c in candidates]
        params = self.evaluator.params.replace(seed=model_seed(self.config.seed, "confirm", iteration))
        evaluations = self.evaluator.evaluate(texts, params=params, desc="confirm best candidates")
        for candidate, evaluation in zip(candidates, evaluations):
            if evaluation["fitness"] is not None:
                counters["confirmed"] += 1
                counters["confirm_drop_sum"] += candidate.fitness - evaluation["fitness"]
        return dict(zip(texts, evaluations))

    def _step(
        self,
        iteration: int,
        seed: SeedState,
        best: Candidate | None,
        confirmed: dict[str, dict[str, Any]],
        tau: float,
        counters: dict[str, Any],
    ) -> dict[str, Any]:
        """Decide on one seed's best candidate (on its confirmed score when there is one); updates the seed when
        accepted and returns its lineage entry."""
        entry = {
            "iteration": iteration + 1,
            "strategy": None,
            "family": None,
            "parents": [],
            "instruction": None,
            "fitness": None,
            "selection_fitness": None,
            "previous_fitness": seed.fitness,
            "tau": tau,
            "accepted": False,
        }
        if best is None:
            return entry
        evaluation = _confirmed_evaluation(best, confirmed) if self.config.confirm_best else best.evaluation
        fitness = evaluation["fitness"]
        u = derive_rng(self.config.seed, "accept", seed.index, iteration).random()
        accepted = fitness is not None and accepts(fitness, seed.fitness, tau, u)
        if fitness is not None and seed.fitness is not None and fitness < seed.fitness:
            counters["worse"] += 1
            counters["worse_accepted"] += accepted
        entry.update(
            strategy=best.operator,
            family=best.family,
            parents=best.parents,
            instruction=best.instruction,
            fitness=fitness,
            selection_fitness=best.fitness,
            accepted=accepted,
        )
        stats = _operator_counters(counters, best.operator)
        stats["best"] += 1
        if accepted:
            stats["accepted"] += 1
            counters["accepted"] += 1
            seed.instruction, seed.reason = best.instruction, best.reason
            seed.operator, seed.family = best.operator, best.family
            seed.verification, seed.evaluation = best.verification, evaluation
            seed.estimates = []  # the selection score is biased upward: the next iteration re-estimates it
        return entry

    @staticmethod
    def _count_gain(counters: dict[str, Any], candidate: Candidate, gain: float | None) -> None:
        stats = _operator_counters(counters, candidate.operator)
        stats["evaluated"] += 1
        if gain is not None:
            stats["gain_sum"] += gain
            stats["improved"] += gain > 0


def _winner(texts: list[str], evaluations: list[dict[str, Any]]) -> str | None:
    """The text with the highest fitness, the earliest among equals; None when none could be judged."""
    judged = [(text, e["fitness"]) for text, e in zip(texts, evaluations) if e["fitness"] is not None]
    return max(judged, key=lambda pair: pair[1])[0] if judged else None


def _confirmed_evaluation(candidate: Candidate, confirmed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The candidate's confirmed evaluation, carrying the responses of both passes (all real target answers, the
    build's rejected side); its fitness is the fresh pass's alone, None when that pass judged nothing."""
    fresh = confirmed[candidate.instruction]
    return {**fresh, "targets": pooled_responses(candidate.evaluation["targets"], fresh["targets"])}


def pooled_responses(earlier: list[dict[str, Any]], later: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The later per-target records, each carrying the responses of both."""
    return [{**new, "responses": old["responses"] + new["responses"]} for old, new in zip(earlier, later)]


def _texts(candidates: list[Candidate]) -> list[str]:
    return [candidate.instruction for candidate in candidates]


def _ratio(total: float, count: int) -> float | None:
    return round(total / count, 4) if count else None
