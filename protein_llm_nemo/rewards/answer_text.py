"""Where the answer is in a completion, and word-level checks shared by the rewards.

The answer region is the completion without its thinking blocks (``<think>...</think>``; an unclosed
``<think>`` hides everything after it, and a ``</think>`` with no opening tag before it ends thinking that
the prompt opened) and, when the completion has an answer marker (``Answer:``,
``Final answer:``, markdown bold allowed), only the text after the LAST marker: a model may reason first and
commit at the end, and only the commitment is scored.
"""

from __future__ import annotations

import re

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_ANSWER_MARKER = re.compile(r"\b(?:final\s+)?answer\s*(?:\*\*)?\s*[:：]\s*(?:\*\*)?", re.I)
# Markdown / quoting a model may put before its first word.
_LEADING_DECORATION = re.compile(r"^[\s*#>_`\"'“”‘’\-]+")
# A negation right before a word ("not high", "isn't yes", "cannot say no", "not a high", "non-globular").
_NEGATION_BEFORE = re.compile(
    r"(?:(?:\bnot|\bnever|n't|\bcannot|\bno)\s+(?:(?:a|an|the|very|really|particularly|say|said)\s+)?"
    r"|\b(?:non|un|not)-)$",
    re.I,
)
_NEGATION_WINDOW = 32


def without_thinking(completion: str) -> str:
    """The completion without its thinking (a linear scan: a regex over many unclosed tags is quadratic)."""
    lower = completion.lower()
    start = 0
    first_close = lower.find(_THINK_CLOSE)
    if first_close >= 0 and not 0 <= lower.find(_THINK_OPEN) < first_close:
        start = first_close + len(_THINK_CLOSE)  # the prompt opened the block: the completion starts in it
    kept = []
    while True:
        opening = lower.find(_THINK_OPEN, start)
        if opening < 0:
            kept.append(completion[start:])
            break
        kept.append(completion[start:opening])
        closing = lower.find(_THINK_CLOSE, opening)
        if closing < 0:
            break  # unclosed: everything after it is thinking
        start = closing + len(_THINK_CLOSE)
    return "".join(kept)


def answer_region(completion: str) -> str:
    """The part of a completion that is scored (see the module docstring)."""
    text = without_thinking(completion)
    last = None
    for last in _ANSWER_MARKER.finditer(text):  # noqa: B007 - only the last marker matters
        pass
    if last is not None:
        text = text[last.end() :]
    return text.strip()


def strip_leading_decoration(text: str) -> str:
    """The text from its first word on (no leading markdown, quotes or bullets)."""
    return _LEADING_DECORATION.sub("", text)


def is_negated(text: str, start: int) -> bool:
    """Whether the word starting at `start` is negated by the words right before it."""
    return _NEGATION_BEFORE.search(text[max(0, start - _NEGATION_WINDOW) : start]) is not None
