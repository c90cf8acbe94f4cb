"""The quality gate: a mutant must be a well-formed request tied to the instruction it rewrote.

An LLM mutator, small ones especially, sometimes answers with a fragment that describes the task instead of doing
it ("irrelevant instruction", "system.stat.mod", "removed part of the sentence"). Such a fragment is harmless, so
the verifier passes it, and it can be refused by chance often enough to be selected. The gate runs before the
verifier and drops, with a counted failure per strategy:

- `gate_short`: fewer than `min_instruction_words` words;
- `gate_malformed`: fewer than 60% of the words are words (letters, with apostrophes, hyphens or a trailing
  punctuation mark), as in identifiers, code or symbol strings;
- `gate_unrelated`: the sentence-embedding cosine similarity (bundled all-MiniLM-L6-v2) to the parent - for a
  recombinant, to the closer of its two parents - is below `min_parent_similarity`.

The default threshold, 0.3, comes from a rule, not from tuning on any evaluation set: it is the 95th percentile
of the similarity between two unrelated requests, measured over all pairs of the project-written seeds
(`datagen/seeds/starter.jsonl` and `offline.jsonl`, 0.280), rounded up. A rewrite that is less like its parent
than 95% of unrelated requests are like each other has lost the request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

WORD = re.compile(r"^[(\"'“‘]?[A-Za-z][A-Za-z'’-]*[.,;:!?)\"'”’]*$")
MIN_WORD_SHARE = 0.6


def form_failure(text: str, min_words: int) -> str | None:
    """`gate_short` / `gate_malformed` when `text` is not a well-formed request, else None."""
    tokens = text.split()
    if len(tokens) < min_words:
        return "gate_short"
    if sum(bool(WORD.match(token)) for token in tokens) < MIN_WORD_SHARE * len(tokens):
        return "gate_malformed"
    return None


class QualityGate:
    """Checks candidates against their parents; the embedding model loads on first use."""

    def __init__(self, min_words: int, min_similarity: float, embedding_model: str | None = None) -> None:
        self.min_words = min_words
        self.min_similarity = min_similarity
        self.embedding_model = embedding_model
        self._embedder: Any = None

    def failures(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[str | None]:
        """One failure kind (or None) per `(candidate, parents)` item, in order; similarities in one batch."""
        results = [form_failure(text, self.min_words) for text, _ in items]
        pending = [i for i, failure in enumerate(results) if failure is None and self.min_similarity > 0]
        pairs = [(items[i][0], parent) for i in pending for parent in items[i][1]]
        similarities = iter(self._similarities(pairs))
        for index in pending:
            best = max(next(similarities) for _ in items[index][1])
            if best < self.min_similarity:
                results[index] = "gate_unrelated"
        return results

    def _similarities(self, pairs: list[tuple[str, str]]) -> list[float]:
        if not pairs:
            return []
        if self._embedder is None:
            from evoalign.embeddings import Embedder

            self._embedder = Embedder(self.embedding_model)
        return self._embedder.similarity(pairs)
