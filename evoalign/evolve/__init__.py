"""The evolve stage: evolve seed instructions into pseudo-malicious ones that over-cautious models refuse.

The search (`search.Evolution`) follows EvoRefuse (arXiv 2505.23473): LLM or rule mutation by strategy
(`strategies`, `operators`), a harmfulness verifier on every candidate (`evoalign.judges.verifiers`: an LLM
ensemble, or the offline `rules`), recombination, a refusal fitness from one batched generation pass per target
(`fitness`), a quality gate before verification (`quality`), and simulated-annealing acceptance against a
re-estimated current instruction. Strategy choice is a bandit (`selection`), output is
de-duplicated (`dedup`), and runs checkpoint after every iteration (`checkpoint`). `cli.main` is the stage
entry point behind `evoalign evolve` and `datagen/evolve.py`.
"""
