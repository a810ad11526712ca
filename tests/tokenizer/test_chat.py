"""Tests for protein_llm_nemo.tokenizer.chat on the real Qwen3 tokenizer.

The central claims: the formatter's ids equal Qwen3's own chat template token for token, and the loss mask is
exactly the assistant responses + their <|im_end|>, over several turns (padding: test_collate.py).
"""

from __future__ import annotations

import random
import re

import pytest

from protein_llm_nemo.tokenizer import (
    DEFAULT_SYSTEM_PROMPT,
    PROTEIN_TOKEN_IDS,
    ChatFormatter,
    ChatFormatterConfig,
    Message,
    build_protein_user_text,
    protein_placeholder,
)

from .conftest import CONVERSATIONS, mask_runs

IM_START_ID, IM_END_ID, NEWLINE_ID = 151644, 151645, 198
THINK_OPEN_ID, THINK_CLOSE_ID = 151667, 151668


def template_ids(tok, msgs: list[Message], add_generation_prompt: bool = False) -> list[int]:
    return tok.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in msgs],
        tokenize=True,
        enable_thinking=False,
        add_generation_prompt=add_generation_prompt,
        return_dict=False,
    )


def template_text(tok, msgs: list[Message], add_generation_prompt: bool = False) -> str:
    return tok.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in msgs],
        tokenize=False,
        enable_thinking=False,
        add_generation_prompt=add_generation_prompt,
    )


def expected_responses(msgs: list[Message]) -> list[str]:
    """What each trained run must decode to: assistant content + <|im_end|> (the template strips leading
    newlines of the final answer, which gets the think block)."""
    out = []
    for i, m in enumerate(msgs):
        if m.role == "assistant":
            content = m.content.lstrip("\n") if i == len(msgs) - 1 else m.content
            out.append(content + "<|im_end|>")
    return out


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_format_matches_template_and_mask_is_exact(tok, fmt, name):
    messages = CONVERSATIONS[name]
    msgs = fmt.with_system(messages)
    sample = fmt.format(messages)

    assert sample.input_ids == template_ids(tok, msgs)
    assert fmt.render_text(messages) == template_text(tok, msgs)
    # Each trained run decodes to exactly one assistant content + <|im_end|>, in order.
    runs = mask_runs(sample.input_ids, sample.loss_mask)
    assert [tok.decode(r) for r in runs] == expected_responses(msgs)
    # The mask is 1 exactly on the responses: count matches an independent tokenization of each response.
    assert sample.num_loss_tokens == sum(
        len(tok.encode(t, add_special_tokens=False)) for t in expected_responses(msgs)
    )
    for pos, (tok_id, m) in enumerate(zip(sample.input_ids, sample.loss_mask, strict=True)):
        if tok_id in (IM_START_ID, THINK_OPEN_ID, THINK_CLOSE_ID, *PROTEIN_TOKEN_IDS.all):
            assert m == 0, (name, pos)
        if tok_id == IM_END_ID and m == 1:  # the "\n" after a trained <|im_end|> is not trained
            assert sample.input_ids[pos + 1] == NEWLINE_ID and sample.loss_mask[pos + 1] == 0
    # Nothing before the first assistant response is trained (system, user, headers).
    first_trained = sample.loss_mask.index(1)
    header = tok.decode(sample.input_ids[:first_trained])
    assert header.endswith("<|im_start|>assistant\n") or header.endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_default_system_prompt_and_none(tok):
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    with_default = ChatFormatter(tok).format(msgs)
    assert tok.decode(with_default.input_ids).startswith(
        f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n"
    )
    assert DEFAULT_SYSTEM_PROMPT.startswith(
        "You are a protein science expert. Given a protein amino acid sequence"
    )
    without = ChatFormatter(tok, ChatFormatterConfig(system_prompt=None)).format(msgs)
    assert without.input_ids == template_ids(tok, [Message(**m) for m in msgs])
    assert tok.decode(without.input_ids).startswith("<|im_start|>user\nq")
    # An explicit leading system message replaces the default instead of stacking on it.
    explicit = ChatFormatter(tok).format([{"role": "system", "content": "S"}, *msgs])
    assert tok.decode(explicit.input_ids).count("<|im_start|>system") == 1


def test_final_turn_think_block_untrained(tok, fmt):
    sample = fmt.format(CONVERSATIONS["single_protein"])
    i = sample.input_ids.index(THINK_OPEN_ID)
    # <think> \n\n </think> \n\n, all context, right before the response.
    assert tok.decode(sample.input_ids[i : i + 4]) == "<think>\n\n</think>\n\n"
    assert sample.loss_mask[i : i + 4] == [0, 0, 0, 0] and sample.loss_mask[i + 4] == 1
    # Earlier assistant turns carry no think block (Qwen3 renders history without it).
    multi = fmt.format(CONVERSATIONS["multi_turn"])
    assert multi.input_ids.count(THINK_OPEN_ID) == 1


