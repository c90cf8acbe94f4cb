"""Quoting judged text as data, reading a verdict out of an LLM judge's answer, and its probability.

The text an LLM judges (a response, an instruction, its author's reason) may try to decide its own label: say
"reply [[compliance]]", end with a label, or be echoed back by a model that repeats its prompt. So the judge and
the harmfulness verifier share one protocol:

- `quoted` puts each judged text between markers that carry a per-item tag (a hash of the item, so the text
  cannot contain it) and breaks up `[[`, `]]`, `<<<` and `>>>` inside it, so the data can neither spell a label
  marker nor close its own quote; the prompt says the quoted text is data, not instructions;
- the verdict is read from one fixed place, `VerdictParser`: the final line of the answer, which must carry the
  item's tag and exactly one `[[label]]` (`VERDICT <tag>: [[label]]`). The template's own example has the
  placeholder `[[CLASS]]`, not a label. An answer that quotes the markers back (an echo), whose last line is not
  a verdict line, or that names two labels there, is `None`, which callers report as `unknown`.

`LabelParser` finds label words (the last `[[label]]`, else the first label word that is not negated);
`VerdictParser` builds on it. `label_probability` turns the log-probs at the label's first
distinguishing token into the probability of one class of labels, renormalised over the alternatives that
spell a label.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from evoalign.models.base import Sample

_NEGATED = re.compile(r"\b(?:not|no|never|isn't|wasn't|neither|nor)\b(?:\s+\w+)?\s*[\"'`*]*$")
_MARKERS = {"\u0120": " ", "\u2581": " ", "\u010a": "\n"}  # byte-level BPE / SentencePiece space and newline


@dataclass(frozen=True)
class Found:
    """A label found in text: the canonical word and the character offset where it starts."""

    word: str
    start: int


def _words_key(word: str) -> str:
    return re.sub(r"[\s_-]+", " ", word.lower()).strip()


class LabelParser:
    """Finds one of a fixed set of label words in a judge's answer."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words = {_words_key(word): word for word in words}
        alternatives = "|".join(
            re.escape(key).replace(r"\ ", r"[\s_-]+") for key in sorted(self.words, key=len, reverse=True)
        )
        self._bracketed = re.compile(rf"\[\[\s*({alternatives})\s*\]\]", re.I)
        self._bare = re.compile(rf"(?<![\w-])({alternatives})(?![\w-])", re.I)

    def parse(self, text: str) -> Found | None:
        """The last `[[label]]`, else the first label word that is not negated, else None."""
        bracketed = list(self._bracketed.finditer(text))
        if bracketed:
            return self._found(bracketed[-1])
        for match in self._bare.finditer(text):
            if not _NEGATED.search(text[max(0, match.start() - 24) : match.start()]):
                return self._found(match)
        return None

    def _found(self, match: re.Match[str]) -> Found:
        return Found(self.words[_words_key(match.group(1))], match.start(1))

    def strip(self, text: str) -> str:
        """The answer without its `[[label]]` markers: what is left is the judge's rationale."""
        return self._bracketed.sub("", text).strip()


VERDICT_LINE = "VERDICT {tag}: [[CLASS]]"
_BREAKS = (("[[", "[ ["), ("]]", "] ]"), ("<<<", "< < <"), (">>>", "> > >"))


def item_tag(*parts: str) -> str:
    """A short tag that names one judged item: a hash of its texts, which those texts therefore cannot contain."""
    return "#" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:6]


def quoted(text: str, name: str, tag: str) -> str:
    """`text` between `<<<NAME tag>>>` and `<<<END>>>`, with label markers and marker brackets inside it
    broken up (so the text can neither close its quote nor spell a label marker)."""
    for old, new in _BREAKS:
        text = text.replace(old, new)
    return f"<<<{name} {tag}>>>\n{text}\n<<<END>>>"


