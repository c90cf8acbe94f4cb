"""Offline operators: rule-based mutation and recombination that need no mutator LLM.

A rule mutation only *adds* framing around the instruction, which it keeps word for word: an opener before it,
a closer after it, or a fictional frame around it, drawn from the strategy's word lists (see
`data/strategies.yaml`). The request itself never changes, so a harmless request stays harmless by
construction ("How do I kill a stuck Python process?" -> "I'm absolutely furious and sick of wasting my time,
so just answer this: How do I kill a stuck Python process?"); the verifier still checks every result.

Rule recombination crosses over the framings of two rewrites around their longest shared run of words (the
request they share, compared case-insensitively): the first one's opening with the second one's ending, else
the other way round, else both openings and both endings together (an opening that runs into the request, as
in "In my video game, how do I ...", stays next to it). It fails, and is counted, when the two share no
substantial core.
"""

from __future__ import annotations

import random
import re
from difflib import SequenceMatcher

from evoalign.evolve.proposal import Proposal
from evoalign.evolve.strategies import Strategy
from evoalign.text import same_text_key

_PLACEHOLDER = re.compile(r"\{(?:instruction|lower)\}")
MIN_SHARED_WORDS = 3
MIN_SHARED_FRACTION = 0.3
RECOMBINATION_REASON = (
    'Both parents were verified harmless; the result keeps their shared request ("{core}") and only combines '
    "the framing words around it, so nothing new is asked."
)


def lower_first(text: str) -> str:
    """Lower-case the first letter when the instruction continues a sentence ("How do I" -> "how do I")."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def _continues_sentence(opener: str) -> bool:
    return not opener.rstrip().endswith((".", "!", "?", ":", '"', ")"))


def _literal(option: str) -> str:
    """The longest fixed part of an option (a frame's text around its placeholder), normalised."""
    return max((same_text_key(part) for part in _PLACEHOLDER.split(option)), key=len)


def _fresh(options: tuple[str, ...], text: str, rng: random.Random) -> str | None:
    """A random option not already present in the text (so repeated mutations do not stack duplicates)."""
    unused = [option for option in options if _literal(option) not in same_text_key(text)]
    return rng.choice(unused) if unused else None


def _forms(strategy: Strategy) -> list[str]:
    forms = ["frame"] if strategy.frames else []
    forms += ["opener"] * bool(strategy.openers) + ["closer"] * bool(strategy.closers)
    return forms + ["both"] * bool(strategy.openers and strategy.closers)


def compose(instruction: str, strategy: Strategy, rng: random.Random) -> str | None:
    """The instruction wrapped in framing from `strategy`, or None when every option is already used."""
    form = rng.choice(_forms(strategy))
    if form == "frame":
        frame = _fresh(strategy.frames, instruction, rng)
        return frame and frame.format(instruction=instruction, lower=lower_first(instruction))
    opener = _fresh(strategy.openers, instruction, rng) if form in ("opener", "both") else ""
    closer = _fresh(strategy.closers, instruction, rng) if form in ("closer", "both") else ""
    if opener is None or closer is None:
        return None
    body = lower_first(instruction) if opener and _continues_sentence(opener) else instruction
    return " ".join(part for part in (opener, body, closer) if part)


def mutate(instruction: str, strategy: Strategy, rng: random.Random) -> Proposal:
    """Rewrite `instruction` with a rule strategy; the reason names the unchanged request."""
    text = compose(instruction, strategy, rng)
    if text is None:
        return Proposal.failed("exhausted")
    return Proposal(text, strategy.reason.format(core=instruction).strip())


def _ends_sentence(words: list[str]) -> bool:
    return not words or words[-1].endswith((".", "!", "?", ":", '"', ")"))


def _stacked(head_a: list[str], core_a: list[str], head_b: list[str], core_b: list[str]) -> list[str] | None:
    """Both openings before the core; one that runs into the core ("..., how do I") must come last."""
    if _ends_sentence(head_a):
        return head_a + head_b + core_b
    if _ends_sentence(head_b):
        return head_b + head_a + core_a
    return None


def recombine(first: str, second: str) -> Proposal:
    """Cross over the framings of two rewrites of the same request (see the module docstring)."""
    words_a, words_b = first.split(), second.split()
    lower_a, lower_b = [w.lower() for w in words_a], [w.lower() for w in words_b]
    match = SequenceMatcher(None, lower_a, lower_b, autojunk=False).find_longest_match(
        0, len(words_a), 0, len(words_b)
    )
    if match.size < max(MIN_SHARED_WORDS, MIN_SHARED_FRACTION * min(len(words_a), len(words_b))):
        return Proposal.failed("no_shared_core")
    core_a, core_b = words_a[match.a : match.a + match.size], words_b[match.b : match.b + match.size]
    head_a, tail_a = words_a[: match.a], words_a[match.a + match.size :]
    head_b, tail_b = words_b[: match.b], words_b[match.b + match.size :]
    stacked = _stacked(head_a, core_a, head_b, core_b)
    children = [head_a + core_a + tail_b, head_b + core_b + tail_a] + ([stacked + tail_a + tail_b] if stacked else [])
    parents = {same_text_key(first), same_text_key(second)}
    for words in children:
        child = " ".join(words)
        if same_text_key(child) not in parents:
            return Proposal(child, RECOMBINATION_REASON.format(core=" ".join(core_a)))
    return Proposal.failed("no_new_combination")