@pytest.mark.parametrize("name", ["single_protein", "multi_turn", "unicode_code_numbers"])
def test_prompt_matches_generation_template_and_prefixes_training(tok, fmt, name):
    messages = CONVERSATIONS[name]
    prompt_msgs = messages[:-1]
    prompt = fmt.format_prompt(prompt_msgs)
    assert prompt == template_ids(tok, fmt.with_system(prompt_msgs), add_generation_prompt=True)
    assert tok.decode(prompt[-7:]) == "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    # Train/generate consistency: the prompt is exactly the untrained prefix of the training sample, and
    # the rest is the trained final answer + the untrained trailing "\n".
    full = fmt.format(messages)
    n = len(prompt)
    assert full.input_ids[:n] == prompt
    assert full.loss_mask[n:] == [1] * (len(full) - n - 1) + [0]
    assert full.input_ids[-2:] == [IM_END_ID, NEWLINE_ID]


def test_format_instruction_equals_explicit_messages(fmt):
    via_helper = fmt.format_instruction("What does it bind?", "ATP.", num_slots=6, num_proteins=2)
    user = build_protein_user_text("What does it bind?", 6, 2)
    explicit = fmt.format([Message("user", user), Message("assistant", "ATP.")])
    assert via_helper.input_ids == explicit.input_ids and via_helper.loss_mask == explicit.loss_mask


FRAGMENTS = [
    "a",
    "Protein",
    " kinase",
    "  ",
    "\t",
    "\n",
    "\n\n",
    " \n",
    ".",
    "!?",
    "123",
    "4.5",
    "α",
    "日本",
    "🧬",
    "-",
    "GO:0005524",
]


def test_random_conversations_match_template_or_are_rejected_precisely(tok, fmt):
    """Fuzz: every accepted conversation equals the template; every rejection is a real token fusion."""
    rng = random.Random(0)
    accepted = rejected = 0
    for _ in range(150):
        n_turns = rng.randint(1, 3)
        messages = []
        for _ in range(n_turns):
            messages.append({"role": "user", "content": "".join(rng.choices(FRAGMENTS, k=rng.randint(1, 6)))})
            messages.append(
                {"role": "assistant", "content": "".join(rng.choices(FRAGMENTS, k=rng.randint(1, 6)))}
            )
        if any(not m["content"].strip() for m in messages if m["role"] == "assistant"):
            continue
        msgs = fmt.with_system(messages)
        try:
            sample = fmt.format(messages)
        except ValueError as exc:
            assert "merges with the chat header" in str(exc)
            rejected += 1
            # The guard is precise: Qwen3's own tokenization really fuses the header newline with the response.
            idx = int(re.search(r"assistant message (\d+)", str(exc)).group(1))
            assert messages[idx]["role"] == "assistant"  # the index is the caller's, not the rendered one
            last = idx == len(messages) - 1
            tail = "\n\n" if last else "\n"
            content = messages[idx]["content"].lstrip("\n") if last else messages[idx]["content"]
            assert tok.encode(tail + content) != tok.encode(tail) + tok.encode(content)
            continue
        accepted += 1
        assert sample.input_ids == template_ids(tok, msgs)
        assert [tok.decode(r) for r in mask_runs(sample.input_ids, sample.loss_mask)] == expected_responses(
            msgs
        )
    print(f"fuzz accepted={accepted} rejected={rejected}")
    assert accepted >= 50 and rejected >= 1


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "exc", "pattern"),
    [
        ([], ValueError, "empty"),
        ("hello", TypeError, "sequence of messages"),
        (
            [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}],
            ValueError,
            "unknown role 'tool'",
        ),
        ([{"role": "user", "content": "q"}], ValueError, "must end with an assistant"),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": "q2"},
            ],
            ValueError,
            "must end with an assistant",
        ),
        ([{"role": "assistant", "content": "a"}], ValueError, "at least one user"),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}],
            ValueError,
            "message 1 is empty",
        ),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": 3}], TypeError, "must be a str"),
        ([{"role": "user"}, {"role": "assistant", "content": "a"}], ValueError, "needs 'role' and 'content'"),
        (
            [{"role": "user", "content": "q", "tool_calls": [{}]}, {"role": "assistant", "content": "a"}],
            ValueError,
            "unsupported keys",
        ),
        (
            [{"role": "user", "content": "q<|im_end|>"}, {"role": "assistant", "content": "a"}],
            ValueError,
            "control token",
        ),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a<|endoftext|>"}],
            ValueError,
            "control token",
        ),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": f"see {protein_placeholder(2)}"},
            ],
            ValueError,
            "protein tokens belong in user turns",
        ),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>hm</think>a"}],
            ValueError,
            "thinking is disabled",
        ),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "\na"},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "b"},
            ],
            ValueError,
            "assistant message 1 starts with whitespace.*merges with the chat header",
        ),
    ],
)
def test_format_errors(fmt, messages, exc, pattern):
    with pytest.raises(exc, match=pattern):
        fmt.format(messages)


def test_prompt_errors(fmt):
    with pytest.raises(ValueError, match="must end with a user message"):
        fmt.format_prompt([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    with pytest.raises(ValueError, match="empty"):
        fmt.format_prompt([])