class VerdictParser(LabelParser):
    """Reads the verdict of one item from the final line of a judge's answer (see the module docstring)."""

    def __init__(self, words: Iterable[str], tag: str) -> None:
        super().__init__(words)
        self.tag = tag

    def _last_line(self, text: str) -> tuple[int, str]:
        body = text.rstrip()
        start = body.rfind("\n") + 1
        return start, body[start:]

    def parse(self, text: str) -> Found | None:
        if f"{self.tag}>>>" in text:  # the answer repeats the quoted data's markers: an echo of the prompt
            return None
        start, line = self._last_line(text)
        if self.tag.lower() not in line.lower():
            return None
        labels = list(self._bracketed.finditer(line))
        if len({self.words[_words_key(match.group(1))] for match in labels}) != 1:
            return None
        found = self._found(labels[-1])
        return Found(found.word, start + found.start)

    def strip(self, text: str) -> str:
        """The answer without its verdict (`VERDICT <tag>: [[label]]`): the judge's rationale."""
        if self.parse(text) is None:
            return text.strip()
        start, line = self._last_line(text)
        line = re.sub(rf"(?i)\bVERDICT\s+{re.escape(self.tag)}\s*:?", "", self._bracketed.sub("", line))
        return (text[:start] + line).strip()


def _token_text(token: str) -> str:
    return "".join(_MARKERS.get(char, char) for char in token)


def label_probability(
    sample: Sample, parser: LabelParser, found: Found, positive: Callable[[str], bool]
) -> float | None:
    """P(the label is in the `positive` class) from the log-probs at the label's first distinguishing token.

    None when the backend gave no per-token log-probs or the label cannot be located in the token stream.
    """
    if not sample.tokens or not sample.token_logprobs:
        return None
    pieces = [_token_text(token) for token in sample.tokens]
    located = parser.parse("".join(pieces))
    if located is None or located.word != found.word:
        return None
    ends = list(itertools.accumulate(len(piece) for piece in pieces))
    index = bisect.bisect_right(ends, located.start)
    skip = located.start - (ends[index] - len(pieces[index]))  # characters of the first token before the label
    prefix = ""  # the part of the label spelled by earlier tokens
    while index < len(pieces) and len(_words_key(prefix)) < len(_words_key(found.word)):
        masses = _class_masses(sample, index, prefix, skip, parser, positive)
        if masses is not None:
            yes, no = masses
            return yes / (yes + no)
        prefix += pieces[index][skip:]
        index, skip = index + 1, 0
    return None


def _spelled_classes(parser: LabelParser, positive: Callable[[str], bool], prefix: str, text: str) -> set[bool]:
    """The classes of the labels that `prefix + text` could be the beginning of."""
    spelled = (prefix + text) if prefix else text.lstrip("[ \n\t")
    key = _words_key(re.sub(r"[^\w\s-].*$", "", spelled.lower(), flags=re.S))
    return {positive(word) for label, word in parser.words.items() if key and label.startswith(key)}


def _class_masses(
    sample: Sample, index: int, prefix: str, skip: int, parser: LabelParser, positive: Callable[[str], bool]
) -> tuple[float, float] | None:
    """(mass of positive labels, mass of other labels) at one token, or None if its choice decides nothing."""
    chosen = sample.tokens[index]
    chosen_classes = _spelled_classes(parser, positive, prefix, _token_text(chosen)[skip:])
    if len(chosen_classes) != 1:
        return None
    alternatives = dict(sample.top_logprobs[index]) if sample.top_logprobs else {}
    alternatives[chosen] = sample.token_logprobs[index]
    yes = no = 0.0
    for token, logprob in alternatives.items():
        text = _token_text(token)[skip:] if token == chosen else _token_text(token)
        token_classes = _spelled_classes(parser, positive, prefix, text)
        if token_classes == {True}:
            yes += math.exp(logprob)
        elif token_classes == {False}:
            no += math.exp(logprob)
    if not sample.top_logprobs:  # only the chosen token's probability: the rest goes to the other class
        rest = max(0.0, 1.0 - yes - no)
        yes, no = (yes, rest) if chosen_classes == {True} else (rest, no)
    return yes, no
