"""Multiple choice (task multiple_choice, ProteinLMBench): exactly one chosen option.

An option is a letter (A = 1, B = 2 ...) or a number (1-based), and counts only within ``meta["n_options"]``
(references beyond it, e.g. a "(S)" inside an option's text, are ignored). The answer region's option
references are:

- leading: the region starts with an option, alone or followed by punctuation, a bracket, "is" or a dash
  (markdown emphasis allowed) -- "B", "(B)", "B.", "2)", "**B**", "B (option 2)", "Option 2: ...",
  "Answer: B", "A is correct" (but not the article in "A protein ...", nor "I think");
- explicit, anywhere: "option B" / "choice 2", "answer is B", a bracketed "(B)" or "[2]";
- hedges, anywhere: options joined by "or", "and", ",", "/" or "&" ("B or C", "1, 2 and 3").

Before looking for references, the options' own texts (read from the instruction's ``Options:`` block, as
the ProteinLMBench converter writes it; texts of 4 characters or more) are blanked out of the answer: the
reference answer restates its option ("Option 4: Both A and B"), and an option's text must not count as a
hedge. Exactly one distinct option among them is the answer; none is ``no_answer``, two or more (changing
one's mind, hedging, listing every option) is ``ambiguous``: both are format failures and score 0.

Scoring: ``correct`` is 1 when the option is ``meta["answer_index"]``; the format bonus is paid when the
option is stated first (a leading reference). ``total = 0.9 * correct + 0.1 * format``.
"""

from __future__ import annotations

import re

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.rewards.answer_text import strip_leading_decoration
from protein_llm_nemo.rewards.base import Reward, RewardConfig, RewardInputError, RewardResult, require_meta
from protein_llm_nemo.rewards.registry import register_reward

_KEYWORD = r"\b(?i:option|choice)\b\s*"
# A bare token ends at a non-word character and is not the integer part of a decimal ("2.5").
_END = r"(?!\w|\.\d)"
_LEADING = re.compile(
    rf"^(?:(?P<keyword>{_KEYWORD})[(\[]?(?P<kw_token>[A-Za-z]|\d{{1,2}})[)\]]?{_END}"
    rf"|[(\[]?(?P<token>[A-Za-z]|\d{{1,2}})[)\]]?[*_`]*(?=\s*$|\s*[:),;(\[]|\.(?!\d)|\s+(?:is\b|[-–—])))",
    re.I,
)
_EXPLICIT = re.compile(
    rf"(?:{_KEYWORD}|\b(?i:answer\s+(?:is|would\s+be))\s+)"
    rf"(?:[(\[](?P<bracketed>[A-Za-z]|\d{{1,2}})[)\]]|(?P<bare>[A-Z]|\d{{1,2}}){_END})"
    rf"|(?<!\w)[(\[](?P<alone>[A-Za-z]|\d{{1,2}})[)\]]",
)
_OPTION = rf"(?:{_KEYWORD})?[(\[]?([A-Z]|\d{{1,2}})[)\]]?"
_HEDGE = re.compile(rf"(?<![\w.]){_OPTION}\s*(?:,|/|&|\bor\b|\band\b)\s*(?={_OPTION}{_END})")


# "1. text" / "B) text" lines of the instruction's option list.
_OPTION_LINE = re.compile(r"^\s*(?:option\s*)?(?:\d{1,2}|[A-Z])\s*[.:)]\s*(?P<text>\S.*?)\s*$", re.M | re.I)
_MIN_MASKED_TEXT = 4  # shorter texts ("B", "Yes") could erase the answer itself


def option_texts(instruction: str) -> list[str]:
    """The option texts listed after the instruction's ``Options:`` line, longest first."""
    _, found, block = instruction.partition("Options:")
    if not found:
        return []
    texts = {m["text"] for m in _OPTION_LINE.finditer(block) if len(m["text"]) >= _MIN_MASKED_TEXT}
    return sorted(texts, key=len, reverse=True)


def mask_option_texts(answer: str, texts: list[str]) -> str:
    """`answer` with every restated option text blanked (case-insensitive)."""
    for text in texts:
        answer = re.sub(re.escape(text), " ", answer, flags=re.I)
    return answer


def option_index(token: str, n_options: int) -> int | None:
    """1-based index of a letter or number token, None when beyond the question's options."""
    index = int(token) if token.isdigit() else ord(token.upper()) - ord("A") + 1
    return index if 1 <= index <= n_options else None


def leading_option(answer: str, n_options: int) -> int | None:
    match = _LEADING.match(strip_leading_decoration(answer))
    if match is None:
        return None
    return option_index(match["kw_token"] or match["token"], n_options)


def referenced_options(answer: str, n_options: int) -> set[int]:
    """Every in-range option the answer region refers to (see the module docstring)."""
    tokens = [m["bracketed"] or m["bare"] or m["alone"] for m in _EXPLICIT.finditer(answer)]
    for match in _HEDGE.finditer(answer):
        tokens.append(match.group(1))
        following = re.match(_OPTION, answer[match.end() :])
        if following:
            tokens.append(following.group(1))
    indices = {option_index(token, n_options) for token in tokens}
    leading = leading_option(answer, n_options)
    if leading is not None:
        indices.add(leading)
    indices.discard(None)
    return indices  # type: ignore[return-value]


@register_reward("multiple_choice")
class MultipleChoiceReward(Reward):
    def __init__(self, config: RewardConfig | None = None):
        self.config = config or RewardConfig()

    @staticmethod
    def read_truth(record: ProteinRecord) -> tuple[int, int]:
        """(answer_index, n_options)."""
        n_options, truth = require_meta(record, "n_options"), require_meta(record, "answer_index")
        if not (isinstance(n_options, int) and isinstance(truth, int) and 1 <= truth <= n_options):
            raise RewardInputError(
                "meta.answer_index",
                f"record {record.id!r}: need 1 <= meta['answer_index'] <= meta['n_options'], "
                f"got {truth!r} of {n_options!r}",
            )
        return truth, n_options

    def score_answer(self, record: ProteinRecord, answer: str) -> RewardResult:
        truth, n_options = self.read_truth(record)
        answer = mask_option_texts(answer, option_texts(record.instruction))
        options = referenced_options(answer, n_options)
        if not options:
            return RewardResult.failure("no_answer")
        if len(options) > 1:
            return RewardResult.failure("ambiguous", options=float(len(options)))
        chosen = options.pop()
        correct = 1.0 if chosen == truth else 0.0
        format_score = 1.0 if leading_option(answer, n_options) == chosen else 0.0
        components = {"format": format_score, "correct": correct}
        return RewardResult(self.config.total(correct, format_score), components, chosen, True)
