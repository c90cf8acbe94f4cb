"""The field's other pseudo-harmful prompt generators, next to evolve's EvoRefuse search (see docs/generators.md).

- `orbench`: OR-Bench-style rewriting (Cui et al., arXiv 2405.20947): toxic seeds, few-shot rewrites that only
  look toxic, moderation by the verifier ensemble, and the hard subset the targets refuse;
- `phtest`: PHTest-style controllable generation (An et al., arXiv 2409.00598): prompts written token by token,
  each token chosen by the generator's fluency, the targets' refusal likelihood and a harmlessness judgement;
- `continuation`: the generator's top-k next tokens after a partial answer (hf models);
- `common`: output rows in the evolve stage's schema, the target check, a model-call counter;
- `config`, `cli`: the two commands, `evoalign generate-orbench` and `evoalign generate-phtest`.
"""
