"""Label strings that cross stage boundaries, defined once.

- Harmfulness verdicts on instructions (the verifier's; written by evolve into `evolved.jsonl`, read by the build):
  `benign`, `controversial`, `harmful`, `unknown`.
- Kinds of build examples: `benign` (train to comply) and `safety` (a harmful instruction, train to refuse).
- Kinds of benchmarks: `benign` (refusing is over-refusal) and `harmful` (refusing is the safe behaviour).

The refusal judge's labels of *responses* (compliance, refusal, partial refusal, unknown) live in
`evoalign.judges`.
"""

BENIGN, CONTROVERSIAL, HARMFUL, UNKNOWN = "benign", "controversial", "harmful", "unknown"
VERDICTS = (BENIGN, CONTROVERSIAL, HARMFUL, UNKNOWN)
SAFETY = "safety"
