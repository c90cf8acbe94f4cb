"""What every mutation and recombination operator returns.

An operator turns an instruction (or two) into a `Proposal`: a new instruction with the reason it is harmless,
or a named failure (the mutator answered without brackets, refused to rewrite, returned the input unchanged,
the result is too long, ...). Failures are counted per strategy and skipped; they never stop a run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Proposal:
    """A candidate instruction and its harmlessness reason, or `failure` naming why there is none."""

    instruction: str | None
    reason: str = ""
    failure: str | None = None

    @classmethod
    def failed(cls, kind: str) -> Proposal:
        return cls(None, "", kind)
