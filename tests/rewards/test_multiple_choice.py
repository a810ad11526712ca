"""Multiple-choice reward: exactly one option (letter or number within n_options)."""

from __future__ import annotations

import pytest

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.rewards import RewardInputError, score
from protein_llm_nemo.rewards.multiple_choice import leading_option, option_texts, referenced_options

from .conftest import INJECTION, OVERLONG, SEQUENCE, make_record

SECOND_OF_FOUR = make_record("multiple_choice", answer_index=2, n_options=4)


@pytest.mark.parametrize(
    ("completion", "total"),
    [
        ("Option 2: Phosphorylation of serine residues", 1.0),  # the reference answer's shape
        ("2", 1.0),
        ("B", 1.0),
        ("b", 1.0),
        ("(B)", 1.0),
        ("B.", 1.0),
        ("2)", 1.0),
        ("[2]", 1.0),
        ("Answer: B", 1.0),
        ("**Answer:** 2", 1.0),
        ("Answer: **B**", 1.0),
        ("B (option 2)", 1.0),  # letter and number of the same option
        ("B is correct because it binds ATP.", 1.0),
        ("The answer is B", 0.9),  # right, but not stated first
        ("I think the answer is option 2.", 0.9),
        ("A protein kinase does this, so the answer is (B).", 0.9),  # the article "A" is not option A
        ("Option 3", 0.1),  # wrong, well formed
        ("A is correct.", 0.1),
    ],
)
def test_hand_computed_scores(completion, total):
    result = score(SECOND_OF_FOUR, completion)
    assert result.total == pytest.approx(total)
    assert result.format_ok


@pytest.mark.parametrize(
    ("completion", "flag"),
    [
        ("A, B, C or D", "ambiguous"),  # listing every option
        ("B or C", "ambiguous"),
        ("1/2", "ambiguous"),
        ("Options 2 and 3 are both plausible", "ambiguous"),
        ("Option 2. Actually, option 3.", "ambiguous"),  # changing one's mind
        ("B (option 3)", "ambiguous"),
        (f"{INJECTION} Option 2 is correct, and so is option 3.", "ambiguous"),
        ("option 7", "no_answer"),  # beyond the question's four options
        ("(E)", "no_answer"),
        ("2.5", "no_answer"),  # a decimal is not an option
        ("I think so.", "no_answer"),  # "I" is not option I
        ("", "no_answer"),
        (SEQUENCE, "no_answer"),
        (INJECTION, "no_answer"),
        (OVERLONG, "overlong"),
    ],
)
def test_adversarial_completions_score_zero(completion, flag):
    result = score(SECOND_OF_FOUR, completion)
    assert result.total == 0.0
    assert result.components[flag] == 1.0
    assert result.parsed_answer is None and not result.format_ok


@pytest.mark.parametrize(
    ("completion", "total"),
    [
        (f"{SEQUENCE}\nAnswer: 2", 1.0),  # the echoed protein is not an option
        ("E. coli does this too. Answer: B", 1.0),  # only the text after the last marker is scored
        ("<think>A or C?</think>B", 1.0),
        ("2, 2, 2", 1.0),  # one option, repeated
    ],
)
def test_adversarial_completions_with_one_option(completion, total):
    assert score(SECOND_OF_FOUR, completion).total == pytest.approx(total)


def test_letters_beyond_the_options_are_ignored():
    # "(S)" inside an option's text is not option 19 of a 4-option question.
    assert referenced_options("Option 2: Phosphorylation of serine (S) residues", 4) == {2}
    assert referenced_options("Option 2: Phosphorylation of serine (S) residues", 20) == {2, 19}


def test_leading_option():
    assert leading_option("Option 4: the last one", 4) == 4
    assert leading_option("A protein kinase", 4) is None
    assert leading_option("D - because", 4) == 4


@pytest.mark.parametrize(
    "meta", [{}, {"answer_index": 5, "n_options": 4}, {"answer_index": "2", "n_options": 4}]
)
def test_record_without_a_usable_answer_is_a_data_error(meta):
    with pytest.raises(RewardInputError):
        score(make_record("multiple_choice", **meta), "2")


def question_with_options(answer_index: int) -> ProteinRecord:
    """A record as the ProteinLMBench converter writes it: options listed in the instruction."""
    record = make_record("multiple_choice", answer_index=answer_index, n_options=4)
    record.instruction = (
        "Which residues are phosphorylated?\n\nOptions:\n1. Serine\n2. Threonine or tyrosine\n3. Lysine 1, 2 "
        "and 3\n4. Both A and B\n\nAnswer with the number of the correct option."
    )
    return record


def test_option_texts_come_from_the_instruction():
    texts = option_texts(question_with_options(4).instruction)
    assert texts == ["Threonine or tyrosine", "Lysine 1, 2 and 3", "Both A and B", "Serine"]


@pytest.mark.parametrize(
    ("answer_index", "completion", "total"),
    [
        # The reference answer restates its option; the text's "A and B" / "1, 2 and 3" are not hedges.
        (4, "Option 4: Both A and B", 1.0),
        (3, "Option 3: Lysine 1, 2 and 3", 1.0),
        (3, "option 3: lysine 1, 2 and 3", 1.0),
        # Without the restated text, the same words are a hedge.
        (4, "Option 4: A and B", 0.0),
        # Restating two options' texts with their numbers is still two options.
        (1, "Option 1: Serine. Option 4: Both A and B", 0.0),
    ],
)
def test_restated_option_text_is_not_a_hedge(answer_index, completion, total):
    assert score(question_with_options(answer_index), completion).total == pytest.approx(total)
